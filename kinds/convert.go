package kinds

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// View is how a kind served by conversion from another stores its objects as that kind:
// Kubernetes stores one resource, events, and serves it as core v1 Events and as
// events.k8s.io/v1 Events.
type View struct {
	// Of is the kind the objects are stored as.
	Of *Kind
	// ToStored and FromStored convert an object of the view to one of the stored kind and back.
	ToStored, FromStored func(runtime.Object) runtime.Object
	// FieldLabels are the view's selectable fields and the stored kind's fields they select on
	// (the view's field label conversion, in Kubernetes' terms).
	FieldLabels map[string]string
}

// ToStored returns obj, an object of kind k, as an object of k.Stored(). For a kind that is its
// own storage, obj itself.
func (k *Kind) ToStored(obj runtime.Object) runtime.Object {
	if k.View == nil {
		return obj
	}
	out := k.View.ToStored(obj)
	out.GetObjectKind().SetGroupVersionKind(k.View.Of.GroupVersionKind)
	return out
}

// FromStored returns obj, an object of k.Stored(), as an object of kind k. For a kind that is
// its own storage, obj itself.
func (k *Kind) FromStored(obj runtime.Object) runtime.Object {
	if k.View == nil {
		return obj
	}
	out := k.View.FromStored(obj)
	out.GetObjectKind().SetGroupVersionKind(k.GroupVersionKind)
	return out
}

// SelectableField returns the stored kind's field that a field selector on label selects, as
// the kind's field label conversion does in Kubernetes; false for a field that may not be
// selected on.
func (k *Kind) SelectableField(label string) (string, bool) {
	if k.View != nil && k.View.FieldLabels != nil {
		f, ok := k.View.FieldLabels[label]
		return f, ok
	}
	_, ok := k.Fields(k.New())[label]
	return label, ok
}

// Converter returns the converter of objects between versions that server-side apply's field
// managers use: the scheme's, plus the conversions of the catalog's views (an Event's managed
// fields recorded through events.k8s.io/v1 are kept when core v1 changes it, and the other way
// round), and none for kinds without a Go type, served in one version. The versioned objects
// are their own hub (the scheme has no internal types).
func (c *Catalog) Converter() runtime.ObjectConvertor { return converter{c} }

type converter struct{ c *Catalog }

// Convert is the scheme's.
func (converter) Convert(in, out, context any) error { return Scheme.Convert(in, out, context) }

// ConvertFieldLabel is the scheme's.
func (converter) ConvertFieldLabel(gvk schema.GroupVersionKind, label, value string) (string, string, error) {
	return Scheme.ConvertFieldLabel(gvk, label, value)
}

// related returns the kinds whose objects are the same as k's: the kind they are stored as and
// every view of it.
func (x *index) related(k *Kind) []*Kind {
	st := k.Stored()
	return append([]*Kind{st}, x.views[st]...)
}

// ConvertToVersion converts in to the version target names.
func (cv converter) ConvertToVersion(in runtime.Object, target runtime.GroupVersioner) (runtime.Object, error) {
	from := in.GetObjectKind().GroupVersionKind()
	x := cv.c.idx.Load()
	k, ok := x.byGVK[from]
	if !ok {
		return Scheme.ConvertToVersion(in, target)
	}
	if gv, isGV := target.(schema.GroupVersion); isGV && gv.Version == runtime.APIVersionInternal {
		return in, nil // the hub: the versioned object itself
	}
	if k.Unstructured {
		if to, ok := target.KindForGroupVersionKinds([]schema.GroupVersionKind{from}); ok && to == from {
			return in, nil
		}
		return nil, runtime.NewNotRegisteredGVKErrForTarget(Scheme.Name(), from, target)
	}
	related := x.related(k)
	if len(related) == 1 {
		return Scheme.ConvertToVersion(in, target)
	}
	gvks := make([]schema.GroupVersionKind, len(related))
	for i, r := range related {
		gvks[i] = r.GroupVersionKind
	}
	to, ok := target.KindForGroupVersionKinds(gvks)
	if !ok {
		return nil, runtime.NewNotRegisteredGVKErrForTarget(Scheme.Name(), from, target)
	}
	if to == from {
		return in, nil
	}
	toKind := x.byGVK[to]
	_, unstructured := in.(runtime.Unstructured)
	typed := in
	if unstructured {
		t, err := Scheme.New(from)
		if err != nil {
			return nil, err
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(in.(runtime.Unstructured).UnstructuredContent(), t); err != nil {
			return nil, fmt.Errorf("kinds: converting %v: %w", from, err)
		}
		typed = t
	}
	// Through the stored kind: view → stored → view.
	out := k.ToStored(typed)
	if toKind != nil {
		out = toKind.FromStored(out)
	}
	out.GetObjectKind().SetGroupVersionKind(to)
	if !unstructured {
		return out, nil
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(out)
	if err != nil {
		return nil, err
	}
	u := in.(runtime.Unstructured).NewEmptyInstance()
	u.SetUnstructuredContent(content)
	u.GetObjectKind().SetGroupVersionKind(to)
	return u, nil
}
