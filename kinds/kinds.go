// Package kinds is the catalog of the Kubernetes kinds logplane serves and the shape of what a
// kind does: its group, version, resource and scope, how an object of it is encoded in the log,
// and its Strategy (prepare, default, validate, table columns, scale, status reset, selectable
// fields), which the generic write path and API call and never second-guess. It knows no kind
// itself: the built-in kinds are declared in kinds/builtin, one file each, and custom resources
// get a kind built from their schema at run time (kinds/custom). It is pure: no log, no network.
package kinds

import (
	"fmt"
	"slices"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

// Scheme knows every built-in Kubernetes type. It is client-go's, shared and never modified.
var Scheme = scheme.Scheme

// Kind describes one served resource.
type Kind struct {
	schema.GroupVersionKind
	Resource     string   // plural, lower case
	Singular     string   // lower case
	ShortNames   []string // as kubectl knows them
	Categories   []string // "all" for those `kubectl get all` shows
	Namespaced   bool
	Subresources []string // "status", "scale", ...
	// Verbs of the main resource, when not all of AllVerbs (a Namespace has no deletecollection).
	Verbs []string

	// Strategy is what the kind does on the write path and in the API.
	Strategy Strategy

	// View, for a kind served by conversion from another (events.k8s.io/v1 Events are core v1
	// Events): the kind its objects are stored as, and the conversions (see convert.go).
	View *View

	// Unstructured says that objects of the kind have no Go type: they are
	// unstructured.Unstructured, stored in the log as JSON (custom resources).
	Unstructured bool

	// SecretFields names the top-level fields of the kind's objects whose map values are secret
	// (a Secret's data and stringData). Objects of such a kind are sealed in the log (envelope
	// encryption: docs/security.md), and history shows only which keys of these fields changed
	// and their sizes, never their values. Empty for other kinds.
	SecretFields []string

	shape *shape // the conventional top-level fields of the kind's objects, set by NewCatalog
}

// AllVerbs are the verbs of a resource with everything Kubernetes' generic store serves.
var AllVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// ResourceVerbs returns the verbs of the kind's main resource, sorted.
func (k *Kind) ResourceVerbs() []string {
	if k.Verbs != nil {
		return k.Verbs
	}
	return AllVerbs
}

// Sealed says whether objects of the kind are encrypted in the log (see SecretFields).
func (k *Kind) Sealed() bool { return len(k.Stored().SecretFields) > 0 }

// Stored returns the kind whose objects hold this kind's: the kind itself, or for a kind served
// by conversion from another (events.k8s.io/v1 Events, stored as core v1 Events), that one.
func (k *Kind) Stored() *Kind {
	if k.View != nil {
		return k.View.Of
	}
	return k
}

// GroupVersionResource of the kind.
func (k *Kind) GroupVersionResource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Resource}
}

// GroupResource of the kind.
func (k *Kind) GroupResource() schema.GroupResource {
	return schema.GroupResource{Group: k.Group, Resource: k.Resource}
}

// HasSubresource reports whether the kind serves the named subresource.
func (k *Kind) HasSubresource(name string) bool { return slices.Contains(k.Subresources, name) }

// New returns an empty object of the kind with its TypeMeta set.
func (k *Kind) New() runtime.Object {
	if k.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetGroupVersionKind(k.GroupVersionKind)
		return u
	}
	obj, err := Scheme.New(k.GroupVersionKind)
	if err != nil {
		panic(fmt.Sprintf("kinds: %v is in the catalog but not in the scheme: %v", k.GroupVersionKind, err))
	}
	obj.GetObjectKind().SetGroupVersionKind(k.GroupVersionKind)
	return obj
}

// NewList returns an empty list of the kind with its TypeMeta set.
func (k *Kind) NewList() runtime.Object {
	gvk := k.GroupVersion().WithKind(k.Kind + "List")
	if k.Unstructured {
		l := &unstructured.UnstructuredList{Object: map[string]any{}}
		l.SetGroupVersionKind(gvk)
		return l
	}
	obj, err := Scheme.New(gvk)
	if err != nil {
		panic(fmt.Sprintf("kinds: %v is in the catalog but not in the scheme: %v", gvk, err))
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj
}

// Fields returns the fields of obj that field selectors can match: metadata.name, and
// metadata.namespace for namespaced kinds, plus those of the kind (spec.nodeName, status.phase,
// involvedObject.name, ...). They are the fields Kubernetes allows for the same kind.
func (k *Kind) Fields(obj runtime.Object) fields.Set {
	m, err := meta.Accessor(obj)
	if err != nil {
		return fields.Set{}
	}
	set := fields.Set{"metadata.name": m.GetName()}
	if k.Namespaced {
		set["metadata.namespace"] = m.GetNamespace()
	}
	if k.Strategy.Fields != nil {
		k.Strategy.Fields(obj, set)
	}
	return set
}

// Catalog indexes a set of kinds by the names clients use for them. Kinds may be added while
// it is in use (Add): readers see either the catalog before or after an addition.
type Catalog struct {
	idx atomic.Pointer[index]
}

type index struct {
	kinds []*Kind
	byGVR map[schema.GroupVersionResource]*Kind
	byGVK map[schema.GroupVersionKind]*Kind
	byGR  map[schema.GroupResource]*Kind
	views map[*Kind][]*Kind // the kinds served by conversion from each stored kind
}

// NewCatalog indexes kinds. Two kinds with the same resource or kind in a group are an error,
// and so is a kind whose strategy does not match its subresources.
func NewCatalog(ks ...*Kind) (*Catalog, error) {
	c := &Catalog{}
	c.idx.Store(&index{
		byGVR: map[schema.GroupVersionResource]*Kind{},
		byGVK: map[schema.GroupVersionKind]*Kind{},
		byGR:  map[schema.GroupResource]*Kind{},
		views: map[*Kind][]*Kind{},
	})
	if err := c.Add(ks...); err != nil {
		return nil, err
	}
	return c, nil
}

// Add adds kinds to the catalog, checked as NewCatalog checks them; on an error nothing is added.
func (c *Catalog) Add(ks ...*Kind) error {
	for {
		old := c.idx.Load()
		next := &index{
			kinds: slices.Clone(old.kinds),
			byGVR: cloneMap(old.byGVR), byGVK: cloneMap(old.byGVK), byGR: cloneMap(old.byGR),
			views: map[*Kind][]*Kind{},
		}
		for stored, vs := range old.views {
			next.views[stored] = slices.Clone(vs)
		}
		for _, k := range ks {
			if err := next.add(k); err != nil {
				return err
			}
		}
		if c.idx.CompareAndSwap(old, next) {
			return nil
		}
	}
}

func cloneMap[K comparable](m map[K]*Kind) map[K]*Kind {
	out := make(map[K]*Kind, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (x *index) add(k *Kind) error {
	if _, dup := x.byGVR[k.GroupVersionResource()]; dup {
		return fmt.Errorf("kinds: %v listed twice", k.GroupVersionResource())
	}
	if _, dup := x.byGVK[k.GroupVersionKind]; dup {
		return fmt.Errorf("kinds: %v listed twice", k.GroupVersionKind)
	}
	if err := k.check(); err != nil {
		return err
	}
	if k.shape == nil {
		sh, err := shapeOf(k)
		if err != nil {
			return err
		}
		k.shape = sh
	}
	x.kinds = append(x.kinds, k)
	x.byGVR[k.GroupVersionResource()] = k
	x.byGVK[k.GroupVersionKind] = k
	x.byGR[k.GroupResource()] = k
	if k.View != nil {
		x.views[k.View.Of] = append(x.views[k.View.Of], k)
	}
	return nil
}

// check refuses a kind whose declaration contradicts itself.
func (k *Kind) check() error {
	if !k.Unstructured {
		if _, err := Scheme.New(k.GroupVersionKind); err != nil {
			return fmt.Errorf("kinds: %v: %w", k.GroupVersionKind, err)
		}
	}
	if (k.Strategy.Scale != nil) != k.HasSubresource("scale") {
		return fmt.Errorf("kinds: %v: a scale subresource needs a Scale strategy, and the other way round", k.GroupVersionKind)
	}
	if v := k.View; v != nil && (v.Of == nil || v.ToStored == nil || v.FromStored == nil) {
		return fmt.Errorf("kinds: %v: a view needs the kind it is stored as and both conversions", k.GroupVersionKind)
	}
	return nil
}

// All returns the kinds in catalog order.
func (c *Catalog) All() []*Kind { return c.idx.Load().kinds }

// ByResource finds a kind by group, version and plural resource.
func (c *Catalog) ByResource(gvr schema.GroupVersionResource) (*Kind, bool) {
	k, ok := c.idx.Load().byGVR[gvr]
	return k, ok
}

// ByGroupResource finds a kind by group and plural resource, whatever its version: the kind of
// the objects stored under that resource in the log. A kind served by conversion from another
// (events.events.k8s.io) stores nothing under its own resource, and is not found here.
func (c *Catalog) ByGroupResource(gr schema.GroupResource) (*Kind, bool) {
	k, ok := c.idx.Load().byGR[gr]
	if ok && k.View != nil {
		return nil, false
	}
	return k, ok
}

// ByKind finds a kind by group, version and kind.
func (c *Catalog) ByKind(gvk schema.GroupVersionKind) (*Kind, bool) {
	k, ok := c.idx.Load().byGVK[gvk]
	return k, ok
}

// GroupVersions returns the group versions of the catalog's kinds, core first, in catalog order.
func (c *Catalog) GroupVersions() []schema.GroupVersion {
	var gvs []schema.GroupVersion
	for _, k := range c.All() {
		if !slices.Contains(gvs, k.GroupVersion()) {
			gvs = append(gvs, k.GroupVersion())
		}
	}
	return gvs
}
