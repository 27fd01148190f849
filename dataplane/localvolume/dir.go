package localvolume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// dirBackend: a plain directory, the size recorded but not enforced.
type dirBackend struct{}

var _ backend = dirBackend{}

func (dirBackend) data(dir string) string { return filepath.Join(dir, "data") }

func (b dirBackend) build(_ context.Context, dir string, _ *record) error {
	return makeData(b.data(dir))
}

// makeData makes a volume's empty data directory, writable by anyone as an
// emptyDir (and local-path-provisioner's volumes) are: the pod's user is
// not known when it is made; fsGroup narrows it at mount.
func makeData(p string) error {
	if err := os.Mkdir(p, 0o777); err != nil {
		return err
	}
	return os.Chmod(p, 0o777) // past the umask
}

func (dirBackend) attach(context.Context, string, *record) error { return nil }
func (dirBackend) detach(context.Context, string, *record) error { return nil }

func (dirBackend) release(context.Context, string, *record) error { return nil }

func (dirBackend) expand(_ context.Context, _ string, rec *record, size int64) error {
	rec.SizeBytes = size
	return nil
}

// stats measures the directory as the kubelet's MetricsDu (du and find),
// inodes total and free are the filesystem's; capacity is the recorded size
// (MetricsDu reports the whole filesystem's, which says nothing of the
// volume), and available what is left of it, or of the filesystem if less.
func (b dirBackend) stats(ctx context.Context, dir string, rec *record) (Stats, error) {
	used, inodes, err := diskUsage(ctx, b.data(dir))
	if err != nil {
		return Stats{}, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(b.data(dir), &st); err != nil {
		return Stats{}, fmt.Errorf("statfs: %w", err)
	}
	fs := statfsStats(&st)
	avail := max(rec.SizeBytes-used, 0)
	return Stats{
		CapacityBytes:  rec.SizeBytes,
		AvailableBytes: min(avail, fs.AvailableBytes),
		UsedBytes:      used,
		Inodes:         fs.Inodes,
		InodesFree:     fs.InodesFree,
		InodesUsed:     inodes,
	}, nil
}

// diskUsage is `du -s -x -B1` and `find -xdev | wc -l` of root: the bytes
// allocated to what is under it (hard links counted once) and how many
// entries it has, itself included, not crossing into other filesystems.
func diskUsage(ctx context.Context, root string) (bytes, inodes int64, err error) {
	var rootDev uint64
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != root {
				return nil // removed while walked
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) && p != root {
				return nil
			}
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		if p == root {
			rootDev = st.Dev
		} else if st.Dev != rootDev {
			return fs.SkipDir // a mount inside: du -x
		}
		k := key{st.Dev, st.Ino}
		if st.Nlink > 1 && !d.IsDir() {
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		bytes += st.Blocks * 512
		inodes++
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("disk usage of %s: %w", root, err)
	}
	return bytes, inodes, nil
}

// statfsStats is the kubelet's fs.Info (pkg/volume/util/fs) on a statfs
// result: what MetricsStatFS reports for a volume that is a filesystem.
func statfsStats(st *unix.Statfs_t) Stats {
	bsize := st.Bsize
	return Stats{
		CapacityBytes:  int64(st.Blocks) * bsize,
		AvailableBytes: int64(st.Bavail) * bsize,
		UsedBytes:      (int64(st.Blocks) - int64(st.Bfree)) * bsize,
		Inodes:         int64(st.Files),
		InodesFree:     int64(st.Ffree),
		InodesUsed:     int64(st.Files) - int64(st.Ffree),
	}
}
