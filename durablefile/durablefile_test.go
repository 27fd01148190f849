package durablefile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/logplane/logplane/durablefile"
)

func TestWriteReplacesWithModeAndLeavesNothingBehind(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := durablefile.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two, longer"} {
		if err := durablefile.Write(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, %v; want 0640", fi.Mode(), err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("directory holds %v (%v), want only f", ents, err)
	}
}

func TestFailedWriteKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := durablefile.Write(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory in the way of the rename makes the write fail after the temporary file.
	if err := durablefile.Write(dir, []byte("new"), 0o600); err == nil {
		t.Fatal("writing over a directory succeeded")
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "old" {
		t.Fatalf("read %q, %v; want old", got, err)
	}
}
