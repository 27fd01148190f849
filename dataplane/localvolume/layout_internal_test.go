package localvolume

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"
)

// TestKernelLayouts pins the kernel interfaces written by hand against the
// values of the uapi headers (linux/quota.h, linux/fs.h, linux/dqblk_xfs.h,
// checked with a C program on Linux 6.18's headers).
func TestKernelLayouts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uint64
	}{
		{"QCMD(Q_GETQUOTA, PRJQUOTA)", uint64(qcmd(qGetQuota, prjQuota)), 0x80000702},
		{"QCMD(Q_SETQUOTA, PRJQUOTA)", uint64(qcmd(qSetQuota, prjQuota)), 0x80000802},
		{"QCMD(Q_XGETQSTATV, PRJQUOTA)", uint64(qcmd(qXGetQStatV, prjQuota)), 0x580802},
		{"sizeof(struct if_dqblk)", uint64(unsafe.Sizeof(ifDqblk{})), 72},
		{"offsetof(if_dqblk, dqb_curspace)", uint64(unsafe.Offsetof(ifDqblk{}.CurSpace)), 16},
		{"offsetof(if_dqblk, dqb_valid)", uint64(unsafe.Offsetof(ifDqblk{}.Valid)), 64},
		{"sizeof(struct fsxattr)", uint64(unsafe.Sizeof(fsxattr{})), 28},
		{"offsetof(fsxattr, fsx_projid)", uint64(unsafe.Offsetof(fsxattr{}.ProjID)), 12},
		{"FS_IOC_FSGETXATTR", fsIocFSGetXattr, 0x801c581f},
		{"FS_IOC_FSSETXATTR", fsIocFSSetXattr, 0x401c5820},
		{"EXT4_IOC_RESIZE_FS", ext4IocResizeFS, 0x40086610},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// TestImageBlocks: the first guess of a loop volume's file size leaves the
// size available (so creating one runs mkfs once) without wasting more
// than ext4 needs, from one block to 100 GiB.
func TestImageBlocks(t *testing.T) {
	if _, err := lookSbin("mkfs.ext4"); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(filepath.Join(seed, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img")
	for _, want := range []int64{1, 4096, 25600, 1 << 18, 1000003, 10 << 18, 100 << 18} {
		blocks := imageBlocks(want)
		if err := mkfs(t.Context(), img, blocks, journalBlocks(want), seed); err != nil {
			t.Fatal(err)
		}
		sb, err := readSuperblock(img)
		if err != nil {
			t.Fatal(err)
		}
		if sb.blocks != blocks {
			t.Errorf("%d blocks asked, mkfs made %d", blocks, sb.blocks)
		}
		have := sb.freeBlocks - reservedClusters(sb.blocks)
		if have < want {
			t.Errorf("imageBlocks(%d) = %d leaves %d available", want, blocks, have)
		}
		if want >= 25600 && have > want+want/100 {
			t.Errorf("imageBlocks(%d) = %d leaves %d available: over 1%% more than needed", want, blocks, have)
		}
		t.Logf("%d blocks wanted: file of %d blocks (+%.1f%%), %d available", want, blocks, 100*float64(blocks-want)/float64(want), have)
	}
}
