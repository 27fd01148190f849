// Package atomicwriter projects a set of files into a directory so that a
// reader sees either the whole old set or the whole new one, never a mix:
// the kubelet's AtomicWriter (Kubernetes pkg/volume/util/atomic_writer.go),
// ported with the same on-disk layout, which programs watching ConfigMap and
// Secret volumes rely on. The files live in a hidden timestamped directory
// (..2026_01_02_15_04_05.123456789); the ..data symlink points to it; each
// top-level name of the payload is a symlink through ..data. An update writes
// a new timestamped directory, points ..data_tmp at it and renames ..data_tmp
// over ..data (the atomic step), then removes the names and the directory
// that are no longer used.
//
// The pod worker (nodeagent/podworker) writes configMap and secret volumes
// with it.
package atomicwriter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
)

const (
	maxFileNameLength = 255
	maxPathLength     = 4096

	// DataDirName is the symlink to the current timestamped directory.
	DataDirName    = "..data"
	newDataDirName = "..data_tmp"
)

// FileProjection is one file of a payload: its content and mode.
type FileProjection struct {
	Data []byte
	Mode int32
}

// Writer writes payloads into one target directory. Paths starting with
// ".." are its own. It is not safe for concurrent use on one directory:
// the caller serializes writes.
type Writer struct {
	targetDir string
	now       func() time.Time
}

// New returns a Writer for targetDir, which must exist. now names the
// timestamped directories; nil means time.Now.
func New(targetDir string, now func() time.Time) (*Writer, error) {
	if _, err := os.Stat(targetDir); err != nil {
		return nil, fmt.Errorf("atomicwriter: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Writer{targetDir: targetDir, now: now}, nil
}

// Write projects payload (relative paths to files) into the target
// directory, following the kubelet's algorithm:
//
//  1. The payload is validated.
//  2. The current timestamped directory is read from the ..data symlink.
//  3. It is walked to find the paths the payload no longer has.
//  4. Its content is compared to the payload; if nothing changed and nothing
//     is to be removed, only the user-visible symlinks are made sure of.
//  5. Otherwise a new timestamped directory is created,
//  6. the payload is written into it,
//  7. ..data_tmp is made to point to it and
//  8. renamed over ..data (atomic).
//  9. Symlinks for new top-level names are created (name -> ..data/name).
//  10. Top-level names no longer in the payload are removed.
//  11. The previous timestamped directory is removed.
//
// changed reports whether a new version was written.
func (w *Writer) Write(payload map[string]FileProjection) (changed bool, err error) {
	return w.WriteWith(payload, nil)
}

// WriteWith is Write with the kubelet's setPerms: when a new version is
// written, setPerms (if not nil) is called with the name of its timestamped
// directory once the files are in it and before ..data points to it, so that
// their ownership and modes are right before anyone sees them (the kubelet
// sets a volume's fsGroup there). An error from it abandons the version.
func (w *Writer) WriteWith(payload map[string]FileProjection, setPerms func(subPath string) error) (changed bool, err error) {
	// (1)
	clean, err := validatePayload(payload)
	if err != nil {
		return false, err
	}

	// (2)
	dataDirPath := filepath.Join(w.targetDir, DataDirName)
	oldTsDir, err := os.Readlink(dataDirPath)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("atomicwriter: read link of the data directory: %w", err)
		}
		oldTsDir = "" // no previous version
	}
	oldTsPath := filepath.Join(w.targetDir, oldTsDir)

	var pathsToRemove sets.Set[string]
	shouldWrite := true
	if oldTsDir != "" {
		// (3)
		pathsToRemove, err = pathsToRemoveFrom(clean, oldTsPath)
		if err != nil {
			return false, err
		}
		// (4)
		should, err := shouldWritePayload(clean, oldTsPath)
		if err != nil {
			return false, err
		}
		if !should && len(pathsToRemove) == 0 {
			// The data is current, but the user-visible symlinks must still be
			// there (kubernetes#121472); keep the data directory.
			shouldWrite = false
			oldTsDir = ""
		}
	}

	if shouldWrite {
		// (5)
		tsDir, err := w.newTimestampDir()
		if err != nil {
			return false, err
		}
		tsDirName := filepath.Base(tsDir)
		// (6)
		if err := writePayloadToDir(clean, tsDir); err != nil {
			return false, errors.Join(err, os.RemoveAll(tsDir))
		}
		if setPerms != nil {
			if err := setPerms(tsDirName); err != nil {
				return false, errors.Join(fmt.Errorf("atomicwriter: set permissions: %w", err), os.RemoveAll(tsDir))
			}
		}
		// (7)
		newDataDirPath := filepath.Join(w.targetDir, newDataDirName)
		if err := os.Symlink(tsDirName, newDataDirPath); err != nil {
			return false, errors.Join(fmt.Errorf("atomicwriter: symlink for the update: %w", err), os.RemoveAll(tsDir))
		}
		// (8)
		if err := os.Rename(newDataDirPath, dataDirPath); err != nil {
			return false, errors.Join(fmt.Errorf("atomicwriter: rename the data directory symlink: %w", err),
				ignoreNotExist(os.Remove(newDataDirPath)), os.RemoveAll(tsDir))
		}
	}

	// (9)
	if err := w.createUserVisibleFiles(clean); err != nil {
		return shouldWrite, err
	}
	// (10)
	if err := w.removeUserVisiblePaths(pathsToRemove); err != nil {
		return shouldWrite, err
	}
	// (11)
	if oldTsDir != "" {
		if err := os.RemoveAll(oldTsPath); err != nil {
			return shouldWrite, fmt.Errorf("atomicwriter: remove the old data directory %s: %w", oldTsDir, err)
		}
	}
	return shouldWrite, nil
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// validatePayload checks every path and returns the payload with its paths cleaned.
func validatePayload(payload map[string]FileProjection) (map[string]FileProjection, error) {
	clean := make(map[string]FileProjection, len(payload))
	for k, content := range payload {
		if err := validatePath(k); err != nil {
			return nil, err
		}
		clean[filepath.Clean(k)] = content
	}
	return clean, nil
}

// validatePath refuses a path that is empty, absolute, longer than 4096
// characters, has a name longer than 255, has a ".." element, or starts
// with "..".
func validatePath(p string) error {
	if p == "" {
		return fmt.Errorf("atomicwriter: invalid path: must not be empty: %q", p)
	}
	if filepath.IsAbs(p) {
		return fmt.Errorf("atomicwriter: invalid path: must be relative path: %s", p)
	}
	if len(p) > maxPathLength {
		return fmt.Errorf("atomicwriter: invalid path: must be less than or equal to %d characters", maxPathLength)
	}
	items := strings.Split(p, string(os.PathSeparator))
	for _, item := range items {
		if item == ".." {
			return fmt.Errorf("atomicwriter: invalid path: must not contain '..': %s", p)
		}
		if len(item) > maxFileNameLength {
			return fmt.Errorf("atomicwriter: invalid path: filenames must be less than or equal to %d characters", maxFileNameLength)
		}
	}
	if strings.HasPrefix(items[0], "..") && len(items[0]) > 2 {
		return fmt.Errorf("atomicwriter: invalid path: must not start with '..': %s", p)
	}
	return nil
}

// shouldWritePayload tells whether any file of the payload differs from
// (or is missing in) the timestamped directory.
func shouldWritePayload(payload map[string]FileProjection, tsDir string) (bool, error) {
	for p, f := range payload {
		should, err := shouldWriteFile(filepath.Join(tsDir, p), f.Data)
		if err != nil || should {
			return should, err
		}
	}
	return false, nil
}

func shouldWriteFile(path string, content []byte) (bool, error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	onDisk, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("atomicwriter: %w", err)
	}
	return !bytes.Equal(content, onDisk), nil
}

// pathsToRemoveFrom walks the current timestamped directory and returns the
// paths the payload no longer has (directories that still hold a payload
// file excepted).
func pathsToRemoveFrom(payload map[string]FileProjection, tsDir string) (sets.Set[string], error) {
	paths := sets.New[string]()
	err := filepath.Walk(tsDir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(path, tsDir), string(os.PathSeparator))
		if rel != "" {
			paths.Insert(rel)
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("atomicwriter: walk %s: %w", tsDir, err)
	}
	keep := sets.New[string]()
	for file := range payload {
		// Every parent of a payload file stays, so as not to remove non-empty directories.
		for sub := file; sub != ""; {
			keep.Insert(sub)
			sub, _ = filepath.Split(sub)
			sub = strings.TrimSuffix(sub, string(os.PathSeparator))
		}
	}
	return paths.Difference(keep), nil
}

// newTimestampDir creates a new timestamped directory, mode 0755 whatever
// the umask, so that any user in the container can traverse it.
func (w *Writer) newTimestampDir() (string, error) {
	tsDir, err := os.MkdirTemp(w.targetDir, w.now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return "", fmt.Errorf("atomicwriter: create the timestamped directory: %w", err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return "", fmt.Errorf("atomicwriter: %w", err)
	}
	return tsDir, nil
}

// writePayloadToDir writes the payload's files into dir with their modes,
// whatever the umask.
func writePayloadToDir(payload map[string]FileProjection, dir string) error {
	for p, f := range payload {
		mode := os.FileMode(f.Mode)
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), os.ModePerm); err != nil {
			return fmt.Errorf("atomicwriter: %w", err)
		}
		if err := os.WriteFile(full, f.Data, mode); err != nil {
			return fmt.Errorf("atomicwriter: %w", err)
		}
		if err := os.Chmod(full, mode); err != nil {
			return fmt.Errorf("atomicwriter: %w", err)
		}
	}
	return nil
}

// createUserVisibleFiles links each top-level name of the payload through
// the data directory: for "bar", "foo/bar" and "foo/baz/blah" it makes
// bar -> ..data/bar and foo -> ..data/foo.
func (w *Writer) createUserVisibleFiles(payload map[string]FileProjection) error {
	for p := range payload {
		name, _, _ := strings.Cut(p, string(os.PathSeparator))
		visible := filepath.Join(w.targetDir, name)
		if _, err := os.Readlink(visible); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join(DataDirName, name), visible); err != nil {
				return fmt.Errorf("atomicwriter: %w", err)
			}
		}
	}
	return nil
}

// removeUserVisiblePaths removes the top-level names among paths (deeper
// ones went with the old timestamped directory).
func (w *Writer) removeUserVisiblePaths(paths sets.Set[string]) error {
	var errs []error
	for p := range paths {
		if strings.Contains(p, string(os.PathSeparator)) {
			continue
		}
		if err := os.Remove(filepath.Join(w.targetDir, p)); err != nil {
			errs = append(errs, fmt.Errorf("atomicwriter: prune %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
