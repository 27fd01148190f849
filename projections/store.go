// Package projections folds the object log into in-memory read models: every live object by
// key, listed by resource and namespace, matched by label and field selectors through indexes.
// A Store knows the last sequence it applied, so a reader can wait until it has seen a given
// write. Stores are saved as sequence-stamped snapshots in the log's snapshot store, so that a
// restart loads the latest snapshot and replays only the tail, and a Store can be built "as of"
// any older sequence (time travel).
//
// projections imports eventlog (to follow the log and keep snapshots) and kinds (to decode
// objects); it never appends to the log.
package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// Object is one live object: the event that made its current revision, with what indexes need.
// The Store keeps the object encoded, as the event carries it (see docs/logspine.md for the
// measurement behind that choice), and decodes it on demand. It is immutable; a new revision is
// a new Object.
type Object struct {
	Key    eventlog.Key
	Kind   *kinds.Kind // nil for a resource this binary does not know: kept opaque
	Seq    uint64      // the resourceVersion
	Event  *eventv1.ObjectChanged
	Labels labels.Set
	Fields fields.Set
	// Stored is the event as the log holds it when that is not Event: for a sealed object
	// (a Secret), Event carries it opened and Stored sealed. Snapshots write Stored.
	Stored *eventv1.ObjectChanged
}

// Opener opens sealed objects (envelope encryption, package encryption): it returns ev with its
// object in clear (ev itself if it is not sealed), or an error wrapping ErrForgotten if the
// object's data key was destroyed.
type Opener interface {
	Open(ctx context.Context, ev *eventv1.ObjectChanged) (*eventv1.ObjectChanged, error)
}

// Forgotten is the error an Opener wraps for an object whose values were forgotten (its data key
// destroyed after it was deleted): not damage, so the store drops it quietly.
type Forgotten interface{ Forgotten() bool }

// WithOpener makes the store open sealed objects with o as it applies them, so that its readers
// see them in clear; snapshots keep them sealed. Without it, sealed objects stay sealed and do
// not decode.
func WithOpener(o Opener) Option { return func(s *Store) { s.opener = o } }

// Decode returns a fresh copy of the object with its resourceVersion set, which the caller owns.
func (o *Object) Decode() (runtime.Object, error) {
	if o.Kind == nil {
		return nil, fmt.Errorf("projections: %s is of a kind this binary does not know", o.Key)
	}
	obj, err := o.Kind.Decode(o.Event.GetEncoding(), o.Event.GetObject())
	if err != nil {
		return nil, fmt.Errorf("projections: %s at %d: %w", o.Key, o.Seq, err)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("projections: %s: %w", o.Key, err)
	}
	m.SetResourceVersion(fmt.Sprint(o.Seq))
	return obj, nil
}

// Change is one applied event, given to subscribers: Old is the revision it replaced (nil if
// the object was added), New the revision it made (nil if it was deleted).
type Change struct {
	Seq      uint64
	Type     eventv1.ChangeType
	Old, New *Object
}

// DefaultIndexedFields are the selectable fields a Store indexes unless told otherwise: those
// that controllers and node agents select on, whose values split objects into small groups.
// metadata.name and metadata.namespace need no index: the store is keyed by them.
var DefaultIndexedFields = []string{
	"spec.nodeName",
	"status.phase",
	"involvedObject.uid",
	"involvedObject.name",
	"type",
}

// Option changes how New builds a Store.
type Option func(*Store)

// WithIndexedFields makes the store index these selectable fields instead of
// DefaultIndexedFields. Every label is always indexed.
func WithIndexedFields(names ...string) Option {
	return func(s *Store) {
		s.indexed = map[string]bool{}
		for _, n := range names {
			s.indexed[n] = true
		}
	}
}

// WithName names the store's snapshots in the log's snapshot store. Default "objects".
func WithName(name string) Option { return func(s *Store) { s.name = name } }

// Store is the read model of every live object. It is safe for concurrent use; Apply must be
// called in sequence order, which Run does.
type Store struct {
	catalog *kinds.Catalog
	log     *slog.Logger
	name    string
	indexed map[string]bool // field names with an index
	opener  Opener          // nil: objects are kept as the log holds them

	mu      sync.RWMutex
	applied uint64
	tables  map[schema.GroupResource]*table
	last    *table // the table of the last event applied, and its resource: see tableFor
	lastGR  schema.GroupResource
	advance chan struct{} // closed and replaced when applied grows and someone waits on it
	waited  atomic.Bool   // someone took advance to wait on it
	subs    map[int]func(Change)
	nextSub int
	// delivered is the sequence up to which every subscriber has been given every change (see
	// WaitDelivered); delivery has its own lock and channel so that Apply's path stays as it was.
	delivered      atomic.Uint64
	deliverMu      sync.Mutex
	deliverAdvance chan struct{} // closed and replaced when delivered grows and someone waits
	deliverWaited  atomic.Bool
	unknown        map[schema.GroupResource]bool // resources reported as unknown, to say it once
	skipped        uint64                        // events that could not be read
}

// New returns an empty store that decodes the kinds of catalog.
func New(catalog *kinds.Catalog, log *slog.Logger, opts ...Option) *Store {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{
		catalog: catalog,
		log:     log,
		name:    "objects",
		tables:  map[schema.GroupResource]*table{},
		advance: make(chan struct{}),
		subs:    map[int]func(Change){},
		unknown: map[schema.GroupResource]bool{},

		deliverAdvance: make(chan struct{}),
	}
	WithIndexedFields(DefaultIndexedFields...)(s)
	for _, o := range opts {
		o(s)
	}
	return s
}

// Catalog returns the catalog of the kinds the store decodes.
func (s *Store) Catalog() *kinds.Catalog { return s.catalog }

// Applied returns the sequence of the last event folded into the store.
func (s *Store) Applied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Skipped returns how many events the store could not read and skipped (each is logged with its
// sequence).
func (s *Store) Skipped() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.skipped
}

// WaitFor returns once the store has applied sequence seq, or when ctx ends.
func (s *Store) WaitFor(ctx context.Context, seq uint64) error {
	for {
		s.mu.RLock()
		applied, ch := s.applied, s.advance
		s.waited.Store(true) // under the read lock, so Apply, under the write lock, sees it
		s.mu.RUnlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("projections: waiting for sequence %d (applied %d): %w", seq, applied, ctx.Err())
		}
	}
}

// Run follows the log from the last applied sequence, applying every event, until ctx ends or
// the log fails. To start from the latest snapshot rather than from the beginning, call Restore
// first. If the events after the applied sequence are no longer all in the log (retention
// dropped them), Run returns eventlog.ErrGone rather than build an incomplete store.
func (s *Store) Run(ctx context.Context, l *eventlog.Log) error {
	if err := s.checkStart(ctx, l); err != nil {
		return err
	}
	return l.Follow(ctx, eventlog.Filter{}, s.Applied(), func(r eventlog.Record) error {
		s.ApplyRecord(ctx, r)
		return nil
	})
}

// checkStart returns eventlog.ErrGone if an empty store cannot be built from the log because
// retention dropped its first events. (From a later sequence, the log itself checks.)
func (s *Store) checkStart(ctx context.Context, l *eventlog.Log) error {
	if s.Applied() != 0 {
		return nil
	}
	first, _, err := l.Bounds(ctx)
	if err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	if first > 1 {
		return fmt.Errorf("%w: the log starts at %d and %s has no snapshot to start from", eventlog.ErrGone, first, s.name)
	}
	return nil
}

// opened says what the store's opener made of a record: the sealed event the record carried
// (nil if it was not sealed), and whether its values were forgotten.
type opened struct {
	sealed    *eventv1.ObjectChanged
	forgotten bool
}

// open opens r's object with the store's opener. A record that cannot be opened comes back with
// Err set, except one whose values were forgotten, which applyOpened then folds in as gone.
func (s *Store) open(ctx context.Context, r eventlog.Record) (eventlog.Record, opened) {
	if s.opener == nil || r.Err != nil || r.Event.GetEncoding() != eventv1.Encoding_ENCODING_SEALED {
		return r, opened{}
	}
	ev, err := s.opener.Open(ctx, r.Event)
	if err != nil {
		var f Forgotten
		if errors.As(err, &f) && f.Forgotten() {
			return r, opened{sealed: r.Event, forgotten: true}
		}
		r.Err = fmt.Errorf("projections: %w", err)
		return r, opened{}
	}
	sealed := r.Event
	r.Event = ev
	return r, opened{sealed: sealed}
}

// ApplyRecord opens r's object if it is sealed (WithOpener) and folds r into the store: Apply
// for records read from the log.
func (s *Store) ApplyRecord(ctx context.Context, r eventlog.Record) {
	r, o := s.open(ctx, r)
	s.apply(r, o)
}

// Apply folds one record into the store. Records at or below the applied sequence are ignored,
// so replaying twice is harmless. A record that could not be decoded is reported with its
// sequence and skipped.
func (s *Store) Apply(r eventlog.Record) { s.apply(r, opened{}) }

func (s *Store) apply(r eventlog.Record, op opened) {
	s.mu.Lock()
	if r.Seq <= s.applied {
		s.mu.Unlock()
		return
	}
	ch := s.applyLocked(r, op, len(s.subs) > 0)
	s.applied = r.Seq
	s.wake()
	subs := s.subscribersLocked(ch)
	s.mu.Unlock()
	for _, fn := range subs {
		fn(*ch)
	}
	s.deliveredTo(r.Seq)
}

// deliveredTo records that the subscribers have been given every change up to seq, and wakes
// WaitDelivered callers.
func (s *Store) deliveredTo(seq uint64) {
	s.delivered.Store(seq)
	if s.deliverWaited.Load() {
		s.deliverMu.Lock()
		if s.deliverWaited.Swap(false) {
			close(s.deliverAdvance)
			s.deliverAdvance = make(chan struct{})
		}
		s.deliverMu.Unlock()
	}
}

// WaitDelivered returns once every subscriber has been called, and has returned, with every
// change up to sequence seq (a reconciler engine has mapped them, say), or when ctx ends. An
// event the store skipped counts as delivered.
func (s *Store) WaitDelivered(ctx context.Context, seq uint64) error {
	for {
		s.deliverMu.Lock()
		ch := s.deliverAdvance
		s.deliverWaited.Store(true)
		s.deliverMu.Unlock()
		if s.delivered.Load() >= seq {
			return nil
		}
		s.mu.RLock()
		applied := s.applied
		s.mu.RUnlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("projections: waiting for the changes up to %d to be delivered (delivered %d, applied %d): %w",
				seq, s.delivered.Load(), applied, ctx.Err())
		}
	}
}

// wake releases WaitFor callers after applied grew. Called with the write lock held.
func (s *Store) wake() {
	if s.waited.Swap(false) {
		close(s.advance)
		s.advance = make(chan struct{})
	}
}

// applyLocked folds r in and, if changes is set, returns the Change it made.
func (s *Store) applyLocked(r eventlog.Record, op opened, changes bool) *Change {
	if r.Err != nil {
		s.skipped++
		s.log.Error("projections: skipping an event that cannot be read", "seq", r.Seq, "subject", r.Subject, "err", r.Err)
		// The object it was about keeps its last readable state, at this sequence: a write
		// then expects this revision and supersedes the unreadable one, which never blocks
		// writes to its object (as eventlog's Get, see Record.Stale).
		if key, ok := r.Key(); ok {
			t := s.tableFor(schema.GroupResource{Group: key.Group, Resource: key.Resource})
			if old := t.get(key.Namespace, key.Name); old != nil && old.Seq < r.Seq {
				moved := *old
				moved.Seq = r.Seq
				t.put(old, &moved, s.indexed)
			}
		}
		return nil
	}
	ev := r.Event
	key := eventlog.KeyOf(ev)
	gr := schema.GroupResource{Group: key.Group, Resource: key.Resource}
	t := s.tableFor(gr)
	old := t.get(key.Namespace, key.Name)
	var obj *Object
	typ := ev.GetType()
	if op.forgotten && typ != eventv1.ChangeType_CHANGE_TYPE_DELETED {
		// A revision of an object deleted since, whose values were forgotten: there is nothing
		// to serve of it (a replay passes it on the way to its tombstone).
		typ = eventv1.ChangeType_CHANGE_TYPE_DELETED
		if old == nil {
			return nil
		}
	}
	if typ == eventv1.ChangeType_CHANGE_TYPE_DELETED {
		if old != nil {
			t.remove(old, s.indexed)
		}
	} else {
		obj = &Object{Key: key, Kind: t.kind, Seq: r.Seq, Event: ev, Labels: ev.GetLabels(), Fields: ev.GetFields(), Stored: op.sealed}
		s.noteKind(obj, gr)
		t.put(old, obj, s.indexed)
	}
	if !changes {
		return nil
	}
	return &Change{Seq: r.Seq, Type: typ, Old: old, New: obj}
}

// tableFor returns the table of resource gr, made if needed. Consecutive events are mostly of
// one resource: the last table is kept at hand, which spares the two lookups keyed by a
// resource (the table, the kind) that were a tenth of what applying an event cost. Called with
// the lock held.
func (s *Store) tableFor(gr schema.GroupResource) *table {
	if s.last != nil && s.lastGR == gr {
		return s.last
	}
	t := s.tables[gr]
	if t == nil {
		t = newTable()
		t.kind, _ = s.catalog.ByGroupResource(gr) // nil: unknown, kept opaque
		s.tables[gr] = t
	}
	s.last, s.lastGR = t, gr
	return t
}

// subscribersLocked returns the subscribers to call with ch (none if ch is nil), read under
// s.mu so that they are called after it is released.
func (s *Store) subscribersLocked(ch *Change) []func(Change) {
	if ch == nil || len(s.subs) == 0 {
		return nil
	}
	subs := make([]func(Change), 0, len(s.subs))
	for _, fn := range s.subs {
		subs = append(subs, fn)
	}
	return subs
}

// Subscribe calls fn with every change applied after it returns, in order, outside the store's
// lock; fn must not block for long. Cancel stops the calls.
func (s *Store) Subscribe(fn func(Change)) (cancel func()) {
	s.mu.Lock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
}

// Get returns the live object with key, if there is one.
func (s *Store) Get(key eventlog.Key) (*Object, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tables[schema.GroupResource{Group: key.Group, Resource: key.Resource}]
	if t == nil {
		return nil, false
	}
	o := t.get(key.Namespace, key.Name)
	return o, o != nil
}

// Len returns how many live objects the store holds.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, t := range s.tables {
		n += t.count
	}
	return n
}

// Query selects objects of one resource.
type Query struct {
	Resource  schema.GroupResource
	Namespace string          // empty: all namespaces
	Labels    labels.Selector // nil: everything
	Fields    fields.Selector // nil: everything
}

// List returns the objects matching q, sorted by namespace and name, and the sequence the store
// had applied when it read them. Selectors use the store's indexes when they can: an equality
// or set-membership requirement on a label, or an equality on an indexed field, metadata.name or
// metadata.namespace, narrows the objects looked at to those the requirement allows; the other
// requirements are then checked on those alone.
func (s *Store) List(q Query) ([]*Object, uint64) {
	s.mu.RLock()
	var out []*Object
	if t := s.tables[q.Resource]; t != nil {
		out = t.list(q, s.indexed)
	}
	applied := s.applied
	s.mu.RUnlock()
	sortObjects(out)
	return out, applied
}

// Resources returns the resources of which the store holds at least one live object.
func (s *Store) Resources() []schema.GroupResource {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]schema.GroupResource, 0, len(s.tables))
	for gr, t := range s.tables {
		if t.count > 0 {
			out = append(out, gr)
		}
	}
	slices.SortFunc(out, func(a, b schema.GroupResource) int { return cmp.Compare(a.String(), b.String()) })
	return out
}

// RunFeed builds the store from a node's feed (eventlog.Log.FollowFeed) rather than from the
// log, until ctx ends or the feed fails: the objects the node may read, each at its revision in
// the log, with Applied the log's position the feed reflects. Objects that leave the feed are
// deleted from the store. The store must be empty: a feed is always read from its start (it
// holds current state only, so that is small).
func (s *Store) RunFeed(ctx context.Context, l *eventlog.Log) error {
	return l.FollowFeed(ctx, func(r eventlog.Record) error {
		if r.Event != nil {
			r, o := s.open(ctx, r)
			s.applyFeed(r, o)
			return nil
		}
		s.applyFeed(r, opened{})
		return nil
	})
}

// applyFeed folds one record of a node's feed in: Seq is the object's revision, Pos the log's
// position. A revision older than the one held is a repeat (the control plane resynced) and
// changes nothing.
func (s *Store) applyFeed(r eventlog.Record, op opened) {
	s.mu.Lock()
	var ch *Change
	if r.Event != nil || r.Err != nil {
		stale := false
		if r.Err == nil {
			key := eventlog.KeyOf(r.Event)
			old := s.tableFor(schema.GroupResource{Group: key.Group, Resource: key.Resource}).get(key.Namespace, key.Name)
			if r.Event.GetType() == eventv1.ChangeType_CHANGE_TYPE_DELETED {
				stale = old == nil // a removal of what the store never had
			} else {
				stale = old != nil && old.Seq >= r.Seq
			}
		}
		if !stale {
			ch = s.applyLocked(r, op, len(s.subs) > 0)
		}
	}
	if r.Pos > s.applied {
		s.applied = r.Pos
	}
	applied := s.applied
	s.wake()
	subs := s.subscribersLocked(ch)
	s.mu.Unlock()
	for _, fn := range subs {
		fn(*ch)
	}
	s.deliveredTo(applied)
}
