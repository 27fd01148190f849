package localvolume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// quotaBackend: a directory whose files belong to a project of their own
// (FS_IOC_FSSETXATTR with FS_XFLAG_PROJINHERIT: what is created under it
// inherits the project) with a hard block limit on the project
// (quotactl_fd Q_SETQUOTA). It needs ext4 with the project feature mounted
// with prjquota, or XFS mounted with prjquota, and Linux 5.14
// (quotactl_fd). statfs of such a directory reports the project's limit and
// usage (ext4_statfs_project, xfs_qm_statvfs), which Stats returns as the
// kubelet does.
type quotaBackend struct {
	base string

	mu sync.Mutex
	// used: the project IDs of this Manager's volumes, complete, being
	// built, or retained.
	used map[uint32]bool
}

var _ backend = (*quotaBackend)(nil)

// firstProjectID is where the IDs of volumes start, above those an
// administrator hands out by hand (/etc/projid) and where the kubelet's
// own quota code starts (1048577).
const firstProjectID = 1 << 20

func newQuotaBackend(base string) *quotaBackend {
	return &quotaBackend{base: base, used: map[uint32]bool{}}
}

func (*quotaBackend) data(dir string) string { return filepath.Join(dir, "data") }

func (q *quotaBackend) adopt(id uint32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.used[id] = true
}

// Linux quota interface (include/uapi/linux/quota.h, dqblk_xfs.h, fs.h).
const (
	prjQuota       = 2
	qGetQuota      = 0x800007
	qSetQuota      = 0x800008
	qXGetQStatV    = 0x5808 // XQM_CMD(8)
	qifBLimits     = 1
	qifLimits      = 5 // QIF_BLIMITS | QIF_ILIMITS
	fsQuotaPDQAcct = 1 << 4
	fsQuotaPDQEnfd = 1 << 5

	fsIocFSGetXattr    = 0x801c581f // _IOR('X', 31, struct fsxattr)
	fsIocFSSetXattr    = 0x401c5820 // _IOW('X', 32, struct fsxattr)
	fsXflagProjInherit = 0x200
)

func qcmd(cmd, typ uint32) uint32 { return cmd<<8 | typ&0xff }

// ifDqblk is struct if_dqblk.
type ifDqblk struct {
	BHardLimit uint64 // in 1 KiB blocks
	BSoftLimit uint64
	CurSpace   uint64 // bytes
	IHardLimit uint64
	ISoftLimit uint64
	CurInodes  uint64
	BTime      uint64
	ITime      uint64
	Valid      uint32
	_          uint32
}

// fsxattr is struct fsxattr.
type fsxattr struct {
	XFlags     uint32
	ExtSize    uint32
	NExtents   uint32
	ProjID     uint32
	CowExtSize uint32
	_          [8]byte
}

// quotactl is quotactl_fd(2) on the filesystem holding f.
func quotactl(f *os.File, cmd uint32, id uint32, addr unsafe.Pointer) error {
	_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL_FD, f.Fd(), uintptr(cmd), uintptr(id), uintptr(addr), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// probe checks that base's filesystem accounts and enforces project quotas.
func (q *quotaBackend) probe(context.Context) error {
	f, err := os.Open(q.base)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Type != unix.EXT4_SUPER_MAGIC && st.Type != unix.XFS_SUPER_MAGIC {
		return fmt.Errorf("%s is on neither ext4 nor XFS", q.base)
	}
	// struct fs_quota_statv: qs_version (s8), qs_pad1, qs_flags (u16), ...
	var statv [160]byte
	statv[0] = 1 // FS_QSTATV_VERSION1
	if err := quotactl(f, qcmd(qXGetQStatV, prjQuota), 0, unsafe.Pointer(&statv[0])); err != nil {
		return fmt.Errorf("project quotas on %s: %w (mount it with prjquota)", q.base, err)
	}
	flags := uint16(statv[2]) | uint16(statv[3])<<8
	if flags&fsQuotaPDQAcct == 0 || flags&fsQuotaPDQEnfd == 0 {
		return fmt.Errorf("project quotas on %s are not enforced (mount it with prjquota)", q.base)
	}
	return nil
}

// build makes data with a new project and its limit. The ID is on the
// directory before the limit is set, so a leftover can always be released.
func (q *quotaBackend) build(_ context.Context, dir string, rec *record) error {
	data := q.data(dir)
	if err := makeData(data); err != nil {
		return err
	}
	f, err := os.Open(q.base)
	if err != nil {
		return err
	}
	defer f.Close()
	id, err := q.allocate(f)
	if err != nil {
		return err
	}
	rec.ProjectID = id
	if err := setProject(data, id); err != nil {
		return err
	}
	return setLimit(f, id, limitFor(rec.SizeBytes))
}

// limitFor is a volume's block limit: its size and the block of its own
// directory (charged to the project), so that size bytes of files fit.
func limitFor(size int64) int64 { return size + blockSize }

// allocate takes the lowest project ID that neither this Manager nor anyone
// else uses (no usage, no limit).
func (q *quotaBackend) allocate(f *os.File) (uint32, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for id := uint32(firstProjectID); id < firstProjectID+1<<24; id++ {
		if q.used[id] {
			continue
		}
		var dq ifDqblk
		err := quotactl(f, qcmd(qGetQuota, prjQuota), id, unsafe.Pointer(&dq))
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("quota of project %d: %w", id, err)
		}
		if err == nil && (dq.CurSpace != 0 || dq.CurInodes != 0 || dq.BHardLimit != 0 || dq.IHardLimit != 0) {
			continue
		}
		q.used[id] = true
		return id, nil
	}
	return 0, errors.New("no free project ID")
}

func setProject(dir string, id uint32) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	var x fsxattr
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), fsIocFSGetXattr, uintptr(unsafe.Pointer(&x))); errno != 0 {
		return fmt.Errorf("FS_IOC_FSGETXATTR %s: %w", dir, errno)
	}
	x.ProjID = id
	x.XFlags |= fsXflagProjInherit
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), fsIocFSSetXattr, uintptr(unsafe.Pointer(&x))); errno != 0 {
		return fmt.Errorf("set project %d on %s: %w", id, dir, errno)
	}
	return nil
}

// projectOf returns dir's project ID, 0 if it has none or is not there.
func projectOf(dir string) (uint32, error) {
	d, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var x fsxattr
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), fsIocFSGetXattr, uintptr(unsafe.Pointer(&x))); errno != 0 {
		if errno == unix.ENOTTY || errno == unix.EOPNOTSUPP || errno == unix.EINVAL {
			return 0, nil // a filesystem without projects
		}
		return 0, fmt.Errorf("FS_IOC_FSGETXATTR %s: %w", dir, errno)
	}
	return x.ProjID, nil
}

// setLimit sets project id's hard block limit to size bytes (0: none) and
// clears its inode limits.
func setLimit(f *os.File, id uint32, size int64) error {
	dq := ifDqblk{BHardLimit: uint64(ceilDiv(size, 1024)), Valid: qifLimits}
	if err := quotaCall(f, qcmd(qSetQuota, prjQuota), id, &dq); err != nil {
		return fmt.Errorf("set the limit of project %d: %w", id, err)
	}
	return nil
}

func quotaCall(f *os.File, cmd, id uint32, dq *ifDqblk) error {
	return quotactl(f, cmd, id, unsafe.Pointer(dq))
}

func (q *quotaBackend) attach(context.Context, string, *record) error { return nil }
func (q *quotaBackend) detach(context.Context, string, *record) error { return nil }

func (q *quotaBackend) expand(_ context.Context, _ string, rec *record, size int64) error {
	f, err := os.Open(q.base)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := setLimit(f, rec.ProjectID, limitFor(size)); err != nil {
		return err
	}
	rec.SizeBytes = size
	return nil
}

// stats is statfs of the directory, which reports the project's limit and
// usage.
func (q *quotaBackend) stats(_ context.Context, dir string, _ *record) (Stats, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(q.data(dir), &st); err != nil {
		return Stats{}, fmt.Errorf("statfs: %w", err)
	}
	return statfsStats(&st), nil
}

// release clears the limit of the volume's project (read from its
// directory when there is no record) and frees the ID, unless a volume of
// this Manager still holds it.
func (q *quotaBackend) release(_ context.Context, dir string, rec *record) error {
	id := uint32(0)
	if rec != nil {
		if rec.Backend != Quota {
			return nil
		}
		id = rec.ProjectID
	} else {
		var err error
		if id, err = projectOf(q.data(dir)); err != nil {
			return err
		}
	}
	if id < firstProjectID {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if rec == nil && q.used[id] {
		return nil // not this leftover's: a complete volume holds it
	}
	f, err := os.Open(q.base)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := setLimit(f, id, 0); err != nil {
		return err
	}
	delete(q.used, id)
	return nil
}
