package podworker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// memoryEmptyDir sets up an emptyDir of medium Memory as the kubelet's
// emptyDir plugin does (setupTmpfs): the directory, then a tmpfs mounted on
// it, of the size calculateEmptyDirMemorySize gives, unless one is mounted
// there already; with a pod fsGroup, the new tmpfs gets its group. It is unmounted when the pod is torn down
// (unmountVolumes). On simulated nodes (Config.Simulated) it is a plain
// directory.
func (w *worker) memoryEmptyDir(pod *corev1.Pod, v *corev1.Volume, fsGroup *int64) (string, error) {
	d := w.volumeDir(pod, emptyDirPlugin, v.Name)
	if err := os.MkdirAll(d, 0o777); err != nil {
		return "", err
	}
	if err := os.Chmod(d, 0o777); err != nil {
		return "", err
	}
	if w.m.cfg.Simulated {
		return d, nil
	}
	mounted, err := isTmpfsMountPoint(d)
	if err != nil || mounted {
		return d, err
	}
	var opts string
	if size := emptyDirMemorySize(w.m.cfg.NodeAllocatable, v.EmptyDir.SizeLimit, pod); size > 0 {
		opts = fmt.Sprintf("size=%d", size)
	}
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, opts); err != nil {
		return "", fmt.Errorf("mount tmpfs on %s: %w", d, err)
	}
	if fsGroup != nil {
		// Once, on the new tmpfs, as the kubelet's emptyDir SetUp.
		if err := setVolumeOwnership(d, fsGroup, false, nil, w.report); err != nil {
			w.report(fmt.Errorf("podworker: emptyDir %q: %w", v.Name, err)) // as the kubelet, which only logs it
		}
	}
	return d, nil
}

// emptyDirMemorySize is the kubelet's calculateEmptyDirMemorySize: the
// node's allocatable memory, or the pod's memory limit when it has one
// that is smaller, or the volume's sizeLimit when set and smaller still.
// 0 means no size option (the kernel's default, half the memory).
func emptyDirMemorySize(allocatable corev1.ResourceList, sizeLimit *resource.Quantity, pod *corev1.Pod) int64 {
	size := allocatable.Memory().Value()
	if l := podMemoryLimit(pod); l > 0 && (size == 0 || l <= size) {
		size = l
	}
	if sizeLimit != nil && sizeLimit.Value() > 0 && (size == 0 || sizeLimit.Value() <= size) {
		size = sizeLimit.Value()
	}
	return size
}

// podMemoryLimit is the memory limit of the pod's cgroup as the kubelet sets
// it (ResourceConfigForPod): the sum of its containers' limits, or an init
// container's when larger; 0 when a container has none.
func podMemoryLimit(pod *corev1.Pod) int64 {
	var sum int64
	for _, c := range pod.Spec.Containers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || q.IsZero() {
			return 0
		}
		sum += q.Value()
	}
	for _, c := range pod.Spec.InitContainers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || q.IsZero() {
			return 0
		}
		sum = max(sum, q.Value())
	}
	return sum
}

// isTmpfsMountPoint tells whether dir is a tmpfs mounted there (not one
// of a directory above it), as the kubelet's GetMountMedium.
func isTmpfsMountPoint(dir string) (bool, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	if fs.Type != unix.TMPFS_MAGIC {
		return false, nil
	}
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return false, fmt.Errorf("stat %s: %w", filepath.Dir(dir), err)
	}
	return st.Dev != parent.Dev, nil
}

// unmountVolumes unmounts what is mounted under a pod's volume directory
// (memory emptyDirs), deepest first, before the directory is removed, as
// the kubelet's TearDown of each volume.
func unmountVolumes(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("podworker: %w", err)
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- { // mountinfo lists a mount after the ones it covers
		if err := unix.Unmount(mounts[i], 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("podworker: unmount %s: %w", mounts[i], err))
			}
		}
	}
	return errors.Join(errs...)
}
