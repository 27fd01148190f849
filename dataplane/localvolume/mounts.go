package localvolume

import (
	"errors"
	"fmt"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// isMountPoint reports whether p is where a filesystem is mounted.
func isMountPoint(p string) (bool, error) {
	ok, err := mountinfo.Mounted(p)
	if err != nil {
		return false, fmt.Errorf("is %s a mount point: %w", p, err)
	}
	return ok, nil
}

// unmountUnder unmounts whatever is mounted at or under dir, deepest first,
// detached (lazily: what is under dir is being thrown away, and a mount a
// process holds must not keep it). It fails if anything is left.
func unmountUnder(dir string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("mounts under %s: %w", dir, err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	for _, mi := range mounts {
		if err := unix.Unmount(mi.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", mi.Mountpoint, err)
		}
	}
	left, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("mounts under %s: %w", dir, err)
	}
	if len(left) > 0 {
		return fmt.Errorf("%s is still mounted", left[0].Mountpoint)
	}
	return nil
}
