package containerd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// NamespaceCgroups are the cgroups runc made as the parent of a namespace's containers
// (containerd's default cgroupsPath is /<namespace>/<container>), one per hierarchy: the
// unified hierarchy's on cgroup v2, one per controller's (and the unified one's) on v1 or hybrid.
func NamespaceCgroups(ns string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return existing([]string{filepath.Join(cgroupRoot, ns)}), nil
	}
	dirs, err := filepath.Glob(filepath.Join(cgroupRoot, "*", ns))
	if err != nil {
		return nil, fmt.Errorf("containerd: cgroups of namespace %s: %w", ns, err)
	}
	return dirs, nil
}

func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// removeNamespaceCgroups removes the namespace's parent cgroups once its containers are gone;
// runc removes each container's own cgroup but leaves their parent behind.
func removeNamespaceCgroups(ns string) error {
	dirs, err := NamespaceCgroups(ns)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		// A controller mounted under two names (cpu and cpuacct → cpu,cpuacct) lists the
		// same directory twice: the second removal finds it gone. A cgroup still in use holds
		// containers of another containerd using the same namespace name: it stays theirs.
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.EBUSY) {
			errs = append(errs, fmt.Errorf("containerd: remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
