// Package kinds is the catalog of the Kubernetes kinds logplane serves: their group, version,
// resource and scope, how an object of each kind is encoded in the log, and the fields clients
// may select on. It is pure: no log, no network. Everything that handles objects uses it.
package kinds

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
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
	// StatusResetsMetadata are the metadata fields ("labels", "ownerReferences") that an update
	// of the status subresource may not change, beside everything but the status, as the
	// kind's status strategy in Kubernetes resets them.
	StatusResetsMetadata []string

	fields func(obj runtime.Object, set fields.Set)

	// A kind served by conversion (see convert.go): the kind its objects are stored as, the
	// conversions, and the field labels it selects on, by the stored kind's field.
	storedAs             *Kind
	toStored, fromStored func(runtime.Object) runtime.Object
	fieldLabels          map[string]string
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

// Stored returns the kind whose objects hold this kind's: the kind itself, or for a kind served
// by conversion from another (events.k8s.io/v1 Events, stored as core v1 Events), that one.
func (k *Kind) Stored() *Kind {
	if k.storedAs != nil {
		return k.storedAs
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
	if k.fields != nil {
		k.fields(obj, set)
	}
	return set
}

// Catalog indexes a set of kinds by the names clients use for them.
type Catalog struct {
	kinds []*Kind
	byGVR map[schema.GroupVersionResource]*Kind
	byGVK map[schema.GroupVersionKind]*Kind
	byGR  map[schema.GroupResource]*Kind
}

// NewCatalog indexes kinds. Two kinds with the same resource or kind in a group are an error.
func NewCatalog(ks ...*Kind) (*Catalog, error) {
	c := &Catalog{
		byGVR: map[schema.GroupVersionResource]*Kind{},
		byGVK: map[schema.GroupVersionKind]*Kind{},
		byGR:  map[schema.GroupResource]*Kind{},
	}
	for _, k := range ks {
		if _, dup := c.byGVR[k.GroupVersionResource()]; dup {
			return nil, fmt.Errorf("kinds: %v listed twice", k.GroupVersionResource())
		}
		if _, dup := c.byGVK[k.GroupVersionKind]; dup {
			return nil, fmt.Errorf("kinds: %v listed twice", k.GroupVersionKind)
		}
		if _, err := Scheme.New(k.GroupVersionKind); err != nil {
			return nil, fmt.Errorf("kinds: %v: %w", k.GroupVersionKind, err)
		}
		c.kinds = append(c.kinds, k)
		c.byGVR[k.GroupVersionResource()] = k
		c.byGVK[k.GroupVersionKind] = k
		c.byGR[k.GroupResource()] = k
	}
	return c, nil
}

// All returns the kinds in catalog order.
func (c *Catalog) All() []*Kind { return c.kinds }

// ByResource finds a kind by group, version and plural resource.
func (c *Catalog) ByResource(gvr schema.GroupVersionResource) (*Kind, bool) {
	k, ok := c.byGVR[gvr]
	return k, ok
}

// ByGroupResource finds a kind by group and plural resource, whatever its version: the kind of
// the objects stored under that resource in the log. A kind served by conversion from another
// (events.events.k8s.io) stores nothing under its own resource, and is not found here.
func (c *Catalog) ByGroupResource(gr schema.GroupResource) (*Kind, bool) {
	k, ok := c.byGR[gr]
	if ok && k.storedAs != nil {
		return nil, false
	}
	return k, ok
}

// ByKind finds a kind by group, version and kind.
func (c *Catalog) ByKind(gvk schema.GroupVersionKind) (*Kind, bool) {
	k, ok := c.byGVK[gvk]
	return k, ok
}

// GroupVersions returns the group versions of the catalog's kinds, core first, in catalog order.
func (c *Catalog) GroupVersions() []schema.GroupVersion {
	var gvs []schema.GroupVersion
	for _, k := range c.kinds {
		if !slices.Contains(gvs, k.GroupVersion()) {
			gvs = append(gvs, k.GroupVersion())
		}
	}
	return gvs
}
