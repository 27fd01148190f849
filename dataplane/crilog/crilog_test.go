package crilog

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lf := NewFile(f, func() time.Time { now = now.Add(time.Second); return now })
	out, errs := lf.Stream(Stdout), lf.Stream(Stderr)
	mustWrite(t, out, "one\ntw")
	mustWrite(t, out, "o\nthree\n")
	mustWrite(t, errs, "oops\n")
	mustWrite(t, out, strings.Repeat("x", MaxLineBytes+5)+"\n")
	mustWrite(t, out, "last")
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", MaxLineBytes+5)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"all", Options{TailLines: -1}, "one\ntwo\nthree\noops\n" + long + "\nlast\n"},
		{"tail2", Options{TailLines: 2}, long + "\nlast\n"},
		{"tail0", Options{TailLines: 0}, ""},
		{"since", Options{TailLines: -1, Since: time.Date(2026, 1, 1, 0, 0, 4, 0, time.UTC)}, "oops\n" + long + "\nlast\n"},
		{"limit", Options{TailLines: -1, LimitBytes: 6}, "one\ntw"},
		{"timestamps", Options{TailLines: 1, Timestamps: true}, "2026-01-01T00:00:07Z last\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Read(t.Context(), path, tt.opts, &b); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Fatalf("got %q\nwant %q", trunc(b.String()), trunc(tt.want))
			}
		})
	}
}

func TestFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	lf := NewFile(f, nil)
	w := lf.Stream(Stdout)
	done := make(chan struct{})
	var finished atomic.Bool
	var b bytes.Buffer
	go func() {
		defer close(done)
		err := Read(t.Context(), path, Options{TailLines: -1, Follow: true, PollInterval: 5 * time.Millisecond, Done: func() bool { return finished.Load() }}, &b)
		if err != nil {
			t.Error(err)
		}
	}()
	mustWrite(t, w, "a\n")
	time.Sleep(20 * time.Millisecond)
	mustWrite(t, w, "b\n")
	time.Sleep(20 * time.Millisecond)
	finished.Store(true)
	<-done
	if b.String() != "a\nb\n" {
		t.Fatalf("got %q", b.String())
	}
}

func mustWrite(t *testing.T, w *StreamWriter, s string) {
	t.Helper()
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:40] + "..." + s[len(s)-40:]
	}
	return s
}
