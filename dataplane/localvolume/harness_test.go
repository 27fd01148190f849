package localvolume_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/logplane/logplane/dataplane/localvolume"
)

// requireEnvVar turns a missing capability into a failure (CI sets it), as
// dataplanetest.RequireEnvVar.
const requireEnvVar = "LOGPLANE_REQUIRE_ROOT_TESTS"

// requireLoop skips the test (or fails it under LOGPLANE_REQUIRE_ROOT_TESTS=1)
// unless loop-mounted volumes can be made: root, /dev/loop-control,
// mkfs.ext4 (e2fsprogs).
func requireLoop(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		missing = append(missing, "/dev/loop-control")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		if _, err := os.Stat("/usr/sbin/mkfs.ext4"); err != nil {
			missing = append(missing, "mkfs.ext4 (apt-get install e2fsprogs)")
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "loop volume tests need " + strings.Join(missing, ", ")
	if os.Getenv(requireEnvVar) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// baseDir makes a base directory for a test on the root filesystem; at
// cleanup everything mounted under it is unmounted, every loop device
// backed by a file under it released, and it is removed.
func baseDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lplv-")
	if err != nil {
		t.Fatal(err)
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupDir(t, dir) })
	return dir
}

func cleanupDir(t testing.TB, dir string) {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Errorf("mounts: %v", err)
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i].Mountpoint, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mounts[i].Mountpoint, err)
		}
	}
	for _, dev := range loopDevicesUnder(t, dir) {
		f, err := os.Open(dev)
		if err != nil {
			t.Errorf("%s: %v", dev, err)
			continue
		}
		if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
			t.Errorf("release %s: %v", dev, err)
		}
		f.Close()
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove %s: %v", dir, err)
	}
}

// loopDevicesUnder lists the loop devices whose backing file is (or was,
// if deleted) under dir.
func loopDevicesUnder(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // released meanwhile
		}
		if strings.HasPrefix(strings.TrimSpace(string(b)), dir+"/") {
			out = append(out, "/dev/"+strings.Split(f, "/")[3])
		}
	}
	return out
}

// mountsUnder lists the mount points under dir.
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out
}

// waitNoLoopDevices waits until no loop device is backed by a file under
// dir: a released device goes once its last user closes it.
func waitNoLoopDevices(t testing.TB, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		devs := loopDevicesUnder(t, dir)
		if len(devs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("loop devices still backed by files under %s: %v", dir, devs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newManager(t testing.TB, cfg localvolume.Config) *localvolume.Manager {
	t.Helper()
	m, err := localvolume.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// fill writes zeros to a new file at p until it has written n bytes or a
// write (or the final fsync) fails; it returns what it wrote and the error.
func fill(p string, n int64) (int64, error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	var written int64
	for written < n {
		k := min(int64(len(buf)), n-written)
		w, err := f.Write(buf[:k])
		written += int64(w)
		if err != nil {
			f.Close()
			return written, err
		}
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return written, err
}

func isQuotaError(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// quotasEnforcedOn reports whether dir's filesystem is mounted with project
// quotas enforced (prjquota in its options).
func quotasEnforcedOn(t testing.TB, dir string) bool {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		if best == nil || len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return false
	}
	for _, o := range strings.Split(best.VFSOptions+","+best.Options, ",") {
		if o == "prjquota" || o == "pquota" {
			return true
		}
	}
	return false
}

// hasCapSysResource reports whether this process may grow a mounted ext4
// (this test machine's sandbox drops CAP_SYS_RESOURCE; a node's root has it).
func hasCapSysResource(t testing.TB) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}
