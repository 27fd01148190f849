// Package informer keeps what reconcilers look up about objects, beside the projection they
// read, the way client-go's informers and indexers do for Kubernetes controllers: for every
// object, its ownerReferences, finalizers and deletion state, with an index from an owner's uid
// to its dependents and of the objects without a controller; and for chosen resources (pods,
// replica sets), the objects, decoded the first time a reconciler asks for a revision and shared
// after that, so that a reconcile looking at ten thousand pods decodes only those that changed,
// and a replica that owns none of their keys decodes none. Metadata is read from the encoded
// object's metadata field alone.
//
// An Index follows a projections.Store: the reconcilers' engine loads it (Load) and passes it
// every change (Observe) before it maps the change, so reconcilers see the index up to date with
// the change that queued their key. Observe is idempotent (each object keeps the sequence of the
// revision it reflects), so the same change may be passed more than once.
package informer

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// Meta is what the index keeps of every object.
type Meta struct {
	Key eventlog.Key
	// Seq is the resourceVersion of the revision this reflects.
	Seq        uint64
	UID        types.UID
	Owners     []metav1.OwnerReference
	Finalizers []string
	// Deleting: the object has a deletionTimestamp.
	Deleting bool
	// SpecSeq is the sequence of the latest revision known to have changed what the object asks
	// for (created it, changed its spec, scaled it): the cause to record for the work that the
	// object's spec makes reconcilers do. 0 if unknown (the index started after that revision).
	SpecSeq uint64
}

// Controller returns the owner reference with controller set, or nil.
func (m *Meta) Controller() *metav1.OwnerReference {
	for i := range m.Owners {
		if r := &m.Owners[i]; r.Controller != nil && *r.Controller {
			return r
		}
	}
	return nil
}

type entry struct {
	meta Meta
	// src is the projected revision of a kept resource, decoded into obj the first time someone
	// asks (most revisions of a pod are replaced before any reconcile looks at them; a replica
	// that does not own a key never decodes it).
	src     *projections.Object
	decoded sync.Once
	obj     runtime.Object // shared, read-only
}

// object decodes the entry's object once. It is nil for resources not kept, or if it cannot be
// decoded (reported once).
func (e *entry) object(log *slog.Logger) runtime.Object {
	if e.src == nil {
		return nil
	}
	e.decoded.Do(func() {
		obj, err := e.src.Decode()
		if err != nil {
			log.Error("informer: cannot decode an object", "key", e.src.Key, "seq", e.src.Seq, "err", err)
			return
		}
		e.obj = obj
	})
	return e.obj
}

// lister is what loading the index needs of the projection.
type lister interface {
	List(q projections.Query) ([]*projections.Object, uint64)
	Resources() []schema.GroupResource
}

var _ lister = (*projections.Store)(nil)

// Index is the reconcilers' cache of object metadata and decoded objects. It is safe for
// concurrent use.
type Index struct {
	keep map[schema.GroupResource]bool
	log  *slog.Logger

	mu         sync.RWMutex
	objects    map[eventlog.Key]*entry
	dependents map[types.UID]map[eventlog.Key]struct{}
	byResource map[schema.GroupResource]map[eventlog.Key]struct{}
	// orphans are the objects without a controller, by resource and namespace.
	orphans map[schema.GroupResource]map[string]map[eventlog.Key]struct{}
	// undecodable counts objects whose metadata could not be read (logged once each).
	undecodable int
	// last is the change observed last, so that every caller of Observe for it gets the same
	// before and after.
	last observed
}

type observed struct {
	seq      uint64
	old, cur *Meta
}

// New returns an empty index that keeps decoded objects of the resources keep.
func New(log *slog.Logger, keep ...schema.GroupResource) *Index {
	if log == nil {
		log = slog.Default()
	}
	ix := &Index{
		keep:       map[schema.GroupResource]bool{},
		log:        log,
		objects:    map[eventlog.Key]*entry{},
		dependents: map[types.UID]map[eventlog.Key]struct{}{},
		byResource: map[schema.GroupResource]map[eventlog.Key]struct{}{},
		orphans:    map[schema.GroupResource]map[string]map[eventlog.Key]struct{}{},
	}
	for _, gr := range keep {
		ix.keep[gr] = true
	}
	return ix
}

// Keep adds resources to those the index keeps decoded. Call it before the index is loaded.
func (ix *Index) Keep(grs ...schema.GroupResource) {
	for _, gr := range grs {
		ix.keep[gr] = true
	}
}

// Load fills the index from what the store holds. Whoever passes the store's changes to Observe
// subscribes before calling Load: a change applied meanwhile waits for the index's lock in
// Observe, and is then either newer than what Load listed or the same revision, which Observe
// skips; revisions observed before Load are left as they are.
func (ix *Index) Load(s lister) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, gr := range s.Resources() {
		objs, _ := s.List(projections.Query{Resource: gr})
		for _, o := range objs {
			if e := ix.objects[o.Key]; e != nil && e.meta.Seq >= o.Seq {
				continue
			}
			ix.putLocked(o, o.Event.GetReason())
		}
	}
}

// Observe folds one change of the projection into the index, and returns what the index held
// of the object before the change and after it (nil when the object did not exist, or was
// deleted). Every caller passing the same change gets the same answer; a change older than the
// last one observed changes nothing and returns nils.
func (ix *Index) Observe(c projections.Change) (old, cur *Meta) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if c.Seq == ix.last.seq {
		return ix.last.old, ix.last.cur
	}
	if c.Seq < ix.last.seq {
		return nil, nil
	}
	key := c.Old
	if c.New != nil {
		key = c.New
	}
	if key == nil {
		return nil, nil
	}
	prev := ix.objects[key.Key]
	if prev != nil && prev.meta.Seq >= c.Seq {
		// The initial list already saw this revision.
		return nil, nil
	}
	if prev != nil {
		m := prev.meta
		old = &m
	}
	if c.New == nil {
		if prev != nil {
			ix.removeLocked(prev)
		}
	} else if e := ix.putLocked(c.New, c.New.Event.GetReason()); e != nil {
		m := e.meta
		cur = &m
	}
	ix.last = observed{seq: c.Seq, old: old, cur: cur}
	return old, cur
}

// specReasons are the registry's reasons of revisions that change what an object asks for.
var specReasons = map[string]bool{"create": true, "spec": true, "scale": true}

func (ix *Index) putLocked(o *projections.Object, reason string) *entry {
	m, src, err := ix.read(o)
	if err != nil {
		ix.undecodable++
		ix.log.Error("informer: cannot read an object's metadata", "key", o.Key, "seq", o.Seq, "err", err)
		if old := ix.objects[o.Key]; old != nil {
			ix.removeLocked(old)
		}
		return nil
	}
	old := ix.objects[o.Key]
	if specReasons[reason] {
		m.SpecSeq = o.Seq
	} else if old != nil && old.meta.UID == m.UID {
		m.SpecSeq = old.meta.SpecSeq
	}
	if old != nil {
		ix.unindexLocked(old)
	}
	e := &entry{meta: m, src: src}
	ix.objects[o.Key] = e
	for _, r := range m.Owners {
		deps := ix.dependents[r.UID]
		if deps == nil {
			deps = map[eventlog.Key]struct{}{}
			ix.dependents[r.UID] = deps
		}
		deps[o.Key] = struct{}{}
	}
	gr := schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
	set := ix.byResource[gr]
	if set == nil {
		set = map[eventlog.Key]struct{}{}
		ix.byResource[gr] = set
	}
	set[o.Key] = struct{}{}
	if m.Controller() == nil {
		byNS := ix.orphans[gr]
		if byNS == nil {
			byNS = map[string]map[eventlog.Key]struct{}{}
			ix.orphans[gr] = byNS
		}
		keys := byNS[o.Key.Namespace]
		if keys == nil {
			keys = map[eventlog.Key]struct{}{}
			byNS[o.Key.Namespace] = keys
		}
		keys[o.Key] = struct{}{}
	}
	return e
}

func (ix *Index) unindexLocked(e *entry) {
	gr := schema.GroupResource{Group: e.meta.Key.Group, Resource: e.meta.Key.Resource}
	if keys := ix.orphans[gr][e.meta.Key.Namespace]; keys != nil {
		delete(keys, e.meta.Key)
		if len(keys) == 0 {
			delete(ix.orphans[gr], e.meta.Key.Namespace)
		}
	}
	for _, r := range e.meta.Owners {
		if deps := ix.dependents[r.UID]; deps != nil {
			delete(deps, e.meta.Key)
			if len(deps) == 0 {
				delete(ix.dependents, r.UID)
			}
		}
	}
}

func (ix *Index) removeLocked(e *entry) {
	ix.unindexLocked(e)
	delete(ix.objects, e.meta.Key)
	gr := schema.GroupResource{Group: e.meta.Key.Group, Resource: e.meta.Key.Resource}
	delete(ix.byResource[gr], e.meta.Key)
}

// read returns the metadata of o, and o itself if its resource is kept (to decode later).
func (ix *Index) read(o *projections.Object) (Meta, *projections.Object, error) {
	gr := schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
	m, err := readMeta(o.Event.GetEncoding(), o.Event.GetObject())
	if err != nil {
		return Meta{}, nil, err
	}
	m.Key, m.Seq = o.Key, o.Seq
	var src *projections.Object
	if ix.keep[gr] && o.Kind != nil {
		src = o
	}
	return m, src, nil
}

// Field numbers of the protobuf encoding of Kubernetes objects: every top-level object has its
// ObjectMeta as field 1, and ObjectMeta these.
const (
	fieldMetadata          = 1
	fieldUID               = 5
	fieldDeletionTimestamp = 9
	fieldOwnerReferences   = 13
	fieldFinalizers        = 14
)

// readMeta reads what the index keeps of an encoded object's metadata: from the protobuf
// encoding, the few fields it needs (not the managed fields, labels or annotations).
func readMeta(enc eventv1.Encoding, data []byte) (Meta, error) {
	switch enc {
	case eventv1.Encoding_ENCODING_PROTOBUF:
		var md []byte
		err := eachField(data, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num == fieldMetadata && typ == protowire.BytesType {
				md = v
			}
			return nil
		})
		if err != nil {
			return Meta{}, err
		}
		var m Meta
		err = eachField(md, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if typ != protowire.BytesType {
				return nil
			}
			switch num {
			case fieldUID:
				m.UID = types.UID(v)
			case fieldDeletionTimestamp:
				m.Deleting = true
			case fieldOwnerReferences:
				var r metav1.OwnerReference
				if err := r.Unmarshal(v); err != nil {
					return fmt.Errorf("informer: decoding an owner reference: %w", err)
				}
				m.Owners = append(m.Owners, r)
			case fieldFinalizers:
				m.Finalizers = append(m.Finalizers, string(v))
			}
			return nil
		})
		return m, err
	case eventv1.Encoding_ENCODING_JSON:
		var v struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return Meta{}, fmt.Errorf("informer: decoding metadata: %w", err)
		}
		om := v.Metadata
		return Meta{UID: om.UID, Owners: om.OwnerReferences, Finalizers: om.Finalizers, Deleting: om.DeletionTimestamp != nil}, nil
	}
	return Meta{}, fmt.Errorf("informer: unknown encoding %v", enc)
}

// eachField calls fn with every field of a protobuf message; v is the bytes of a bytes field.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("informer: bad protobuf tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("informer: bad protobuf field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}

// Meta returns what the index holds of the object with key.
func (ix *Index) Meta(key eventlog.Key) (Meta, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	e := ix.objects[key]
	if e == nil {
		return Meta{}, false
	}
	return e.meta, true
}

// Object returns the decoded object with key, of a kept resource. It is shared: copy it before
// changing it.
func (ix *Index) Object(key eventlog.Key) (runtime.Object, bool) {
	ix.mu.RLock()
	e := ix.objects[key]
	ix.mu.RUnlock()
	if e == nil {
		return nil, false
	}
	obj := e.object(ix.log)
	return obj, obj != nil
}

// Dependents returns the keys of the objects that name uid among their owners.
func (ix *Index) Dependents(uid types.UID) []eventlog.Key {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	deps := ix.dependents[uid]
	out := make([]eventlog.Key, 0, len(deps))
	for k := range deps {
		out = append(out, k)
	}
	return out
}

// Orphans returns the keys of the objects of resource gr in namespace ns that have no
// controller (no owner reference with controller set).
func (ix *Index) Orphans(gr schema.GroupResource, ns string) []eventlog.Key {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	keys := ix.orphans[gr][ns]
	out := make([]eventlog.Key, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	return out
}

// Objects returns the decoded objects of a kept resource in namespace ns ("" for all) whose
// filter returns true (nil: all). They are shared: copy one before changing it.
func (ix *Index) Objects(gr schema.GroupResource, ns string, filter func(runtime.Object) bool) []runtime.Object {
	ix.mu.RLock()
	var entries []*entry
	for k := range ix.byResource[gr] {
		if ns != "" && k.Namespace != ns {
			continue
		}
		if e := ix.objects[k]; e != nil {
			entries = append(entries, e)
		}
	}
	ix.mu.RUnlock()
	var out []runtime.Object
	for _, e := range entries {
		obj := e.object(ix.log)
		if obj != nil && (filter == nil || filter(obj)) {
			out = append(out, obj)
		}
	}
	return out
}

// Keys returns the keys of every object of resource gr the index holds.
func (ix *Index) Keys(gr schema.GroupResource) []eventlog.Key {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]eventlog.Key, 0, len(ix.byResource[gr]))
	for k := range ix.byResource[gr] {
		out = append(out, k)
	}
	return out
}

// Undecodable returns how many objects' metadata could not be read.
func (ix *Index) Undecodable() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.undecodable
}
