package localvolume_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/mount"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/dataplane/localvolume"
)

const mib = 1 << 20

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wantErr bool
	}{
		{"pvc-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", false},
		{"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", false},
		{"data.example", false},
		{"a", false},
		{strings.Repeat("a", 253), false},
		{"", true},
		{".", true},
		{"..", true},
		{"../etc", true},
		{"a/../../etc", true},
		{"/etc", true},
		{"a/b", true},
		{"-a", true},
		{".hidden", true},
		{"a..b", true},
		{"UPPER", true},
		{"tmp\x00", true},
		{strings.Repeat("a", 254), true},
	} {
		err := localvolume.ValidateName(tc.name)
		if (err != nil) != tc.wantErr {
			t.Errorf("ValidateName(%q) = %v, want error %v", tc.name, err, tc.wantErr)
		}
		if err != nil && !errors.Is(err, localvolume.ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", tc.name, err)
		}
	}
}

// TestNamesCannotEscape: every method refuses a name that would lead out of
// the base directory, and nothing appears outside it.
func TestNamesCannotEscape(t *testing.T) {
	parent := t.TempDir()
	base := filepath.Join(parent, "base")
	m := newManager(t, localvolume.Config{Dir: base, Backend: localvolume.Dir})
	ctx := t.Context()
	before := dirEntries(t, parent)
	for _, name := range []string{"../escape", "..", "/tmp/escape", "a/../../escape", "volumes/../../escape", "tmp/../escape"} {
		if _, err := m.Create(ctx, name, mib); !errors.Is(err, localvolume.ErrInvalidName) {
			t.Errorf("Create(%q) = %v, want ErrInvalidName", name, err)
		}
		if _, err := m.Path(ctx, name); !errors.Is(err, localvolume.ErrInvalidName) {
			t.Errorf("Path(%q) = %v, want ErrInvalidName", name, err)
		}
		if err := m.Delete(ctx, name); !errors.Is(err, localvolume.ErrInvalidName) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidName", name, err)
		}
		if _, err := m.Expand(ctx, name, 2*mib); !errors.Is(err, localvolume.ErrInvalidName) {
			t.Errorf("Expand(%q) = %v, want ErrInvalidName", name, err)
		}
		if _, err := m.Stats(ctx, name); !errors.Is(err, localvolume.ErrInvalidName) {
			t.Errorf("Stats(%q) = %v, want ErrInvalidName", name, err)
		}
		if _, err := m.Retain(ctx, name); !errors.Is(err, localvolume.ErrInvalidName) {
			t.Errorf("Retain(%q) = %v, want ErrInvalidName", name, err)
		}
	}
	if after := dirEntries(t, parent); !slices.Equal(before, after) {
		t.Errorf("entries beside the base directory: %v, were %v", after, before)
	}
	if got := dirEntries(t, filepath.Join(base, "volumes")); len(got) != 0 {
		t.Errorf("volumes: %v, want none", got)
	}
}

// TestLoopVolume: a loop volume holds its size and not much more (ENOSPC),
// reports it, grows online while a file in it is open, and leaves nothing
// once deleted.
func TestLoopVolume(t *testing.T) {
	requireLoop(t)
	ctx := t.Context()
	base := baseDir(t)
	m := newManager(t, localvolume.Config{Dir: base, Backend: localvolume.Loop})
	if w := m.Warning(); w != "" {
		t.Errorf("Warning() = %q, want none", w)
	}
	const size = 24 * mib
	v, err := m.Create(ctx, "pvc-1", size)
	if err != nil {
		t.Fatal(err)
	}
	if v.Backend != localvolume.Loop || !v.Enforced || v.SizeBytes != size {
		t.Errorf("Create = %+v", v)
	}
	p, err := m.Path(ctx, "pvc-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, base+"/") {
		t.Fatalf("Path = %s, not under %s", p, base)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o777 {
		t.Errorf("mode of %s = %v, want 0777", p, fi.Mode().Perm())
	}
	if entries := dirEntries(t, p); len(entries) != 0 {
		t.Errorf("a new volume holds %v", entries)
	}
	if mounts := mountsUnder(t, base); len(mounts) != 1 {
		t.Errorf("mounts under the base: %v, want one", mounts)
	}
	devs := loopDevicesUnder(t, base)
	if len(devs) != 1 {
		t.Fatalf("loop devices: %v, want one", devs)
	}
	// Direct I/O where the base directory's filesystem has it.
	var fs unix.Statfs_t
	if err := unix.Statfs(base, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.EXT4_SUPER_MAGIC || fs.Type == unix.XFS_SUPER_MAGIC {
		dio, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(devs[0]), "loop", "dio"))
		if err != nil || strings.TrimSpace(string(dio)) != "1" {
			t.Errorf("%s: direct I/O %q, %v; want 1", devs[0], dio, err)
		}
	}

	st, err := m.Stats(ctx, "pvc-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.CapacityBytes < size || st.AvailableBytes < size || st.CapacityBytes > size+size/8+24*mib {
		t.Errorf("Stats of an empty %d-byte volume = %+v", size, st)
	}
	if st.Inodes == 0 || st.InodesUsed == 0 || st.InodesFree+st.InodesUsed != st.Inodes {
		t.Errorf("inodes: %+v", st)
	}

	// The whole size fits; then writing on fails with ENOSPC soon after.
	if n, err := fill(filepath.Join(p, "a"), size); err != nil {
		t.Fatalf("writing the volume's size: %d bytes, %v", n, err)
	}
	n, err := fill(filepath.Join(p, "b"), 64*mib)
	if !isQuotaError(err) {
		t.Fatalf("writing past the size: %d bytes, error %v, want ENOSPC", n, err)
	}
	if n > 16*mib {
		t.Errorf("%d bytes written past the size before ENOSPC", n)
	}
	st, err = m.Stats(ctx, "pvc-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.UsedBytes < size || st.AvailableBytes > mib {
		t.Errorf("Stats of a full volume = %+v", st)
	}
	if err := os.Remove(filepath.Join(p, "b")); err != nil {
		t.Fatal(err)
	}

	// Online expansion, with a file open in the volume. Growing a mounted
	// ext4 needs CAP_SYS_RESOURCE; without it the volume grows once it is
	// not in use.
	open, err := os.OpenFile(filepath.Join(p, "a"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := m.Expand(ctx, "pvc-1", size/2); !errors.Is(err, localvolume.ErrInvalidSize) {
		t.Errorf("shrinking: %v, want ErrInvalidSize", err)
	}
	v, err = m.Expand(ctx, "pvc-1", 2*size)
	if !hasCapSysResource(t) {
		t.Logf("no CAP_SYS_RESOURCE: growing offline")
		if err == nil || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("Expand of a volume in use without CAP_SYS_RESOURCE: %v, want an error saying it is in use", err)
		}
		if _, err := open.WriteAt([]byte("still open"), 0); err != nil {
			t.Errorf("the file open across the refused expansion: %v", err)
		}
		if got, err := m.Get("pvc-1"); err != nil || got.SizeBytes != size {
			t.Errorf("Get after a refused expansion = %+v, %v", got, err)
		}
		open.Close()
		v, err = m.Expand(ctx, "pvc-1", 2*size)
	}
	if err != nil {
		t.Fatal(err)
	}
	if v.SizeBytes != 2*size {
		t.Errorf("Expand = %+v", v)
	}
	st, err = m.Stats(ctx, "pvc-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.CapacityBytes < 2*size || st.AvailableBytes < size {
		t.Errorf("Stats after growing to %d bytes = %+v", 2*size, st)
	}
	if b, err := os.ReadFile(filepath.Join(p, "a")); err != nil || int64(len(b)) != size {
		t.Errorf("the volume's file after growing: %d bytes, %v", len(b), err)
	}
	if n, err := fill(filepath.Join(p, "c"), size); err != nil {
		t.Fatalf("writing into the grown volume: %d bytes, %v", n, err)
	}
	if _, err := open.WriteAt([]byte("still open"), 0); err != nil && hasCapSysResource(t) {
		t.Errorf("the file open across the expansion: %v", err)
	}
	open.Close()
	if got := m.List(); len(got) != 1 || got[0].SizeBytes != 2*size {
		t.Errorf("List = %+v", got)
	}

	if err := m.Delete(ctx, "pvc-1"); err != nil {
		t.Fatal(err)
	}
	if mounts := mountsUnder(t, base); len(mounts) != 0 {
		t.Errorf("mounts left: %v", mounts)
	}
	waitNoLoopDevices(t, base)
	for _, d := range []string{"volumes", "tmp", "trash", "retained"} {
		if got := dirEntries(t, filepath.Join(base, d)); len(got) != 0 {
			t.Errorf("%s holds %v after Delete", d, got)
		}
	}
	if _, err := m.Get("pvc-1"); !errors.Is(err, localvolume.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := m.Delete(ctx, "pvc-1"); err != nil {
		t.Errorf("deleting again: %v", err)
	}
}

// TestCreateIsIdempotent: a provisioning retried (or run twice at once)
// makes one volume; another size for an existing name is refused.
func TestCreateIsIdempotent(t *testing.T) {
	requireLoop(t)
	ctx := t.Context()
	base := baseDir(t)
	m := newManager(t, localvolume.Config{Dir: base, Backend: localvolume.Loop})
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Create(ctx, "pvc-same", 16*mib)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("Create: %v", err)
		}
	}
	if got := dirEntries(t, filepath.Join(base, "volumes")); !slices.Equal(got, []string{"pvc-same"}) {
		t.Errorf("volumes: %v", got)
	}
	if mounts := mountsUnder(t, base); len(mounts) != 1 {
		t.Errorf("mounts: %v, want one", mounts)
	}
	if _, err := m.Create(ctx, "pvc-same", 32*mib); !errors.Is(err, localvolume.ErrExists) {
		t.Errorf("Create with another size: %v, want ErrExists", err)
	}
	if got := dirEntries(t, filepath.Join(base, "tmp")); len(got) != 0 {
		t.Errorf("tmp holds %v", got)
	}
}

// TestRetain: a retained volume's data stays on the node, unmounted, and
// its name is free for a new, empty volume.
func TestRetain(t *testing.T) {
	requireLoop(t)
	ctx := t.Context()
	base := baseDir(t)
	m := newManager(t, localvolume.Config{Dir: base, Backend: localvolume.Loop})
	if _, err := m.Create(ctx, "pv-kept", 16*mib); err != nil {
		t.Fatal(err)
	}
	p, err := m.Path(ctx, "pv-kept")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "keep"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	kept, err := m.Retain(ctx, "pv-kept")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(kept, filepath.Join(base, "retained")+"/pv-kept-") {
		t.Errorf("Retain = %s", kept)
	}
	if mounts := mountsUnder(t, base); len(mounts) != 0 {
		t.Errorf("mounts left: %v", mounts)
	}
	waitNoLoopDevices(t, base)
	if _, err := m.Get("pv-kept"); !errors.Is(err, localvolume.ErrNotFound) {
		t.Errorf("Get after Retain: %v", err)
	}

	// The data is in the file: mounted by hand, it is there.
	look := filepath.Join(base, "look")
	if err := os.Mkdir(look, 0o700); err != nil {
		t.Fatal(err)
	}
	mnt := mount.Mount{Type: "ext4", Source: filepath.Join(kept, "disk.img"), Options: []string{"loop", "ro"}}
	if err := mnt.Mount(look); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(look, "data", "keep"))
	if err := unix.Unmount(look, 0); err != nil {
		t.Error(err)
	}
	if err != nil || string(b) != "precious" {
		t.Errorf("retained data: %q, %v", b, err)
	}

	// A new volume of the same name starts empty; a restart leaves the
	// retained one alone.
	if _, err := m.Create(ctx, "pv-kept", 16*mib); err != nil {
		t.Fatal(err)
	}
	p, err = m.Path(ctx, "pv-kept")
	if err != nil {
		t.Fatal(err)
	}
	if got := dirEntries(t, p); len(got) != 0 {
		t.Errorf("new volume holds %v", got)
	}
	m.Close()
	m = newManager(t, localvolume.Config{Dir: base, Backend: localvolume.Loop})
	if _, err := os.Stat(filepath.Join(kept, "disk.img")); err != nil {
		t.Errorf("retained volume after a restart: %v", err)
	}
	if got := m.List(); len(got) != 1 {
		t.Errorf("List = %+v", got)
	}
}

// TestRestart: after a reboot (volumes unmounted, loop devices gone) New
// mounts every volume again with its data; calling New again mounts
// nothing twice; a second Manager on the directory is refused.
func TestRestart(t *testing.T) {
	requireLoop(t)
	ctx := t.Context()
	base := baseDir(t)
	cfg := localvolume.Config{Dir: base, Backend: localvolume.Loop}
	m := newManager(t, cfg)
	for _, name := range []string{"pv-a", "pv-b"} {
		if _, err := m.Create(ctx, name, 16*mib); err != nil {
			t.Fatal(err)
		}
		p, err := m.Path(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "f"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := localvolume.New(ctx, cfg); err == nil {
		t.Error("a second Manager on the same directory was allowed")
	}
	m.Close()

	// A reboot: nothing mounted, no loop device.
	for _, mp := range mountsUnder(t, base) {
		if err := unix.Unmount(mp, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitNoLoopDevices(t, base)

	for round := range 2 {
		m = newManager(t, cfg)
		if mounts := mountsUnder(t, base); len(mounts) != 2 {
			t.Errorf("round %d: mounts %v, want two", round, mounts)
		}
		if devs := loopDevicesUnder(t, base); len(devs) != 2 {
			t.Errorf("round %d: loop devices %v, want two", round, devs)
		}
		for _, name := range []string{"pv-a", "pv-b"} {
			p, err := m.Path(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(p, "f")); err != nil || string(b) != name {
				t.Errorf("round %d: %s holds %q, %v", round, name, b, err)
			}
		}
		m.Close()
	}
}

// TestDirVolume: without enforcement the size is recorded and reported,
// usage measured, and the Manager says sizes are not enforced.
func TestDirVolume(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	m := newManager(t, localvolume.Config{Dir: base, Backend: localvolume.Dir})
	if m.Warning() == "" {
		t.Error("no Warning with the dir backend")
	}
	v, err := m.Create(ctx, "pvc-d", 4*mib)
	if err != nil {
		t.Fatal(err)
	}
	if v.Enforced {
		t.Errorf("Create = %+v, want not enforced", v)
	}
	p, err := m.Path(ctx, "pvc-d")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(p, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if n, err := fill(filepath.Join(p, "sub", "big"), 6*mib); err != nil {
		t.Fatalf("%d bytes: %v", n, err)
	}
	if err := os.Link(filepath.Join(p, "sub", "big"), filepath.Join(p, "link")); err != nil {
		t.Fatal(err)
	}
	st, err := m.Stats(ctx, "pvc-d")
	if err != nil {
		t.Fatal(err)
	}
	if st.CapacityBytes != 4*mib || st.AvailableBytes != 0 || st.UsedBytes < 6*mib || st.UsedBytes > 6*mib+64<<10 || st.InodesUsed != 3 {
		t.Errorf("Stats = %+v", st)
	}
	if _, err := m.Expand(ctx, "pvc-d", 8*mib); err != nil {
		t.Fatal(err)
	}
	if st, err = m.Stats(ctx, "pvc-d"); err != nil || st.CapacityBytes != 8*mib || st.AvailableBytes < mib {
		t.Errorf("Stats after Expand = %+v, %v", st, err)
	}
	if err := m.Delete(ctx, "pvc-d"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Delete: %v", p, err)
	}
}

// TestChooseBackend: with nothing asked for, New picks project quotas when
// the filesystem enforces them, else loop volumes; quotas asked for where
// there are none fail with ErrUnavailable.
func TestChooseBackend(t *testing.T) {
	requireLoop(t)
	base := baseDir(t)
	m := newManager(t, localvolume.Config{Dir: base})
	want := localvolume.Loop
	if quotasEnforcedOn(t, base) {
		want = localvolume.Quota
	}
	if m.Backend() != want || m.Warning() != "" {
		t.Errorf("Backend() = %s, Warning() = %q; want %s and no warning", m.Backend(), m.Warning(), want)
	}
	if got := dirEntries(t, filepath.Join(base, "tmp")); len(got) != 0 {
		t.Errorf("the probe left %v", got)
	}
	waitNoLoopDevices(t, base)
	m.Close()
	if want == localvolume.Loop {
		_, err := localvolume.New(t.Context(), localvolume.Config{Dir: base, Backend: localvolume.Quota})
		if !errors.Is(err, localvolume.ErrUnavailable) {
			t.Errorf("New with quotas on %s: %v, want ErrUnavailable", base, err)
		}
	}
}

func TestValidateLocalPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want string // substring of the error, "" for none
	}{
		{dir, ""},
		{"", "local path is not set"},
		{"relative/path", "must be absolute"},
		{dir + "/../x", "must not contain '..'"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{file, "only directory and block device are supported"},
	} {
		err := localvolume.ValidateLocalPath(tc.path)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ValidateLocalPath(%q) = %v, want %q", tc.path, err, tc.want)
		}
	}
}

func TestCheckHostPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		path string
		typ  string
		want string
	}{
		{dir, "", ""},
		{missing, "", ""},
		{dir, "Directory", ""},
		{missing, "DirectoryOrCreate", ""},
		{file, "DirectoryOrCreate", "hostPath type check failed: " + file + " is not a directory, it's a File"},
		{missing, "Directory", "hostPath " + missing + " doesn't exist"},
		{file, "File", ""},
		{missing, "FileOrCreate", ""},
		{dir, "File", "is not a file, it's a Directory"},
		{file, "Socket", "is not a socket file"},
		{"/dev/null", "CharDevice", ""},
		{file, "BlockDevice", "is not a block device"},
		{dir, "Pipe", "Pipe is an invalid volume type"},
	} {
		err := localvolume.CheckHostPath(tc.path, corev1.HostPathType(tc.typ))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckHostPath(%q, %q) = %v, want %q", tc.path, tc.typ, err, tc.want)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckHostPath created %s", missing)
	}
}

// TestVolumeHeldElsewhere: a loop volume unmounted here while something
// else still holds its device (a container's mount namespace keeps its own
// mount) is mounted again from that same device, never from a second one
// (two ext4 mounts of one file would corrupt it); it cannot be grown
// offline meanwhile.
func TestVolumeHeldElsewhere(t *testing.T) {
	requireLoop(t)
	ctx := t.Context()
	base := baseDir(t)
	m := newManager(t, localvolume.Config{Dir: base, Backend: localvolume.Loop})
	if _, err := m.Create(ctx, "pv-held", 16*mib); err != nil {
		t.Fatal(err)
	}
	p, err := m.Path(ctx, "pv-held")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "f"), []byte("held"), 0o644); err != nil {
		t.Fatal(err)
	}
	devs := loopDevicesUnder(t, base)
	if len(devs) != 1 {
		t.Fatalf("loop devices %v", devs)
	}
	holder, err := os.Open(devs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	mounts := mountsUnder(t, base)
	if err := unix.Unmount(mounts[0], 0); err != nil {
		t.Fatal(err)
	}
	if p, err = m.Path(ctx, "pv-held"); err != nil {
		t.Fatal(err)
	}
	if got := loopDevicesUnder(t, base); !slices.Equal(got, devs) {
		t.Errorf("loop devices after mounting again: %v, want %v", got, devs)
	}
	if b, err := os.ReadFile(filepath.Join(p, "f")); err != nil || string(b) != "held" {
		t.Errorf("file after mounting again: %q, %v", b, err)
	}
	if !hasCapSysResource(t) {
		if _, err := m.Expand(ctx, "pv-held", 32*mib); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Errorf("Expand of a volume held elsewhere: %v, want an error saying it is in use", err)
		}
		if got := mountsUnder(t, base); len(got) != 1 {
			t.Errorf("mounts after a refused expansion: %v", got)
		}
		if got := loopDevicesUnder(t, base); !slices.Equal(got, devs) {
			t.Errorf("loop devices after a refused expansion: %v, want %v", got, devs)
		}
	}
	holder.Close()
	if err := m.Delete(ctx, "pv-held"); err != nil {
		t.Fatal(err)
	}
	waitNoLoopDevices(t, base)
}

// TestBrokenVolumeAtStart: a volume whose file cannot be mounted at a start
// is reported (or fails New when nothing takes reports); the others are
// mounted, and the broken one stays listed.
func TestBrokenVolumeAtStart(t *testing.T) {
	requireLoop(t)
	ctx := t.Context()
	base := baseDir(t)
	cfg := localvolume.Config{Dir: base, Backend: localvolume.Loop}
	m := newManager(t, cfg)
	for _, name := range []string{"pv-good", "pv-broken"} {
		if _, err := m.Create(ctx, name, 16*mib); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	for _, mp := range mountsUnder(t, base) {
		if err := unix.Unmount(mp, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitNoLoopDevices(t, base)
	if err := os.WriteFile(filepath.Join(base, "volumes", "pv-broken", "disk.img"), []byte("not ext4"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := localvolume.New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "pv-broken") {
		t.Errorf("New without Report: %v, want the broken volume's error", err)
	}
	var reported []error
	cfg.Report = func(err error) { reported = append(reported, err) }
	m = newManager(t, cfg)
	if len(reported) != 1 || !strings.Contains(reported[0].Error(), "pv-broken") {
		t.Errorf("reported %v, want the broken volume", reported)
	}
	if got := mountsUnder(t, base); len(got) != 1 {
		t.Errorf("mounts %v, want the good volume's", got)
	}
	if _, err := m.Path(ctx, "pv-good"); err != nil {
		t.Error(err)
	}
	if _, err := m.Path(ctx, "pv-broken"); err == nil {
		t.Error("Path of the broken volume succeeded")
	}
	if got := m.List(); len(got) != 2 {
		t.Errorf("List = %+v", got)
	}
	if err := m.Delete(ctx, "pv-broken"); err != nil {
		t.Errorf("Delete of the broken volume: %v", err)
	}
}
