package localvolume

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/containerd/containerd/mount"
	"golang.org/x/sys/unix"
)

// loopBackend: a sparse file per volume, formatted ext4 and loop-mounted on
// <dir>/mnt; the volume's directory is <dir>/mnt/data, made by mkfs (the
// filesystem's root keeps lost+found out of the containers' sight).
type loopBackend struct{}

var _ backend = (*loopBackend)(nil)

const (
	imageFile = "disk.img"
	mountDir  = "mnt"
	blockSize = 4096
	// minImageBlocks: 16 MiB, the least with a journal of its own.
	minImageBlocks = 4096
)

func (*loopBackend) data(dir string) string { return filepath.Join(dir, mountDir, "data") }

// build formats the volume's file so that a fresh mount has at least
// rec.SizeBytes available: the file is larger by ext4's own needs (inode
// tables, journal, group metadata, and the clusters statfs keeps back). A
// first guess is checked against the superblock mkfs wrote and corrected.
func (b *loopBackend) build(ctx context.Context, dir string, rec *record) error {
	seed := filepath.Join(dir, "seed")
	if err := os.Mkdir(seed, 0o755); err != nil {
		return err
	}
	if err := makeData(filepath.Join(seed, "data")); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, mountDir), 0o755); err != nil {
		return err
	}
	img := filepath.Join(dir, imageFile)
	want := ceilDiv(rec.SizeBytes, blockSize)
	blocks := imageBlocks(want)
	for try := 0; ; try++ {
		if err := mkfs(ctx, img, blocks, journalBlocks(want), seed); err != nil {
			return err
		}
		sb, err := readSuperblock(img)
		if err != nil {
			return err
		}
		have := sb.freeBlocks - reservedClusters(sb.blocks)
		if have >= want {
			break
		}
		if try == 3 {
			return fmt.Errorf("mkfs.ext4 of %d blocks leaves %d free, %d needed", blocks, have, want)
		}
		blocks += (want-have)*9/8 + 64
	}
	rec.ImageBytes = blocks * blockSize
	if err := os.RemoveAll(seed); err != nil {
		return err
	}
	f, err := os.Open(img)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// imageBlocks computes the file size (in blocks) that leaves want blocks
// available on a fresh ext4 made by mkfs below: the data, the journal, the
// clusters ext4 keeps back, and the metadata of every block group (inode
// tables, bitmaps, and the descriptors with the room reserved to grow 1024
// times, copied in the backup groups), solved by iterating on the total.
func imageBlocks(want int64) int64 {
	t := want + journalBlocks(want)
	for range 5 {
		t = want + journalBlocks(want) + reservedClusters(t) + metadataBlocks(t) + 64
	}
	return max(t, minImageBlocks)
}

// metadataBlocks is what mke2fs (4 KiB blocks, 16 KiB per inode, 256-byte
// inodes, 64-bit descriptors, resize_inode, sparse_super) takes for its
// block groups in a filesystem of t blocks.
func metadataBlocks(t int64) int64 {
	const perGroup = 32768
	groups := ceilDiv(t, perGroup)
	gdt := ceilDiv(groups*64, blockSize)
	reservedGDT := min(ceilDiv(t*1024/perGroup*64, blockSize), blockSize/4)
	inodeTables := groups * perGroup * blockSize / 16384 * 256 / blockSize
	return backupGroups(groups)*(gdt+reservedGDT) + 2*groups + inodeTables
}

// backupGroups counts the groups holding a superblock and descriptors with
// sparse_super: 0, 1 and the powers of 3, 5 and 7.
func backupGroups(groups int64) int64 {
	n := min(groups, 2)
	for _, base := range []int64{3, 5, 7} {
		for p := base; p < groups; p *= base {
			n++
		}
	}
	return n
}

// journalBlocks: 1/32 of the volume, between 4 MiB and 64 MiB (mke2fs's
// own default for these sizes, fixed here so that sizes are predictable).
// With lazy_journal_init it costs no disk until written.
func journalBlocks(want int64) int64 { return min(max(want/32, 1024), 16384) }

// reservedClusters is what ext4 keeps back from statfs's available blocks
// for its own allocations (ext4_calculate_resv_clusters: 2%, at most 4096).
func reservedClusters(blocks int64) int64 { return min(blocks/50, 4096) }

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// mkfs makes img a file of blocks blocks holding an ext4 whose root is a
// copy of seed. The journal is not zeroed (lazy_journal_init: the file is
// new and sparse, it reads as zeros) and mkfs punches the rest, so the file
// costs well under 1 MiB of disk until used.
func mkfs(ctx context.Context, img string, blocks, journal int64, seed string) error {
	f, err := os.OpenFile(img, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(blocks * blockSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	bin, err := lookSbin("mkfs.ext4")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "-q", "-F",
		"-b", fmt.Sprint(blockSize), "-m", "0", "-i", "16384", "-I", "256",
		"-J", fmt.Sprintf("size=%d", journal*blockSize>>20),
		"-E", "lazy_journal_init=1", "-e", "remount-ro",
		"-d", seed, img)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// lookSbin finds a tool of e2fsprogs also when PATH lacks the sbin
// directories (a non-login root shell).
func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (Debian package e2fsprogs)", name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

type superblock struct {
	blocks, freeBlocks int64
}

// readSuperblock reads the block counts of the ext4 in img (struct
// ext4_super_block at byte 1024).
func readSuperblock(img string) (superblock, error) {
	f, err := os.Open(img)
	if err != nil {
		return superblock{}, err
	}
	defer f.Close()
	b := make([]byte, 1024)
	if _, err := f.ReadAt(b, 1024); err != nil {
		return superblock{}, fmt.Errorf("superblock of %s: %w", img, err)
	}
	le := binary.LittleEndian
	if le.Uint16(b[0x38:]) != 0xEF53 {
		return superblock{}, fmt.Errorf("%s holds no ext4", img)
	}
	if bs := int64(1024) << le.Uint32(b[0x18:]); bs != blockSize {
		return superblock{}, fmt.Errorf("%s has %d-byte blocks", img, bs)
	}
	sb := superblock{blocks: int64(le.Uint32(b[0x04:])), freeBlocks: int64(le.Uint32(b[0x0C:]))}
	if le.Uint32(b[0x60:])&0x80 != 0 { // INCOMPAT_64BIT: the high halves count
		sb.blocks |= int64(le.Uint32(b[0x150:])) << 32
		sb.freeBlocks |= int64(le.Uint32(b[0x158:])) << 32
	}
	return sb, nil
}

// attach mounts the file on mnt through a loop device set up with
// autoclear (containerd's mount package: LOOP_CONFIGURE, then mount, then
// the device's file closed, so the kernel releases the device when the
// filesystem is unmounted, or at once if the mount fails or the process
// dies before it) and direct I/O (no second copy of the data in the page
// cache; 5x the buffered throughput here, docs/storage.md). If a loop
// device still holds the file (the volume is unmounted here but a
// container's mount namespace keeps it), that device is mounted: a second
// device on the same file would mount one ext4 twice and corrupt it.
func (b *loopBackend) attach(_ context.Context, dir string, _ *record) error {
	mnt := filepath.Join(dir, mountDir)
	img := filepath.Join(dir, imageFile)
	ok, err := isMountPoint(mnt)
	if err != nil {
		return err
	}
	if ok {
		_, err := loopDevice(mnt, img)
		return err
	}
	dev, err := boundLoop(img)
	if err != nil {
		return err
	}
	if dev != "" {
		if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
			return fmt.Errorf("mount %s (%s): %w", dev, img, err)
		}
		_, err := loopDevice(mnt, img)
		return err
	}
	m := mount.Mount{Type: "ext4", Source: img, Options: []string{"loop", "direct-io"}}
	if err := m.Mount(mnt); err != nil {
		if !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("mount %s: %w", img, err)
		}
		// A backing filesystem without O_DIRECT: buffered.
		m.Options = []string{"loop"}
		if err := m.Mount(mnt); err != nil {
			return fmt.Errorf("mount %s: %w", img, err)
		}
	}
	return nil
}

// boundLoop returns the loop device backed by img, "" if none is. (The
// base directory's path has no symlinks: New resolved it, so it is the
// path the kernel reports.)
func boundLoop(img string) (string, error) {
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return "", err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENXIO) {
			continue // released meanwhile
		}
		if err != nil {
			return "", err
		}
		if strings.TrimSpace(string(b)) == img {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f))), nil
		}
	}
	return "", nil
}

// loopDevice returns the loop device mounted on mnt, checked to be backed
// by img.
func loopDevice(mnt, img string) (string, error) {
	var st, ist unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return "", err
	}
	if err := unix.Stat(img, &ist); err != nil {
		return "", err
	}
	const loopMajor = 7
	if unix.Major(st.Dev) != loopMajor {
		return "", fmt.Errorf("%s is mounted from device %d:%d, not a loop device", mnt, unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	dev := fmt.Sprintf("/dev/loop%d", unix.Minor(st.Dev))
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if err != nil {
		return "", fmt.Errorf("%s: %w", dev, err)
	}
	if info.Inode != ist.Ino || info.Device != ist.Dev {
		return "", fmt.Errorf("%s is mounted from %s, which is not backed by %s", mnt, dev, img)
	}
	return dev, nil
}

// detach unmounts the volume; the loop device goes with it (autoclear). A
// volume that a process of the host uses fails with EBUSY and stays.
func (b *loopBackend) detach(_ context.Context, dir string, _ *record) error {
	mnt := filepath.Join(dir, mountDir)
	ok, err := isMountPoint(mnt)
	if err != nil || !ok {
		return err
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	return nil
}

func (b *loopBackend) release(context.Context, string, *record) error { return nil }

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow a
// mounted ext4 to a block count (what resize2fs does online).
const ext4IocResizeFS = 0x40086610

// expand grows the file, tells the loop device (LOOP_SET_CAPACITY) and
// grows the mounted ext4 to the file's size (EXT4_IOC_RESIZE_FS, as
// resize2fs does online), until a fresh filesystem of that size would have
// size bytes available. Growing a mounted ext4 takes CAP_SYS_RESOURCE;
// without it (a node agent in a container that dropped it) the volume is
// grown offline if nothing uses it: unmounted, checked (e2fsck), resized
// (resize2fs) and mounted again.
func (b *loopBackend) expand(ctx context.Context, dir string, rec *record, size int64) error {
	mnt := filepath.Join(dir, mountDir)
	img := filepath.Join(dir, imageFile)
	want := ceilDiv(size, blockSize)
	blocks := max(imageBlocks(want), rec.ImageBytes/blockSize)
	for try := 0; ; try++ {
		err := growOnline(img, mnt, blocks)
		if errors.Is(err, unix.EPERM) {
			err = b.growOffline(ctx, dir, rec, blocks)
		}
		if err != nil {
			return err
		}
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			return fmt.Errorf("statfs %s: %w", mnt, err)
		}
		// What an empty filesystem of this size leaves available: its
		// blocks less the reserved clusters and the root's few.
		have := int64(st.Blocks) - reservedClusters(blocks) - 64
		if have >= want {
			break
		}
		if try == 3 {
			return fmt.Errorf("ext4 of %d blocks holds %d, %d needed", blocks, have, want)
		}
		blocks += (want-have)*9/8 + 64
	}
	rec.ImageBytes = blocks * blockSize
	rec.SizeBytes = size
	return nil
}

func growOnline(img, mnt string, blocks int64) error {
	dev, err := loopDevice(mnt, img)
	if err != nil {
		return err
	}
	if err := growFile(img, blocks); err != nil {
		return err
	}
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("%s: LOOP_SET_CAPACITY: %w", dev, err)
	}
	d, err := os.Open(mnt)
	if err != nil {
		return err
	}
	defer d.Close()
	n := uint64(blocks)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return fmt.Errorf("resize ext4 on %s to %d blocks: %w", mnt, blocks, errno)
	}
	return nil
}

// growFile extends img to blocks blocks (it never shrinks it).
func growFile(img string, blocks int64) error {
	fi, err := os.Stat(img)
	if err != nil {
		return err
	}
	if fi.Size() >= blocks*blockSize {
		return nil
	}
	return os.Truncate(img, blocks*blockSize)
}

// errInUse: a volume cannot be grown while it is in use (online growth is
// not permitted here).
var errInUse = errors.New("the volume is in use and growing a mounted ext4 needs CAP_SYS_RESOURCE, which this process lacks: it grows once no pod uses it")

func (b *loopBackend) growOffline(ctx context.Context, dir string, rec *record, blocks int64) (err error) {
	mnt := filepath.Join(dir, mountDir)
	img := filepath.Join(dir, imageFile)
	if err := unix.Unmount(mnt, 0); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w (%w)", errInUse, err)
		}
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	// Mounted again whatever happens.
	defer func() { err = errors.Join(err, b.attach(ctx, dir, rec)) }()
	if dev, err := boundLoop(img); err != nil || dev != "" {
		return errors.Join(err, errInUse) // a container's mount holds it
	}
	if err := growFile(img, blocks); err != nil {
		return err
	}
	fsck, err := lookSbin("e2fsck")
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, fsck, "-f", "-p", img).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		err = nil // errors corrected
	}
	if err != nil {
		return fmt.Errorf("e2fsck %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	resize, err := lookSbin("resize2fs")
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, resize, img, fmt.Sprint(blocks)).CombinedOutput(); err != nil {
		return fmt.Errorf("resize2fs %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// stats is statfs of the volume's own filesystem, as the kubelet's
// MetricsStatFS.
func (b *loopBackend) stats(_ context.Context, dir string, _ *record) (Stats, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(b.data(dir), &st); err != nil {
		return Stats{}, fmt.Errorf("statfs (volume not mounted?): %w", err)
	}
	return statfsStats(&st), nil
}

// probeLoop checks that loop volumes work here by making one under tmp,
// mounting, writing and removing it.
func probeLoop(ctx context.Context, tmp string) (err error) {
	if _, err := lookSbin("mkfs.ext4"); err != nil {
		return err
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	ctl.Close()
	dir, err := os.MkdirTemp(tmp, "probe")
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, unmountUnder(dir), os.RemoveAll(dir))
	}()
	b := &loopBackend{}
	rec := &record{SizeBytes: 1 << 20}
	if err := b.build(ctx, dir, rec); err != nil {
		return err
	}
	if err := b.attach(ctx, dir, rec); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(b.data(dir), "probe"))
	if err == nil {
		_, err = io.WriteString(f, "probe")
		err = errors.Join(err, f.Close())
	}
	return errors.Join(err, b.detach(ctx, dir, rec))
}
