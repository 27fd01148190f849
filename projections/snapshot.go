package projections

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	snapshotv1 "github.com/logplane/logplane/proto/logplane/snapshot/v1"
)

// ErrFuture is returned for a view as of a sequence the log has not reached.
var ErrFuture = errors.New("projections: the sequence is after the last one in the log")

// maxSnapshotFrame bounds one message of a snapshot, so that a damaged length cannot make a
// reader allocate without end: an object with its envelope, with room to spare.
const maxSnapshotFrame = 64 << 20

// WriteSnapshot writes the store's state to w in the format of proto/logplane/snapshot/v1 and
// returns the sequence it is stamped with. The store goes on applying events meanwhile: the
// snapshot holds the objects as they were when WriteSnapshot took the read lock, stamped with
// the sequence applied then.
func (s *Store) WriteSnapshot(w io.Writer) (uint64, error) {
	seq, objs := s.capture()
	return seq, s.writeSnapshot(w, seq, objs)
}

// capture returns the applied sequence and every live object, at one instant.
func (s *Store) capture() (uint64, []*Object) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	objs := make([]*Object, 0, s.lenLocked())
	for _, t := range s.tables {
		for _, byName := range t.byNS {
			for _, e := range byName {
				objs = append(objs, e.obj)
			}
		}
	}
	return s.applied, objs
}

func (s *Store) writeSnapshot(w io.Writer, seq uint64, objs []*Object) error {
	zw := s2.NewWriter(w, s2.WriterConcurrency(1))
	bw := bufio.NewWriterSize(zw, 256<<10)
	head := &snapshotv1.SnapshotTaken{Sequence: seq, Time: timestamppb.Now(), Objects: uint64(len(objs)), Projection: s.name}
	if _, err := protodelim.MarshalTo(bw, head); err != nil {
		return fmt.Errorf("projections: writing snapshot: %w", err)
	}
	var msg, frame []byte
	for _, o := range objs {
		// A SnapshotObject, written by hand: the envelope encoder is several times faster than
		// the generic one.
		msg = protowire.AppendTag(msg[:0], 1, protowire.VarintType)
		msg = protowire.AppendVarint(msg, o.Seq)
		msg = protowire.AppendTag(msg, 2, protowire.BytesType)
		lenAt := len(msg)
		ev := o.Event
		if o.Stored != nil {
			ev = o.Stored // sealed, as the log holds it
		}
		msg = eventlog.AppendEvent(msg, ev)
		evLen := len(msg) - lenAt
		frame = binary.AppendUvarint(frame[:0], uint64(lenAt+protowire.SizeVarint(uint64(evLen))+evLen))
		frame = append(frame, msg[:lenAt]...)
		frame = protowire.AppendVarint(frame, uint64(evLen))
		frame = append(frame, msg[lenAt:]...)
		if _, err := bw.Write(frame); err != nil {
			return fmt.Errorf("projections: writing snapshot: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("projections: writing snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("projections: writing snapshot: %w", err)
	}
	return nil
}

func (s *Store) lenLocked() int {
	n := 0
	for _, t := range s.tables {
		n += t.count
	}
	return n
}

// ReadSnapshot loads a snapshot written by WriteSnapshot into the store, which must be empty.
// It reads r to its end, so that a reader that checks a digest there (as the log's snapshot
// store does) can report damage. On error the store is left empty.
func (s *Store) ReadSnapshot(r io.Reader) error {
	return s.readSnapshot(context.Background(), r)
}

// readSnapshot is ReadSnapshot; ctx bounds the opening of sealed objects.
func (s *Store) readSnapshot(ctx context.Context, r io.Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied != 0 || s.lenLocked() != 0 {
		return errors.New("projections: a snapshot can only be read into an empty store")
	}
	if err := s.readSnapshotLocked(ctx, r); err != nil {
		s.tables = map[schema.GroupResource]*table{}
		s.last = nil
		s.applied = 0
		return err
	}
	s.wake()
	s.deliveredTo(s.applied) // nothing to give subscribers for what a snapshot brings
	return nil
}

// decoded is a batch of snapshot objects, decoded by a worker.
type decoded struct {
	objs      []*Object
	forgotten uint64 // objects whose values were forgotten, left out
	err       error
}

func (s *Store) readSnapshotLocked(ctx context.Context, r io.Reader) error {
	// The s2 reader buffers a block and reads bytes itself: no bufio copy in between.
	br := s2.NewReader(r, s2.ReaderMaxBlockSize(4<<20))
	var head snapshotv1.SnapshotTaken
	if err := protodelim.UnmarshalFrom(br, &head); err != nil {
		return fmt.Errorf("projections: reading snapshot header: %w", err)
	}
	if head.GetProjection() != s.name {
		return fmt.Errorf("projections: the snapshot is of %q, not %q", head.GetProjection(), s.name)
	}

	// Frames are read here in order, decoded by one worker per core, and folded in here.
	const batchSize = 256
	workers := runtime.GOMAXPROCS(0)
	frames := make(chan [][]byte, workers)
	results := make(chan decoded, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range frames {
				results <- s.decodeSnapshotObjects(ctx, batch)
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(frames)
		var batch [][]byte
		for i := uint64(0); i < head.GetObjects(); i++ {
			n, err := binary.ReadUvarint(br)
			if err == nil && n > maxSnapshotFrame {
				err = fmt.Errorf("a frame of %d bytes", n)
			}
			var frame []byte
			if err == nil {
				frame = make([]byte, n)
				_, err = io.ReadFull(br, frame)
			}
			if err != nil {
				readErr <- fmt.Errorf("projections: reading snapshot object %d of %d: %w", i+1, head.GetObjects(), err)
				return
			}
			batch = append(batch, frame)
			if len(batch) == batchSize {
				frames <- batch
				batch = nil
			}
		}
		if len(batch) > 0 {
			frames <- batch
		}
		// Read to the end: the snapshot store checks the digest there, and nothing may follow.
		n, err := io.Copy(io.Discard, br)
		switch {
		case err != nil:
			readErr <- fmt.Errorf("projections: snapshot end: %w", err)
			return
		case n != 0:
			readErr <- fmt.Errorf("projections: %d bytes after the last object of the snapshot", n)
			return
		}
		readErr <- nil
	}()
	go func() {
		wg.Wait()
		close(results)
	}()

	var err error
	var n uint64
	for res := range results {
		if err != nil {
			continue // drain, so the workers end
		}
		if res.err != nil {
			err = res.err
			continue
		}
		n += res.forgotten
		for _, o := range res.objs {
			gr := schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
			t := s.tableFor(gr)
			if old := t.get(o.Key.Namespace, o.Key.Name); old != nil {
				err = fmt.Errorf("projections: snapshot holds %s twice", o.Key)
				break
			}
			s.noteKind(o, gr)
			t.put(nil, o, s.indexed)
			n++
		}
	}
	if rerr := <-readErr; err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	if n != head.GetObjects() {
		return fmt.Errorf("projections: snapshot has %d objects, its header says %d", n, head.GetObjects())
	}
	s.applied = head.GetSequence()
	return nil
}

// decodeSnapshotObjects decodes a batch of frames into Objects, without the store's lock.
func (s *Store) decodeSnapshotObjects(ctx context.Context, frames [][]byte) decoded {
	out := decoded{objs: make([]*Object, 0, len(frames))}
	var lastGR schema.GroupResource // consecutive objects are mostly of one resource
	var lastKind *kinds.Kind
	for _, f := range frames {
		seq, ev, err := decodeSnapshotObject(f)
		if err != nil {
			out.err = err
			return out
		}
		key := eventlog.KeyOf(ev)
		if key.Resource == "" || key.Name == "" || seq == 0 {
			out.err = fmt.Errorf("projections: snapshot object %s at %d is malformed", key, seq)
			return out
		}
		rec, op := s.open(ctx, eventlog.Record{Seq: seq, Event: ev})
		if rec.Err != nil {
			out.err = fmt.Errorf("projections: snapshot object %s at %d: %w", key, seq, rec.Err)
			return out
		}
		if op.forgotten {
			out.forgotten++ // cannot be live; counted so that the header's count still holds
			continue
		}
		ev = rec.Event
		o := &Object{Key: key, Seq: seq, Event: ev, Labels: ev.GetLabels(), Fields: ev.GetFields(), Stored: op.sealed}
		if gr := (schema.GroupResource{Group: key.Group, Resource: key.Resource}); gr != lastGR || lastKind == nil {
			lastGR = gr
			lastKind, _ = s.catalog.ByGroupResource(gr) // nil: unknown, kept opaque
		}
		o.Kind = lastKind
		out.objs = append(out.objs, o)
	}
	return out
}

// decodeSnapshotObject reads one SnapshotObject: by hand if it has the two fields it has today,
// with the generic decoder otherwise.
func decodeSnapshotObject(f []byte) (uint64, *eventv1.ObjectChanged, error) {
	var seq uint64
	var evBytes []byte
	fast := true
	for b := f; len(b) > 0 && fast; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			fast = false
			break
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			seq, n = protowire.ConsumeVarint(b)
		case num == 2 && typ == protowire.BytesType && evBytes == nil:
			evBytes, n = protowire.ConsumeBytes(b)
		default:
			fast = false
		}
		if n < 0 {
			fast = false
			break
		}
		b = b[n:]
	}
	if fast && evBytes != nil {
		ev, err := eventlog.UnmarshalEvent(evBytes)
		if err != nil {
			return 0, nil, fmt.Errorf("projections: decoding a snapshot object: %w", err)
		}
		return seq, ev, nil
	}
	var so snapshotv1.SnapshotObject
	if err := proto.Unmarshal(f, &so); err != nil {
		return 0, nil, fmt.Errorf("projections: decoding a snapshot object: %w", err)
	}
	return so.GetSequence(), so.GetEvent(), nil
}

// noteKind reports, once per resource, objects of a kind this binary does not know.
func (s *Store) noteKind(o *Object, gr schema.GroupResource) {
	if o.Kind == nil && !s.unknown[gr] {
		s.unknown[gr] = true
		s.log.Warn("projections: keeping objects of a resource this binary does not know as they are",
			"resource", gr.String(), "seq", o.Seq)
	}
}

// Snapshot saves the store's state now in the log's snapshot store and returns what it stored.
func (s *Store) Snapshot(ctx context.Context, l *eventlog.Log) (eventlog.SnapshotInfo, error) {
	seq, objs := s.capture()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(s.writeSnapshot(pw, seq, objs)) // nil closes it normally
	}()
	info, err := l.PutSnapshot(ctx, s.name, seq, pr)
	pr.CloseWithError(err) // ends the writer if the put failed early
	if err != nil {
		return eventlog.SnapshotInfo{}, fmt.Errorf("projections: snapshot of %s: %w", s.name, err)
	}
	return info, nil
}

// Restore loads the newest usable snapshot of the store from the log into the store, which
// must be empty, and returns it; Run then replays only the events after it. A snapshot that
// cannot be read is reported and the next older one is tried; with none, the store stays empty
// and Run replays the whole log. Restore returns an error only if the log cannot be read.
func (s *Store) Restore(ctx context.Context, l *eventlog.Log) (eventlog.SnapshotInfo, error) {
	return s.restore(ctx, l, 0)
}

// restore loads the newest usable snapshot stamped at or before atMost (0: any).
func (s *Store) restore(ctx context.Context, l *eventlog.Log, atMost uint64) (eventlog.SnapshotInfo, error) {
	snaps, err := l.Snapshots(ctx, s.name)
	if err != nil {
		return eventlog.SnapshotInfo{}, fmt.Errorf("projections: restore %s: %w", s.name, err)
	}
	first, last, err := l.Bounds(ctx)
	if err != nil {
		return eventlog.SnapshotInfo{}, fmt.Errorf("projections: restore %s: %w", s.name, err)
	}
	for _, info := range snaps {
		switch {
		case atMost > 0 && info.Seq > atMost:
			continue
		case info.Seq > last:
			s.log.Warn("projections: ignoring a snapshot newer than the log", "projection", s.name, "seq", info.Seq, "last", last)
			continue
		case info.Seq+1 < first:
			// The events after it are gone; an older snapshot is no better.
			return eventlog.SnapshotInfo{}, fmt.Errorf("%w: the newest usable snapshot of %s is at %d, the log starts at %d",
				eventlog.ErrGone, s.name, info.Seq, first)
		}
		start := time.Now()
		r, err := l.OpenSnapshot(ctx, info)
		if err == nil {
			err = s.readSnapshot(ctx, r)
			r.Close()
		}
		if err != nil {
			if ctx.Err() != nil {
				return eventlog.SnapshotInfo{}, fmt.Errorf("projections: restore %s: %w", s.name, ctx.Err())
			}
			s.log.Error("projections: skipping a snapshot that cannot be read", "projection", s.name, "seq", info.Seq, "err", err)
			continue
		}
		s.log.Info("projections: restored a snapshot", "projection", s.name, "seq", info.Seq,
			"objects", s.Len(), "bytes", info.Size, "took", time.Since(start))
		return info, nil
	}
	return eventlog.SnapshotInfo{}, nil
}

// SnapshotPolicy says when RunSnapshots saves a snapshot.
type SnapshotPolicy struct {
	// Every is how often to consider one. Default 5 minutes.
	Every time.Duration
	// MinEvents is how many events must have been applied since the last snapshot. Default
	// 10,000.
	MinEvents uint64
}

// RunSnapshots saves a snapshot of the store by policy until ctx ends, then returns ctx.Err().
// A failed snapshot is logged and tried again at the next tick: snapshots only make restarts
// faster.
func (s *Store) RunSnapshots(ctx context.Context, l *eventlog.Log, p SnapshotPolicy) error {
	if p.Every <= 0 {
		p.Every = 5 * time.Minute
	}
	if p.MinEvents == 0 {
		p.MinEvents = 10_000
	}
	var last uint64
	if snaps, err := l.Snapshots(ctx, s.name); err == nil && len(snaps) > 0 {
		last = snaps[0].Seq
	}
	tick := time.NewTicker(p.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if s.Applied() < last+p.MinEvents {
			continue
		}
		info, err := s.Snapshot(ctx, l)
		if err != nil {
			s.log.Error("projections: snapshot failed", "projection", s.name, "err", err)
			continue
		}
		last = info.Seq
	}
}

// At builds a store of every object as it was when the log's sequence was seq (time travel):
// from the newest snapshot stamped at or before seq, plus the events after it up to seq; or from
// the start of the log if there is none. The store is detached: it does not follow the log.
// If seq is after the end of the log, At returns ErrFuture; if what it needs of the log is no
// longer kept, eventlog.ErrGone.
func At(ctx context.Context, l *eventlog.Log, catalog *kinds.Catalog, seq uint64, opts ...Option) (*Store, error) {
	return at(ctx, l, catalog, seq, opts...)
}

// At builds a store of every object as it was at seq (see At), with this store's catalog and
// opener.
func (s *Store) At(ctx context.Context, l *eventlog.Log, seq uint64, opts ...Option) (*Store, error) {
	return at(ctx, l, s.catalog, seq, append([]Option{WithOpener(s.opener)}, opts...)...)
}

func at(ctx context.Context, l *eventlog.Log, catalog *kinds.Catalog, seq uint64, opts ...Option) (*Store, error) {
	_, last, err := l.Bounds(ctx)
	if err != nil {
		return nil, fmt.Errorf("projections: as of %d: %w", seq, err)
	}
	if seq > last {
		return nil, fmt.Errorf("%w: %d (last %d)", ErrFuture, seq, last)
	}
	s := New(catalog, nil, opts...)
	if _, err := s.restore(ctx, l, seq); err != nil {
		return nil, err
	}
	if err := s.checkStart(ctx, l); err != nil {
		return nil, err
	}
	if err := l.Replay(ctx, eventlog.Filter{}, s.Applied(), seq, func(r eventlog.Record) error {
		s.ApplyRecord(ctx, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("projections: as of %d: %w", seq, err)
	}
	s.mu.Lock()
	s.applied = max(s.applied, seq)
	applied := s.applied
	s.mu.Unlock()
	s.deliveredTo(applied)
	return s, nil
}

// ScanSnapshot reads a snapshot of the projection name from r with ReadSnapshot's checks (its
// header, frame sizes, well-formed objects, their count, nothing after the last), but keeps no
// store: it calls fn with each object in the snapshot's order, and returns the sequence the
// snapshot is stamped with. It does not check that a key appears once (ReadSnapshot does):
// that is fn's to do. For a reader that compares a snapshot with something else (logcheck),
// without a store's memory and indexes.
func ScanSnapshot(r io.Reader, name string, fn func(*Object) error) (uint64, error) {
	br := s2.NewReader(r, s2.ReaderMaxBlockSize(4<<20))
	var head snapshotv1.SnapshotTaken
	if err := protodelim.UnmarshalFrom(br, &head); err != nil {
		return 0, fmt.Errorf("projections: reading snapshot header: %w", err)
	}
	if head.GetProjection() != name {
		return 0, fmt.Errorf("projections: the snapshot is of %q, not %q", head.GetProjection(), name)
	}
	for i := uint64(0); i < head.GetObjects(); i++ {
		n, err := binary.ReadUvarint(br)
		if err == nil && n > maxSnapshotFrame {
			err = fmt.Errorf("a frame of %d bytes", n)
		}
		var frame []byte
		if err == nil {
			frame = make([]byte, n)
			_, err = io.ReadFull(br, frame)
		}
		if err != nil {
			return 0, fmt.Errorf("projections: reading snapshot object %d of %d: %w", i+1, head.GetObjects(), err)
		}
		seq, ev, err := decodeSnapshotObject(frame)
		if err != nil {
			return 0, err
		}
		key := eventlog.KeyOf(ev)
		if key.Resource == "" || key.Name == "" || seq == 0 {
			return 0, fmt.Errorf("projections: snapshot object %s at %d is malformed", key, seq)
		}
		if err := fn(&Object{Key: key, Seq: seq, Event: ev, Labels: ev.GetLabels(), Fields: ev.GetFields()}); err != nil {
			return 0, err
		}
	}
	// Read to the end: the snapshot store checks the digest there, and nothing may follow.
	switch n, err := io.Copy(io.Discard, br); {
	case err != nil:
		return 0, fmt.Errorf("projections: snapshot end: %w", err)
	case n != 0:
		return 0, fmt.Errorf("projections: %d bytes after the last object of the snapshot", n)
	}
	return head.GetSequence(), nil
}
