package atomicwriter_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logplane/logplane/dataplane/atomicwriter"
)

func files(kv ...string) map[string]atomicwriter.FileProjection {
	p := map[string]atomicwriter.FileProjection{}
	for i := 0; i+1 < len(kv); i += 2 {
		p[kv[i]] = atomicwriter.FileProjection{Data: []byte(kv[i+1]), Mode: 0o644}
	}
	return p
}

// entries lists dir's names, the hidden ones included.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteUpdateRemove(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	w, err := atomicwriter.New(dir, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := w.Write(files("color", "blue", "conf/app.conf", "debug=true\n", "conf/deep/x", "1")); err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	// The layout the kubelet makes: a timestamped directory, ..data, and a symlink per top-level name.
	data, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil || !strings.HasPrefix(data, "..2026_01_02_15_04_05.") {
		t.Fatalf("..data -> %q %v", data, err)
	}
	for name, target := range map[string]string{"color": "..data/color", "conf": "..data/conf"} {
		if got, err := os.Readlink(filepath.Join(dir, name)); err != nil || got != target {
			t.Errorf("%s -> %q %v, want %s", name, got, err, target)
		}
	}
	if got := read(t, filepath.Join(dir, "conf/app.conf")); got != "debug=true\n" {
		t.Errorf("conf/app.conf: %q", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, data)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("timestamped directory: %v %v", fi, err)
	}

	// The same payload again: nothing written.
	if changed, err := w.Write(files("color", "blue", "conf/app.conf", "debug=true\n", "conf/deep/x", "1")); err != nil || changed {
		t.Fatalf("same payload: changed %v %v", changed, err)
	}
	if d2, _ := os.Readlink(filepath.Join(dir, "..data")); d2 != data {
		t.Fatalf("same payload moved ..data: %s -> %s", data, d2)
	}

	// A symlink someone removed comes back without a new version (kubernetes#121472).
	if err := os.Remove(filepath.Join(dir, "color")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(files("color", "blue", "conf/app.conf", "debug=true\n", "conf/deep/x", "1")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "color")); got != "blue" {
		t.Fatalf("color after its symlink was removed: %q", got)
	}

	// An update: new content, a key gone, a key added; the old version is removed.
	now = now.Add(time.Minute)
	if changed, err := w.Write(files("color", "red", "size", "L")); err != nil || !changed {
		t.Fatalf("update: %v %v", changed, err)
	}
	d3, _ := os.Readlink(filepath.Join(dir, "..data"))
	if d3 == data || !strings.HasPrefix(d3, "..2026_01_02_15_05_05.") {
		t.Fatalf("..data after the update -> %s", d3)
	}
	if got := read(t, filepath.Join(dir, "color")); got != "red" {
		t.Errorf("color: %q", got)
	}
	want := []string{d3, "..data", "color", "size"}
	slices.Sort(want)
	if got := entries(t, dir); !slices.Equal(got, want) {
		t.Errorf("entries after the update: %v, want %v", got, want)
	}
}

func TestModes(t *testing.T) {
	dir := t.TempDir()
	w, err := atomicwriter.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(map[string]atomicwriter.FileProjection{"secret": {Data: []byte("s"), Mode: 0o400}, "script": {Data: []byte("#!/bin/sh"), Mode: 0o755}}); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"secret": 0o400, "script": 0o755} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want %v", name, fi.Mode(), err, mode)
		}
	}
}

func TestInvalidPaths(t *testing.T) {
	dir := t.TempDir()
	w, err := atomicwriter.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "/abs", "a/../b", "..data", "..hidden/x", strings.Repeat("x", 256)} {
		if _, err := w.Write(files(p, "x")); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("invalid payloads wrote %v", got)
	}
	if _, err := atomicwriter.New(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("New accepted a missing directory")
	}
}

// TestWriteWithSetPerms: setPerms sees a new version's files before ..data
// points to them, is not called when nothing changed, and its error
// abandons the version.
func TestWriteWithSetPerms(t *testing.T) {
	dir := t.TempDir()
	w, err := atomicwriter.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	setPerms := func(sub string) error {
		calls = append(calls, sub)
		if _, err := os.Stat(filepath.Join(dir, sub, "color")); err != nil {
			t.Errorf("setPerms before the files are written: %v", err)
		}
		if link, _ := os.Readlink(filepath.Join(dir, atomicwriter.DataDirName)); link == sub {
			t.Errorf("setPerms after %s was published", sub)
		}
		return os.Chmod(filepath.Join(dir, sub, "color"), 0o640)
	}
	if changed, err := w.WriteWith(files("color", "blue"), setPerms); err != nil || !changed || len(calls) != 1 {
		t.Fatalf("first write: changed %v, err %v, calls %v", changed, err, calls)
	}
	if fi, err := os.Stat(filepath.Join(dir, "color")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode set by setPerms: %v %v", fi, err)
	}
	if changed, err := w.WriteWith(files("color", "blue"), setPerms); err != nil || changed || len(calls) != 1 {
		t.Fatalf("unchanged write: changed %v, err %v, calls %v", changed, err, calls)
	}
	before := entries(t, dir)
	fail := func(string) error { return os.ErrPermission }
	if _, err := w.WriteWith(files("color", "red"), fail); err == nil {
		t.Fatal("a setPerms error was not returned")
	}
	if got := read(t, filepath.Join(dir, "color")); got != "blue" || !slices.Equal(entries(t, dir), before) {
		t.Fatalf("after a failed setPerms: color %q, entries %v (before %v)", got, entries(t, dir), before)
	}
}
