// Package localvolume is the machine side of logplane's built-in local
// provisioner: on one node it creates a directory per persistent volume
// under a base directory (the node agent's), sizes it, grows it, reports its
// usage and capacity as the kubelet's volume metrics do, and deletes or keeps
// it, with a plain Go API and no knowledge of the log. The pod worker bind
// mounts the directory that Path returns into containers as it does a
// hostPath (readOnly and subPath are its business).
//
// The requested size is enforced where the machine allows it, by one of three
// backends chosen at New (docs/storage.md has the measurements):
//
//   - Quota: a directory carrying an ext4 or XFS project ID with a hard block
//     limit, when the base directory's filesystem is mounted with project
//     quotas enforced (prjquota). Writing past the size fails with EDQUOT.
//   - Loop: a sparse file per volume, formatted ext4 (mkfs.ext4) and
//     loop-mounted with direct I/O; the volume's directory lives inside it.
//     Writing past the size fails with ENOSPC. Growth is online: the file is
//     extended, the loop device told, and ext4 resized while mounted.
//   - Dir: a plain directory; the size is recorded and reported but not
//     enforced (Warning says why), and usage is measured by walking it.
//
// A volume is built under a temporary name and renamed into place, so a
// volume that exists is complete; a deleted one is renamed away before its
// data is removed. New (a start, after a crash or a reboot) removes both kinds
// of leftovers and mounts the loop volumes again. Loop devices are set up with
// autoclear: unmounting a volume (or a process dying between setting one up
// and mounting it) releases the device, so none is ever left behind.
//
// Names come from users (PV names, claim UIDs) and are checked with
// ValidateName (a DNS-1123 subdomain), so that none can leave the base
// directory. ValidateLocalPath and CheckHostPath check hand-written local and
// hostPath volumes, which need no provisioning, against this node.
package localvolume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"
)

// Backend is how a volume's size is enforced.
type Backend string

// The backends, from the strictest and cheapest to none.
const (
	Quota Backend = "quota"
	Loop  Backend = "loop"
	Dir   Backend = "dir"
)

// Errors callers tell apart with errors.Is.
var (
	ErrNotFound    = errors.New("localvolume: volume not found")
	ErrExists      = errors.New("localvolume: volume exists with another size")
	ErrInvalidName = errors.New("localvolume: invalid volume name")
	ErrInvalidSize = errors.New("localvolume: invalid size")
	// ErrUnavailable: the backend asked for cannot work on this machine.
	ErrUnavailable = errors.New("localvolume: backend unavailable")
)

// Config configures a Manager.
type Config struct {
	// Dir is the base directory the Manager owns (created 0700 if missing),
	// e.g. a subdirectory of the node agent's data directory. Required.
	Dir string
	// Backend for new volumes; "" picks the first that works here: Quota if
	// Dir's filesystem enforces project quotas, else Loop if loop devices,
	// mount and mkfs.ext4 work, else Dir (sizes not enforced). A backend
	// asked for by name that cannot work fails New with ErrUnavailable.
	// Existing volumes keep the backend they were made with.
	Backend Backend
	// Clock names retained volumes. Default: the real clock.
	Clock clock.PassiveClock
	// Report receives the error of a volume that New could not make usable
	// again (a loop volume whose file cannot be mounted): the volume stays
	// listed and Path tries again. Nil: such an error fails New.
	Report func(error)
}

// Volume is one provisioned volume.
type Volume struct {
	Name    string
	Backend Backend
	// SizeBytes is the size asked for at Create or the last Expand: what the
	// volume can hold at least.
	SizeBytes int64
	// Enforced: writing past SizeBytes fails (Quota, Loop).
	Enforced bool
}

// Stats is a volume's usage, with the meaning of the kubelet's volume
// metrics (kubelet_volume_stats_capacity_bytes, _available_bytes,
// _used_bytes, _inodes, _inodes_free, _inodes_used).
type Stats struct {
	CapacityBytes  int64
	AvailableBytes int64
	UsedBytes      int64
	Inodes         int64
	InodesFree     int64
	InodesUsed     int64
}

// Manager provisions volumes under one base directory. Only one Manager
// (in any process) may use a directory at a time. Its methods are safe for
// concurrent use; operations on one volume are serialized.
type Manager struct {
	cfg      Config
	backend  Backend
	warning  string
	backends map[Backend]backend
	lock     *os.File

	mu    sync.Mutex
	vols  map[string]*record
	locks map[string]*nameLock
}

// record is a volume's volume.json.
type record struct {
	Name      string  `json:"name"`
	Backend   Backend `json:"backend"`
	SizeBytes int64   `json:"sizeBytes"`
	// ImageBytes is the size of a Loop volume's file.
	ImageBytes int64 `json:"imageBytes,omitempty"`
	// ProjectID is a Quota volume's project.
	ProjectID uint32 `json:"projectID,omitempty"`
}

func (r *record) volume() Volume {
	return Volume{Name: r.Name, Backend: r.Backend, SizeBytes: r.SizeBytes, Enforced: r.Backend != Dir}
}

// backend is what differs between the ways of enforcing a size. dir is a
// volume's directory (volumes/<name>, or its temporary name while it is
// built or deleted).
type backend interface {
	// build makes a new volume's storage in dir, sized to rec.SizeBytes,
	// filling in rec. dir is renamed into place once it returns.
	build(ctx context.Context, dir string, rec *record) error
	// data is the directory handed to containers.
	data(dir string) string
	// attach makes data(dir) usable (mounts it); it does nothing if it is.
	attach(ctx context.Context, dir string, rec *record) error
	// detach undoes attach; it does nothing if there is nothing to undo.
	detach(ctx context.Context, dir string, rec *record) error
	// expand grows an attached volume to size, online, and sets
	// rec.SizeBytes and what else changed.
	expand(ctx context.Context, dir string, rec *record, size int64) error
	stats(ctx context.Context, dir string, rec *record) (Stats, error)
	// release frees what a volume being removed holds outside dir (a
	// project quota). rec may be nil: a volume that was never complete.
	release(ctx context.Context, dir string, rec *record) error
}

// Layout under Config.Dir.
const (
	volumesDir  = "volumes"  // volumes/<name>: complete volumes
	tmpDir      = "tmp"      // volumes being built
	trashDir    = "trash"    // volumes being deleted
	retainedDir = "retained" // volumes kept by Retain: <name>-<time>
	lockFile    = ".lock"
	recordFile  = "volume.json"
)

// New opens the base directory: it takes its lock, chooses the backend,
// removes what interrupted creations and deletions left (never mistaking it
// for a volume), and mounts loop volumes that are not (after a reboot or
// `logplane down`). Calling it again after Close is harmless.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Dir == "" || !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("localvolume: Dir must be an absolute path, not %q", cfg.Dir)
	}
	cfg.Dir = filepath.Clean(cfg.Dir)
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	for _, d := range []string{"", volumesDir, tmpDir, trashDir, retainedDir} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("localvolume: %w", err)
		}
	}
	// The kernel reports loop devices' files by their real path.
	dir, err := filepath.EvalSymlinks(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("localvolume: %w", err)
	}
	cfg.Dir = dir
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("localvolume: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("localvolume: %s is in use by another manager: %w", cfg.Dir, err)
	}
	m := &Manager{cfg: cfg, lock: lock, vols: map[string]*record{}, locks: map[string]*nameLock{}}
	if err := m.start(ctx); err != nil {
		lock.Close()
		return nil, err
	}
	return m, nil
}

func (m *Manager) start(ctx context.Context) error {
	m.backends = map[Backend]backend{
		Dir:   dirBackend{},
		Loop:  &loopBackend{},
		Quota: newQuotaBackend(m.cfg.Dir),
	}
	if err := m.choose(ctx); err != nil {
		return err
	}
	// Complete volumes first, so that the project IDs they hold are known
	// before leftovers release theirs.
	entries, err := os.ReadDir(m.path(volumesDir))
	if err != nil {
		return fmt.Errorf("localvolume: %w", err)
	}
	var recs []*record
	for _, e := range entries {
		dir := m.path(volumesDir, e.Name())
		rec, err := readRecord(dir)
		if err != nil {
			// Only complete volumes are renamed in here: this is not ours.
			return fmt.Errorf("localvolume: %s is not a volume: %w", dir, err)
		}
		if rec.Name != e.Name() {
			return fmt.Errorf("localvolume: %s holds volume %q", dir, rec.Name)
		}
		if _, ok := m.backends[rec.Backend]; !ok {
			return fmt.Errorf("localvolume: %s: unknown backend %q", dir, rec.Backend)
		}
		if rec.Backend == Quota {
			m.backends[Quota].(*quotaBackend).adopt(rec.ProjectID)
		}
		m.vols[rec.Name] = rec
		recs = append(recs, rec)
	}
	// Retained volumes keep their project quota: their IDs stay taken.
	kept, err := os.ReadDir(m.path(retainedDir))
	if err != nil {
		return fmt.Errorf("localvolume: %w", err)
	}
	for _, e := range kept {
		if rec, err := readRecord(m.path(retainedDir, e.Name())); err == nil && rec.Backend == Quota {
			m.backends[Quota].(*quotaBackend).adopt(rec.ProjectID)
		}
		// Anything else there is an administrator's business.
	}
	for _, d := range []string{tmpDir, trashDir} {
		if err := m.removeLeftovers(ctx, d); err != nil {
			return err
		}
	}
	for _, rec := range recs {
		dir := m.path(volumesDir, rec.Name)
		if err := m.backends[rec.Backend].attach(ctx, dir, rec); err != nil {
			err = fmt.Errorf("localvolume: volume %q: %w", rec.Name, err)
			if m.cfg.Report == nil {
				return err
			}
			m.cfg.Report(err)
		}
	}
	return nil
}

// choose picks the backend for new volumes.
func (m *Manager) choose(ctx context.Context) error {
	probes := map[Backend]func(context.Context) error{
		Quota: m.backends[Quota].(*quotaBackend).probe,
		Loop:  func(ctx context.Context) error { return probeLoop(ctx, m.path(tmpDir)) },
		Dir:   func(context.Context) error { return nil },
	}
	if m.cfg.Backend != "" {
		probe, ok := probes[m.cfg.Backend]
		if !ok {
			return fmt.Errorf("localvolume: unknown backend %q", m.cfg.Backend)
		}
		if err := probe(ctx); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnavailable, m.cfg.Backend, err)
		}
		m.backend = m.cfg.Backend
		if m.backend == Dir {
			m.warning = "volume sizes are not enforced: backend dir was configured"
		}
		return nil
	}
	qerr := probes[Quota](ctx)
	if qerr == nil {
		m.backend = Quota
		return nil
	}
	lerr := probes[Loop](ctx)
	if lerr == nil {
		m.backend = Loop
		return nil
	}
	m.backend = Dir
	m.warning = fmt.Sprintf("volume sizes are not enforced: no project quotas (%v) and no loop-mounted files (%v)", qerr, lerr)
	return nil
}

// Backend is the backend of new volumes.
func (m *Manager) Backend() Backend { return m.backend }

// Warning says why new volumes' sizes are not enforced, or is "" if they
// are. The node agent shows it (a Warning event on the claims it provisions).
func (m *Manager) Warning() string { return m.warning }

// Close releases the base directory's lock. Volumes stay mounted: a new
// Manager (or process) picks them up.
func (m *Manager) Close() error {
	if err := m.lock.Close(); err != nil {
		return fmt.Errorf("localvolume: %w", err)
	}
	return nil
}

func (m *Manager) path(elem ...string) string {
	return filepath.Join(append([]string{m.cfg.Dir}, elem...)...)
}

// Create provisions the volume name with room for at least size bytes, with
// the Manager's backend, and makes it usable. If it exists with this size
// it is returned as it is (a retried provisioning makes nothing twice); with
// another size the error wraps ErrExists.
func (m *Manager) Create(ctx context.Context, name string, size int64) (Volume, error) {
	if err := ValidateName(name); err != nil {
		return Volume{}, err
	}
	if size <= 0 {
		return Volume{}, fmt.Errorf("%w: %d bytes", ErrInvalidSize, size)
	}
	unlock := m.lockName(name)
	defer unlock()
	if rec := m.get(name); rec != nil {
		if rec.SizeBytes != size {
			return Volume{}, fmt.Errorf("%w: %q has %d bytes, not %d", ErrExists, name, rec.SizeBytes, size)
		}
		return rec.volume(), m.backends[rec.Backend].attach(ctx, m.path(volumesDir, name), rec)
	}
	b := m.backends[m.backend]
	tmp, err := os.MkdirTemp(m.path(tmpDir), "v")
	if err != nil {
		return Volume{}, fmt.Errorf("localvolume: %w", err)
	}
	rec := &record{Name: name, Backend: m.backend, SizeBytes: size}
	step("tmp")
	if err := b.build(ctx, tmp, rec); err != nil {
		// rec says what build took (a project ID) for discard to release.
		return Volume{}, errors.Join(fmt.Errorf("localvolume: create %q: %w", name, err), m.discard(ctx, tmp, rec))
	}
	step("built")
	if err := writeRecord(tmp, rec); err != nil {
		return Volume{}, errors.Join(fmt.Errorf("localvolume: create %q: %w", name, err), m.discard(ctx, tmp, rec))
	}
	dir := m.path(volumesDir, name)
	if err := os.Rename(tmp, dir); err != nil {
		return Volume{}, errors.Join(fmt.Errorf("localvolume: create %q: %w", name, err), m.discard(ctx, tmp, rec))
	}
	if err := syncDirs(m.path(volumesDir), m.path(tmpDir)); err != nil {
		return Volume{}, fmt.Errorf("localvolume: create %q: %w", name, err)
	}
	m.mu.Lock()
	m.vols[name] = rec
	m.mu.Unlock()
	step("renamed")
	if err := b.attach(ctx, dir, rec); err != nil {
		return rec.volume(), fmt.Errorf("localvolume: create %q: %w", name, err)
	}
	return rec.volume(), nil
}

// Get returns the volume name, or an error wrapping ErrNotFound.
func (m *Manager) Get(name string) (Volume, error) {
	if err := ValidateName(name); err != nil {
		return Volume{}, err
	}
	rec := m.get(name)
	if rec == nil {
		return Volume{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return rec.volume(), nil
}

// List returns every volume, sorted by name.
func (m *Manager) List() []Volume {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Volume, 0, len(m.vols))
	for _, rec := range m.vols {
		out = append(out, rec.volume())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Path makes the volume usable (mounts it if it is not) and returns the
// host directory to bind mount into containers. It is empty and writable by
// anyone (0777) when the volume is new, as an emptyDir.
func (m *Manager) Path(ctx context.Context, name string) (string, error) {
	rec, unlock, err := m.lockVolume(name)
	if err != nil {
		return "", err
	}
	defer unlock()
	dir := m.path(volumesDir, name)
	b := m.backends[rec.Backend]
	if err := b.attach(ctx, dir, rec); err != nil {
		return "", fmt.Errorf("localvolume: volume %q: %w", name, err)
	}
	return b.data(dir), nil
}

// Expand grows the volume to size bytes, online (mounted and in use). A
// size it has already is no change; a smaller one wraps ErrInvalidSize.
func (m *Manager) Expand(ctx context.Context, name string, size int64) (Volume, error) {
	rec, unlock, err := m.lockVolume(name)
	if err != nil {
		return Volume{}, err
	}
	defer unlock()
	if size < rec.SizeBytes {
		return Volume{}, fmt.Errorf("%w: volume %q cannot shrink from %d to %d bytes", ErrInvalidSize, name, rec.SizeBytes, size)
	}
	if size == rec.SizeBytes {
		return rec.volume(), nil
	}
	dir := m.path(volumesDir, name)
	b := m.backends[rec.Backend]
	if err := b.attach(ctx, dir, rec); err != nil {
		return Volume{}, fmt.Errorf("localvolume: expand %q: %w", name, err)
	}
	grown := *rec
	if err := b.expand(ctx, dir, &grown, size); err != nil {
		return Volume{}, fmt.Errorf("localvolume: expand %q: %w", name, err)
	}
	if err := writeRecord(dir, &grown); err != nil {
		return Volume{}, fmt.Errorf("localvolume: expand %q: %w", name, err)
	}
	m.mu.Lock()
	m.vols[name] = &grown
	m.mu.Unlock()
	return grown.volume(), nil
}

// Stats reports the volume's capacity and usage.
func (m *Manager) Stats(ctx context.Context, name string) (Stats, error) {
	rec, unlock, err := m.lockVolume(name)
	if err != nil {
		return Stats{}, err
	}
	defer unlock()
	s, err := m.backends[rec.Backend].stats(ctx, m.path(volumesDir, name), rec)
	if err != nil {
		return Stats{}, fmt.Errorf("localvolume: stats of %q: %w", name, err)
	}
	return s, nil
}

// Delete removes the volume and its data (reclaimPolicy Delete): unmounted,
// its loop device released, its quota cleared, its files gone. A volume
// that does not exist is no error. A volume that a process of the host
// still uses cannot be unmounted: the error says so and nothing changes
// (containers hold their own mounts, which keep the data alive until they
// end, however).
func (m *Manager) Delete(ctx context.Context, name string) error {
	rec, unlock, err := m.lockVolume(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	dir := m.path(volumesDir, name)
	if err := m.backends[rec.Backend].detach(ctx, dir, rec); err != nil {
		return fmt.Errorf("localvolume: delete %q: %w", name, err)
	}
	step("detached")
	trash, err := os.MkdirTemp(m.path(trashDir), "v")
	if err != nil {
		return fmt.Errorf("localvolume: delete %q: %w", name, err)
	}
	gone := filepath.Join(trash, "v")
	if err := os.Rename(dir, gone); err != nil {
		return errors.Join(fmt.Errorf("localvolume: delete %q: %w", name, err), os.Remove(trash))
	}
	m.mu.Lock()
	delete(m.vols, name)
	m.mu.Unlock()
	if err := syncDirs(m.path(volumesDir), m.path(trashDir)); err != nil {
		return fmt.Errorf("localvolume: delete %q: %w", name, err)
	}
	step("trashed")
	if err := m.discard(ctx, trash, rec); err != nil {
		return fmt.Errorf("localvolume: delete %q: %w", name, err)
	}
	return nil
}

// Retain unmounts the volume and moves it aside, data kept
// (reclaimPolicy Retain, once its PersistentVolume is gone): to
// retained/<name>-<time> under the base directory, whose path it returns.
// The name is free again. A Loop volume's data is in disk.img there (mount
// it with `mount -o loop`); a Quota volume's directory keeps its project
// and limit. The Manager forgets it: an administrator removes it.
func (m *Manager) Retain(ctx context.Context, name string) (string, error) {
	rec, unlock, err := m.lockVolume(name)
	if err != nil {
		return "", err
	}
	defer unlock()
	dir := m.path(volumesDir, name)
	if err := m.backends[rec.Backend].detach(ctx, dir, rec); err != nil {
		return "", fmt.Errorf("localvolume: retain %q: %w", name, err)
	}
	kept := m.path(retainedDir, fmt.Sprintf("%s-%s", name, m.cfg.Clock.Now().UTC().Format("20060102T150405.000000000Z")))
	if err := os.Rename(dir, kept); err != nil {
		return "", fmt.Errorf("localvolume: retain %q: %w", name, err)
	}
	m.mu.Lock()
	delete(m.vols, name)
	m.mu.Unlock()
	if err := syncDirs(m.path(volumesDir), m.path(retainedDir)); err != nil {
		return "", fmt.Errorf("localvolume: retain %q: %w", name, err)
	}
	return kept, nil
}

// discard removes a temporary or trashed volume directory: whatever is
// mounted under it is unmounted first (os.RemoveAll would descend into a
// mount and delete what is there), then what it holds outside is released.
func (m *Manager) discard(ctx context.Context, dir string, rec *record) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	// A leftover's record tells its backend; without one (creation
	// interrupted before it was written) every backend looks.
	var errs []error
	if rec != nil {
		errs = append(errs, m.backends[rec.Backend].release(ctx, volumeIn(dir), rec))
	} else {
		for _, b := range []Backend{Quota, Loop, Dir} {
			errs = append(errs, m.backends[b].release(ctx, volumeIn(dir), nil))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return syncDirs(filepath.Dir(dir))
}

// volumeIn is the volume directory inside a trash entry (trash/<x>/v), or
// the entry itself (a tmp entry is the volume directory).
func volumeIn(dir string) string {
	if v := filepath.Join(dir, "v"); isDir(v) {
		return v
	}
	return dir
}

// removeLeftovers discards every entry of tmp or trash.
func (m *Manager) removeLeftovers(ctx context.Context, sub string) error {
	entries, err := os.ReadDir(m.path(sub))
	if err != nil {
		return fmt.Errorf("localvolume: %w", err)
	}
	for _, e := range entries {
		dir := m.path(sub, e.Name())
		rec, err := readRecord(volumeIn(dir))
		if err != nil {
			rec = nil // interrupted before its record was written
		}
		if err := m.discard(ctx, dir, rec); err != nil {
			return fmt.Errorf("localvolume: remove leftover %s: %w", dir, err)
		}
	}
	return nil
}

func (m *Manager) get(name string) *record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vols[name]
}

// lockVolume validates name, locks it and returns its record.
func (m *Manager) lockVolume(name string) (*record, func(), error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, err
	}
	unlock := m.lockName(name)
	rec := m.get(name)
	if rec == nil {
		unlock()
		return nil, nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return rec, unlock, nil
}

type nameLock struct {
	sync.Mutex
	users int
}

// lockName serializes the operations on one name.
func (m *Manager) lockName(name string) func() {
	m.mu.Lock()
	l := m.locks[name]
	if l == nil {
		l = &nameLock{}
		m.locks[name] = l
	}
	l.users++
	m.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		m.mu.Lock()
		if l.users--; l.users == 0 {
			delete(m.locks, name)
		}
		m.mu.Unlock()
	}
}

func readRecord(dir string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", recordFile, err)
	}
	return &rec, nil
}

// writeRecord replaces dir's record durably.
func writeRecord(dir string, rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, recordFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, recordFile)); err != nil {
		return err
	}
	return syncDirs(dir)
}

// syncDirs makes renames and creations in dirs durable.
func syncDirs(dirs ...string) error {
	for _, d := range dirs {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sync %s: %w", d, err)
		}
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// step marks a point of Create and Delete where a crash leaves a state that
// New must handle; the tests stop a process there and kill it.
func step(name string) {
	if stepHook != nil {
		stepHook(name)
	}
}

// stepHook is nil outside the package's tests.
var stepHook func(string)
