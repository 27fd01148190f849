package localvolume_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/mount"

	"github.com/logplane/logplane/dataplane/localvolume"
)

// quotaFS makes an ext4 with project quotas enforced (mkfs -O
// quota,project, mounted with prjquota from a loop device) under base and
// returns a directory on it; everything goes with base at cleanup. It
// skips where the kernel cannot mount one: that takes CONFIG_QUOTA and
// CONFIG_QFMT_V2, which no package installs (this machine's kernel has
// neither, nor CONFIG_XFS_QUOTA).
func quotaFS(t testing.TB, base string) string {
	t.Helper()
	img := filepath.Join(base, "quota.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(256 * mib); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "quota,project", "-I", "256", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	mnt := filepath.Join(base, "fs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	m := mount.Mount{Type: "ext4", Source: img, Options: []string{"loop", "prjquota"}}
	if err := m.Mount(mnt); err != nil {
		t.Skipf("this kernel cannot mount an ext4 with project quotas (%v): it needs CONFIG_QUOTA and CONFIG_QFMT_V2", err)
	}
	return filepath.Join(mnt, "volumes")
}

// TestQuotaVolume: on a filesystem with project quotas enforced, New
// chooses them; a volume holds its size, writing past it fails with
// EDQUOT, Stats reports the limit, growing raises it at once, Delete
// removes it and Retain keeps it.
func TestQuotaVolume(t *testing.T) {
	requireLoop(t)
	ctx := t.Context()
	dir := quotaFS(t, baseDir(t))
	m := newManager(t, localvolume.Config{Dir: dir})
	if m.Backend() != localvolume.Quota || m.Warning() != "" {
		t.Fatalf("Backend() = %s, Warning() = %q, want quota", m.Backend(), m.Warning())
	}
	const size = 8 * mib
	v, err := m.Create(ctx, "pvc-q", size)
	if err != nil {
		t.Fatal(err)
	}
	if v.Backend != localvolume.Quota || !v.Enforced {
		t.Errorf("Create = %+v", v)
	}
	p, err := m.Path(ctx, "pvc-q")
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Stats(ctx, "pvc-q")
	if err != nil {
		t.Fatal(err)
	}
	if st.CapacityBytes < size || st.CapacityBytes > size+64<<10 || st.AvailableBytes < size {
		t.Errorf("Stats of an empty %d-byte volume = %+v", size, st)
	}
	if n, err := fill(filepath.Join(p, "a"), size); err != nil {
		t.Fatalf("writing the volume's size: %d bytes, %v", n, err)
	}
	if n, err := fill(filepath.Join(p, "b"), 16*mib); !isQuotaError(err) || n > mib {
		t.Fatalf("writing past the size: %d bytes, %v, want EDQUOT at once", n, err)
	}
	if err := os.Remove(filepath.Join(p, "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Expand(ctx, "pvc-q", 2*size); err != nil {
		t.Fatal(err)
	}
	if st, err = m.Stats(ctx, "pvc-q"); err != nil || st.CapacityBytes < 2*size || st.AvailableBytes < size-64<<10 {
		t.Errorf("Stats after growing = %+v, %v", st, err)
	}
	if n, err := fill(filepath.Join(p, "c"), size-64<<10); err != nil {
		t.Fatalf("writing into the grown volume: %d bytes, %v", n, err)
	}
	if err := m.Delete(ctx, "pvc-q"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Delete: %v", p, err)
	}

	// The freed project is reused with a limit of its own.
	if _, err := m.Create(ctx, "pvc-r", size); err != nil {
		t.Fatal(err)
	}
	if p, err = m.Path(ctx, "pvc-r"); err != nil {
		t.Fatal(err)
	}
	if n, err := fill(filepath.Join(p, "a"), 2*size); !isQuotaError(err) || n > size+mib {
		t.Errorf("writing past a new volume's size: %d bytes, %v", n, err)
	}
	kept, err := m.Retain(ctx, "pvc-r")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(kept, "data", "a")); err != nil || fi.Size() < size {
		t.Errorf("retained data: %v", err)
	}
}
