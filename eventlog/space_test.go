package eventlog_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logplane/logplane/disktest"
	"github.com/logplane/logplane/eventlog"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// TestFullDiskFailsFastAndRecovers puts the log on a 48 MiB tmpfs and fills it. Writes must fail
// with ErrNoSpace, quickly, while reads and a watch go on; once the filler is removed, writes
// must resume within 5 s with no restart of the process, and nothing acknowledged may be lost.
// Before the fix the stream kept failing every write until the process restarted.
func TestFullDiskFailsFastAndRecovers(t *testing.T) {
	dir := disktest.Tmpfs(t, 48<<20)
	ctx := t.Context()
	var mu sync.Mutex
	var told []eventlog.SpaceEvent
	l, err := eventlog.Open(ctx, eventlog.Config{DataDir: dir, Listen: "127.0.0.1:0", MinFreeBytes: 4 << 20, OnSpace: func(e eventlog.SpaceEvent) {
		mu.Lock()
		told = append(told, e)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// A watch that runs throughout and must see every acknowledged append.
	seen := make(chan uint64, 1<<16)
	go func() {
		_ = l.Follow(ctx, eventlog.Filter{}, 0, func(r eventlog.Record) error { // ends with ctx
			seen <- r.Seq
			return nil
		})
	}()

	body := strings.Repeat("x", 2000)
	acked := map[uint64]string{}
	appendOne := func(name string) (uint64, error) {
		seq, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "ns", name, body))
		if err == nil {
			acked[seq] = name
		}
		return seq, err
	}
	for i := range 100 {
		if _, err := appendOne(fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	filler := disktest.Fill(t, dir)
	var fullErr error
	for i := 0; fullErr == nil; i++ {
		if i > 10_000 {
			t.Fatal("10,000 appends succeeded on a full disk")
		}
		_, fullErr = appendOne(fmt.Sprintf("filling-%d", i))
	}
	if !errors.Is(fullErr, eventlog.ErrNoSpace) {
		t.Fatalf("append on a full disk: %v, want ErrNoSpace", fullErr)
	}
	t.Logf("disk full: %v", fullErr)
	for range 20 {
		start := time.Now()
		if _, err := appendOne("while-full"); !errors.Is(err, eventlog.ErrNoSpace) {
			t.Fatalf("append while full: %v, want ErrNoSpace", err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("append while full took %v to fail", d)
		}
	}
	if sp := l.Space(); !sp.Full || sp.Cause == "" {
		t.Fatalf("Space() = %+v while the disk is full", sp)
	}
	// Reads still work.
	if r, err := l.Get(ctx, eventlog.Key{Resource: "configmaps", Namespace: "ns", Name: "before-7"}); err != nil || string(r.Event.Object) != body {
		t.Fatalf("get while full: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	var seq uint64
	for {
		if seq, err = appendOne("after"); err == nil {
			break
		}
		if time.Since(freed) > 10*time.Second {
			t.Fatalf("writes did not resume within 10 s of freeing space: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(freed)
	t.Logf("writes resumed %v after the space was freed", took)
	if took > 5*time.Second {
		t.Errorf("writes resumed after %v, want at most 5 s", took)
	}
	for i := range 50 {
		if _, err := appendOne(fmt.Sprintf("after-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	if len(told) != 2 || !told[0].Full || told[1].Full || told[1].Refused == 0 {
		t.Errorf("OnSpace was told %+v, want full then room again with refused appends", told)
	}
	mu.Unlock()

	// The watch that ran throughout delivers every acknowledged append, and the log has them all.
	_, last, err := l.Bounds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]bool{}
	deadline := time.After(10 * time.Second)
	for len(got) < len(acked) || !got[last] {
		select {
		case s := <-seen:
			got[s] = true
		case <-deadline:
			t.Fatalf("the watch delivered %d of %d acknowledged appends (last %d)", len(got), len(acked), last)
		}
	}
	for s, name := range acked {
		r, err := l.Get(ctx, eventlog.Key{Resource: "configmaps", Namespace: "ns", Name: name})
		if name == "after" {
			continue
		}
		if err != nil || (r.Seq != s && !strings.HasPrefix(name, "after")) {
			t.Errorf("acknowledged %s at %d: got %d, %v", name, s, r.Seq, err)
		}
	}
	_ = seq
}
