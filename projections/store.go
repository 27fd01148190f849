// Package projections folds the object log into in-memory read models: every live object by
// key, listed by resource and namespace, matched by label and field selectors. A Store knows the
// last sequence it applied, so a reader can wait until it has seen a given write.
//
// projections imports eventlog (to follow the log) and kinds (to decode objects); it never
// appends to the log.
package projections

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

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
// It is immutable; a new revision is a new Object.
type Object struct {
	Key    eventlog.Key
	Kind   *kinds.Kind // nil for a resource this binary does not know
	Seq    uint64      // the resourceVersion
	Event  *eventv1.ObjectChanged
	Labels labels.Set
	Fields fields.Set
}

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

// Store is the read model of every live object. It is safe for concurrent use; Apply must be
// called in sequence order, which Run does.
type Store struct {
	catalog *kinds.Catalog
	log     *slog.Logger

	mu      sync.RWMutex
	applied uint64
	objects map[schema.GroupResource]map[string]map[string]*Object // resource → namespace → name
	advance chan struct{}                                          // closed and replaced when applied grows
	subs    map[int]func(Change)
	nextSub int
}

// New returns an empty store that decodes the kinds of catalog.
func New(catalog *kinds.Catalog, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{
		catalog: catalog,
		log:     log,
		objects: map[schema.GroupResource]map[string]map[string]*Object{},
		advance: make(chan struct{}),
		subs:    map[int]func(Change){},
	}
}

// Applied returns the sequence of the last event folded into the store.
func (s *Store) Applied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// WaitFor returns once the store has applied sequence seq, or when ctx ends.
func (s *Store) WaitFor(ctx context.Context, seq uint64) error {
	for {
		s.mu.RLock()
		applied, ch := s.applied, s.advance
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
// the log fails.
func (s *Store) Run(ctx context.Context, l *eventlog.Log) error {
	return l.Follow(ctx, eventlog.Filter{}, s.Applied(), func(r eventlog.Record) error {
		s.Apply(r)
		return nil
	})
}

// Apply folds one record into the store. Records at or below the applied sequence are ignored,
// so replaying twice is harmless. A record that could not be decoded is reported and skipped.
func (s *Store) Apply(r eventlog.Record) {
	s.mu.Lock()
	if r.Seq <= s.applied {
		s.mu.Unlock()
		return
	}
	ch := s.applyLocked(r)
	s.applied = r.Seq
	close(s.advance)
	s.advance = make(chan struct{})
	subs := make([]func(Change), 0, len(s.subs))
	for _, fn := range s.subs {
		subs = append(subs, fn)
	}
	s.mu.Unlock()
	if ch != nil {
		for _, fn := range subs {
			fn(*ch)
		}
	}
}

func (s *Store) applyLocked(r eventlog.Record) *Change {
	if r.Err != nil {
		s.log.Error("projections: skipping an event that cannot be read", "seq", r.Seq, "subject", r.Subject, "err", r.Err)
		return nil
	}
	ev := r.Event
	key := eventlog.KeyOf(ev)
	gr := schema.GroupResource{Group: key.Group, Resource: key.Resource}
	byNS := s.objects[gr]
	if byNS == nil {
		byNS = map[string]map[string]*Object{}
		s.objects[gr] = byNS
	}
	byName := byNS[key.Namespace]
	old := byName[key.Name]
	ch := &Change{Seq: r.Seq, Type: ev.GetType(), Old: old}
	if ev.GetType() == eventv1.ChangeType_CHANGE_TYPE_DELETED {
		if byName != nil {
			delete(byName, key.Name)
			if len(byName) == 0 {
				delete(byNS, key.Namespace)
			}
		}
		return ch
	}
	obj := &Object{Key: key, Seq: r.Seq, Event: ev, Labels: labels.Set(ev.GetLabels()), Fields: fields.Set(ev.GetFields())}
	obj.Kind, _ = s.catalog.ByGroupResource(gr)
	if byName == nil {
		byName = map[string]*Object{}
		byNS[key.Namespace] = byName
	}
	byName[key.Name] = obj
	ch.New = obj
	return ch
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
	o, ok := s.objects[schema.GroupResource{Group: key.Group, Resource: key.Resource}][key.Namespace][key.Name]
	return o, ok
}

// Query selects objects of one resource.
type Query struct {
	Resource  schema.GroupResource
	Namespace string          // empty: all namespaces
	Labels    labels.Selector // nil: everything
	Fields    fields.Selector // nil: everything
}

// List returns the objects matching q, sorted by namespace and name, and the sequence the store
// had applied when it read them.
func (s *Store) List(q Query) ([]*Object, uint64) {
	s.mu.RLock()
	var out []*Object
	byNS := s.objects[q.Resource]
	match := func(byName map[string]*Object) {
		for _, o := range byName {
			if q.Labels != nil && !q.Labels.Empty() && !q.Labels.Matches(o.Labels) {
				continue
			}
			if q.Fields != nil && !q.Fields.Empty() && !q.Fields.Matches(o.Fields) {
				continue
			}
			out = append(out, o)
		}
	}
	if q.Namespace != "" {
		match(byNS[q.Namespace])
	} else {
		for _, byName := range byNS {
			match(byName)
		}
	}
	applied := s.applied
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Object) int {
		return cmp.Or(cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
	return out, applied
}
