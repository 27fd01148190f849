// Package disktest gives tests small real filesystems: a tmpfs of a given size (to fill a disk),
// and ext4 on a loop device over an image file (to copy the device as a power loss would leave it,
// and to mount the copy). Everything a test makes here (mounts, loop devices, image files) is
// removed when the test ends, passed or failed. It needs root; tests skip without it, or fail
// under LOGPLANE_REQUIRE_ROOT_TESTS=1. Only tests import it.
package disktest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RequireEnvVar names the variable that turns a missing capability into a failure.
const RequireEnvVar = "LOGPLANE_REQUIRE_ROOT_TESTS"

// RequireRoot skips the test (or fails it under LOGPLANE_REQUIRE_ROOT_TESTS=1) unless it runs as
// root with the tools loop devices and ext4 need (losetup, mkfs.ext4).
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range tools {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ") + " (apt-get install -y util-linux e2fsprogs; run as root)"
	if os.Getenv(RequireEnvVar) == "1" {
		t.Fatalf("%s; %s=1 forbids skipping", msg, RequireEnvVar)
	}
	t.Skip(msg)
}

// Tmpfs mounts a tmpfs of size bytes on a new directory and returns it; it is unmounted when the
// test ends.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("disktest: mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

// Fill writes a file in dir until the filesystem has no room left, and returns its path.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("disktest: %v", err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10, 512, 1} {
		buf := bytes.Repeat([]byte{'x'}, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, unix.ENOSPC) {
					t.Fatalf("disktest: filling %s: %v", dir, err)
				}
				break
			}
		}
	}
	return path
}

// Free returns the bytes an unprivileged writer may still use on the filesystem holding dir.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatalf("disktest: statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * st.Bsize
}

// Loop is an ext4 filesystem on a loop device over an image file, mounted on Dir.
type Loop struct {
	Image  string // the image file behind the device
	Device string // /dev/loopN
	Dir    string // where it is mounted
}

// Ext4 makes an image file of size bytes, attaches a loop device to it, makes an ext4 filesystem
// on it (default options: journal, data=ordered, delayed allocation) and mounts it. All of it is
// undone when the test ends.
func Ext4(t testing.TB, size int64) *Loop {
	t.Helper()
	RequireRoot(t, "losetup", "mkfs.ext4")
	base := t.TempDir()
	img := filepath.Join(base, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("disktest: mkfs.ext4: %v: %s", err, out)
	}
	return Mount(t, img)
}

// Mount attaches a loop device to an ext4 image and mounts it on a new directory, as a machine
// mounts its disk after a restart (the journal is replayed); both are undone when the test ends.
func Mount(t testing.TB, img string) *Loop {
	t.Helper()
	RequireRoot(t, "losetup")
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatalf("disktest: losetup %s: %v", img, err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		// The kernel may hold the device a moment after the unmount.
		var err error
		for range 50 {
			if err = exec.Command("losetup", "-d", dev).Run(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("disktest: losetup -d %s: %v", dev, err)
	})
	dir := filepath.Join(filepath.Dir(img), "mnt-"+filepath.Base(dev))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, dir, "ext4", 0, ""); err != nil {
		t.Fatalf("disktest: mount %s on %s: %v", dev, dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
	return &Loop{Image: img, Device: dev, Dir: dir}
}

// CopyDevice copies the loop device, as the device holds it, to a new image file in a temporary
// directory of the test and returns its path. It reads with O_DIRECT, past the page cache: what the filesystem above has written to
// the device is copied, and what it still holds in memory (dirty pages, data not yet written
// back) is not; that is what a power loss leaves. The copy is taken while the filesystem stays
// mounted, as a power loss finds it.
func (l *Loop) CopyDevice(t testing.TB) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.img")
	l.CopyDeviceTo(t, dst)
	return dst
}

// CopyDeviceTo is CopyDevice into dst, which the caller removes.
func (l *Loop) CopyDeviceTo(t testing.TB, dst string) {
	t.Helper()
	src, err := os.OpenFile(l.Device, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("disktest: open %s: %v", l.Device, err)
	}
	defer src.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := alignedBuffer(4<<20, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				t.Fatal(werr)
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			break
		}
		if err != nil {
			t.Fatalf("disktest: reading %s: %v", l.Device, err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// alignedBuffer is a buffer of size bytes starting at a multiple of align, as O_DIRECT needs.
func alignedBuffer(size, align int) []byte {
	b := make([]byte, size+align)
	off := int(uintptr(unsafe.Pointer(&b[0])) & uintptr(align-1))
	if off != 0 {
		off = align - off
	}
	return b[off : off+size]
}

func unmount(t testing.TB, dir string) {
	var err error
	for range 50 {
		if err = unix.Unmount(dir, 0); err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Still busy (a process the test started has not let go): detach it so nothing is left mounted.
	if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil {
		t.Errorf("disktest: unmount %s: %v, then %v", dir, err, derr)
	}
}
