package eventlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Projection snapshots live in a JetStream object store beside the object stream (bucket
// <Stream>_SNAPSHOTS), one object per snapshot named <projection>/<sequence>. The log only stores
// and finds them; what is in one is the projection's business. A snapshot is a cache: losing
// one costs a longer replay, never data, so readers fall back to an older one (or to the start of
// the log) when one cannot be read.

// SnapshotInfo describes one stored snapshot.
type SnapshotInfo struct {
	Projection string    // whose snapshot it is
	Seq        uint64    // the last sequence folded into it
	Size       uint64    // bytes
	Time       time.Time // when it was stored
	object     string
}

const snapshotSeqMeta = "logplane-sequence"

func (l *Log) snapshotBucket() string { return l.cfg.Stream + "_SNAPSHOTS" }

// snapshots returns the snapshot object store, creating it the first time.
func (l *Log) snapshots(ctx context.Context) (jetstream.ObjectStore, error) {
	l.snapMu.Lock()
	defer l.snapMu.Unlock()
	if l.snapStore != nil {
		return l.snapStore, nil
	}
	if l.srv == nil {
		// On another process's server, look the bucket up: changing it is the embedding
		// process's (or an admin's) right. A log with no snapshot yet has none to read.
		os, err := l.js.ObjectStore(ctx, l.snapshotBucket())
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			if os, err = l.createSnapshots(ctx); err != nil {
				return nil, fmt.Errorf("%w: no snapshot store yet, and this credential may not make it: %v", errNoSnapshotStore, err)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("eventlog: snapshot store: %w", err)
		}
		l.snapStore = os
		return os, nil
	}
	os, err := l.createSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	l.snapStore = os
	return os, nil
}

// errNoSnapshotStore: the snapshot bucket does not exist and could not be made.
var errNoSnapshotStore = errors.New("eventlog: no snapshot store")

func (l *Log) createSnapshots(ctx context.Context) (jetstream.ObjectStore, error) {
	os, err := l.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      l.snapshotBucket(),
		Description: "logplane projection snapshots",
		Storage:     jetstream.FileStorage,
		Replicas:    l.cfg.Replicas,
		// Snapshots are compressed by the projections that write them.
		Compression: false,
	})
	if err != nil {
		return nil, fmt.Errorf("eventlog: snapshot store: %w", err)
	}
	return os, nil
}

func validProjection(name string) error {
	if name == "" || strings.ContainsAny(name, "/.*> \t") {
		return fmt.Errorf("%w: projection name %q", ErrInvalid, name)
	}
	return nil
}

// PutSnapshot stores the bytes read from r as the snapshot of projection taken after sequence
// seq was applied, then deletes the oldest snapshots of that projection beyond
// Config.SnapshotsKept. With GroupCommit the snapshot is on stable storage when PutSnapshot
// returns.
func (l *Log) PutSnapshot(ctx context.Context, projection string, seq uint64, r io.Reader) (SnapshotInfo, error) {
	if err := validProjection(projection); err != nil {
		return SnapshotInfo{}, err
	}
	store, err := l.snapshots(ctx)
	if err != nil {
		return SnapshotInfo{}, err
	}
	name := fmt.Sprintf("%s/%020d", projection, seq)
	if _, ok := ctx.Deadline(); !ok {
		// The object store would otherwise allow five seconds for the whole snapshot.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
	}
	info, err := store.Put(ctx, jetstream.ObjectMeta{
		Name:     name,
		Metadata: map[string]string{snapshotSeqMeta: strconv.FormatUint(seq, 10)},
		Opts:     &jetstream.ObjectMetaOptions{ChunkSize: 1 << 20},
	}, r)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("eventlog: storing snapshot %s: %w", name, err)
	}
	if l.committer != nil {
		if err := syncFiles(l.snapshotDir()); err != nil {
			return SnapshotInfo{}, err
		}
	}
	all, err := l.Snapshots(ctx, projection)
	if err != nil {
		return SnapshotInfo{}, err
	}
	for len(all) > l.cfg.SnapshotsKept {
		oldest := all[len(all)-1]
		all = all[:len(all)-1]
		if oldest.object == name {
			continue
		}
		if err := store.Delete(ctx, oldest.object); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return SnapshotInfo{}, fmt.Errorf("eventlog: deleting old snapshot %s: %w", oldest.object, err)
		}
	}
	return snapshotInfo(projection, info), nil
}

func snapshotInfo(projection string, info *jetstream.ObjectInfo) SnapshotInfo {
	seq, _ := strconv.ParseUint(info.Metadata[snapshotSeqMeta], 10, 64) // checked by Snapshots
	return SnapshotInfo{Projection: projection, Seq: seq, Size: info.Size, Time: info.ModTime, object: info.Name}
}

// Snapshots lists the stored snapshots of projection, newest (highest sequence) first.
func (l *Log) Snapshots(ctx context.Context, projection string) ([]SnapshotInfo, error) {
	if err := validProjection(projection); err != nil {
		return nil, err
	}
	store, err := l.snapshots(ctx)
	if errors.Is(err, errNoSnapshotStore) {
		return nil, nil // nothing was ever snapshotted
	}
	if err != nil {
		return nil, err
	}
	infos, err := store.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: listing snapshots: %w", err)
	}
	var out []SnapshotInfo
	for _, info := range infos {
		p, _, ok := strings.Cut(info.Name, "/")
		if !ok || p != projection {
			continue
		}
		if _, err := strconv.ParseUint(info.Metadata[snapshotSeqMeta], 10, 64); err != nil {
			l.cfg.Logger.Warn("eventlog: ignoring a snapshot with no sequence", "object", info.Name)
			continue
		}
		out = append(out, snapshotInfo(projection, info))
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int { return -cmpUint(a.Seq, b.Seq) })
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// OpenSnapshot returns a reader of the snapshot info names. Reading it to the end checks its
// digest: a snapshot damaged in storage gives an error from Read, not wrong bytes. The caller
// closes the reader. Reading must end within ctx's deadline; with none, a generous one is set
// from the snapshot's size (the object store would otherwise allow five seconds).
func (l *Log) OpenSnapshot(ctx context.Context, info SnapshotInfo) (io.ReadCloser, error) {
	store, err := l.snapshots(ctx)
	if err != nil {
		return nil, err
	}
	readCtx, cancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		// At least a minute, and a second for every 10 MB.
		readCtx, cancel = context.WithTimeout(ctx, time.Minute+time.Duration(info.Size/(10<<20))*time.Second)
	}
	r, err := store.Get(readCtx, info.object)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		cancel()
		return nil, fmt.Errorf("%w: snapshot %s", ErrNotFound, info.object)
	case err != nil:
		cancel()
		return nil, fmt.Errorf("eventlog: opening snapshot %s: %w", info.object, err)
	}
	return &snapshotReader{ReadCloser: r, cancel: cancel}, nil
}

type snapshotReader struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (r *snapshotReader) Close() error {
	defer r.cancel()
	return r.ReadCloser.Close()
}

// snapshotDir is where the embedded server keeps the snapshot bucket's message blocks.
func (l *Log) snapshotDir() string {
	return streamMsgsDir(&l.cfg, "OBJ_"+l.snapshotBucket())
}

// syncFiles fsyncs every file in dir, and dir itself.
func syncFiles(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("eventlog: syncing %s: %w", dir, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // the server compacted it away meanwhile
		}
		if err != nil {
			return fmt.Errorf("eventlog: syncing %s: %w", dir, err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("eventlog: fsync %s: %w", f.Name(), err)
		}
	}
	return syncDir(dir)
}
