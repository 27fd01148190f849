package podworker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	corev1 "k8s.io/api/core/v1"
)

// The kubelet's volume ownership (pkg/volume/volume_linux.go): with a pod
// fsGroup, the volumes that support it (emptyDir, configMap, secret) are made
// group-owned by it, group-readable (and group-writable unless the volume is
// read-only), and their directories setgid, so that files created in them
// belong to the group too.
const (
	rwMask   = os.FileMode(0o660)
	roMask   = os.FileMode(0o440)
	execMask = os.FileMode(0o110)
)

// setVolumeOwnership is the kubelet's VolumeOwnership.ChangePermissions: with
// fsGroup set, every file and directory under dir (deepest first, dir last)
// gets group fsGroup and the mask's bits; symlinks keep their modes.
// fsGroupChangePolicy OnRootMismatch skips the walk when dir already has the
// group and bits (the kubelet's volume plugins for emptyDir, configMap and
// secret pass none). A file whose group or mode cannot be changed is
// reported to onErr and the walk goes on, as the kubelet logs it; an
// unreadable directory ends the walk with an error.
func setVolumeOwnership(dir string, fsGroup *int64, readOnly bool, policy *corev1.PodFSGroupChangePolicy, onErr func(error)) error {
	if fsGroup == nil {
		return nil
	}
	if policy != nil && *policy == corev1.FSGroupChangeOnRootMismatch && !requiresPermissionChange(dir, *fsGroup, readOnly) {
		return nil
	}
	return walkDeep(dir, func(path string, info os.FileInfo) {
		if err := changeFilePermission(path, *fsGroup, readOnly, info); err != nil && onErr != nil {
			onErr(err)
		}
	})
}

func changeFilePermission(path string, fsGroup int64, readOnly bool, info os.FileInfo) error {
	var errs []error
	if err := os.Lchown(path, -1, int(fsGroup)); err != nil {
		errs = append(errs, fmt.Errorf("volume ownership: %w", err))
	}
	// chmod follows symlinks: a symlink's own mode means nothing, and
	// applying it would change its target's.
	if info.Mode()&os.ModeSymlink != 0 {
		return errors.Join(errs...)
	}
	mask := rwMask
	if readOnly {
		mask = roMask
	}
	if info.IsDir() {
		mask |= os.ModeSetgid | execMask
	}
	if err := os.Chmod(path, info.Mode()|mask); err != nil {
		errs = append(errs, fmt.Errorf("volume permissions: %w", err))
	}
	return errors.Join(errs...)
}

// requiresPermissionChange is the kubelet's: the root is not a directory
// of group fsGroup with at least the mask's bits and setgid.
func requiresPermissionChange(dir string, fsGroup int64, readOnly bool) bool {
	fi, err := os.Stat(dir)
	if err != nil {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int64(st.Gid) != fsGroup || !fi.IsDir() {
		return true
	}
	perms := rwMask
	if readOnly {
		perms = roMask
	}
	perms |= execMask
	return fi.Mode().Perm()&perms != perms || fi.Mode()&os.ModeSetgid == 0
}

// walkDeep calls fn for every entry under root, unsorted, a directory after
// its content, root last.
func walkDeep(root string, fn func(path string, info os.FileInfo)) error {
	info, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("volume ownership: %w", err)
	}
	return walk(root, info, fn)
}

func walk(path string, info os.FileInfo, fn func(string, os.FileInfo)) error {
	if info.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("volume ownership: %w", err)
		}
		names, err := f.Readdirnames(-1)
		f.Close() // read-only: a close error changes nothing
		if err != nil {
			return fmt.Errorf("volume ownership: %w", err)
		}
		for _, name := range names {
			p := filepath.Join(path, name)
			fi, err := os.Lstat(p)
			if err != nil {
				return fmt.Errorf("volume ownership: %w", err)
			}
			if err := walk(p, fi, fn); err != nil {
				return err
			}
		}
	}
	fn(path, info)
	return nil
}
