// Package durablefile writes files so that a power loss leaves either the old content or the new,
// never an empty or half-written file: the data goes to a temporary file in the same directory,
// which is fsynced, renamed over the target, and the directory is fsynced so the rename itself is
// durable. Certificates, keys, kubeconfigs, tokens and node state are written through it.
//
// It imports nothing of logplane's, so any package may use it.
package durablefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data, durably and atomically: once it returns nil, path holds data
// after any crash or power loss; if it fails or the machine stops midway, path holds what it held
// before (a leftover temporary file, named .<base>.tmp*, may remain beside it). The file gets
// mode perm exactly (the umask does not apply).
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("durablefile: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()      // the write already failed; this close's error adds nothing
			os.Remove(tmp) // best effort: a leftover temporary file is harmless
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("durablefile: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("durablefile: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("durablefile: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("durablefile: closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("durablefile: %w", err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making the names it holds (files created, renamed or removed in it)
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("durablefile: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("durablefile: fsync %s: %w", dir, err)
	}
	return nil
}

// MkdirAll makes dir and any missing parents with mode perm, as os.MkdirAll, and fsyncs the
// parent of every directory it created, so that the new directories survive a power loss.
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("durablefile: %w", err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("durablefile: %w", err)
	}
	for _, d := range missing {
		if err := SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}
