package registry

import (
	"fmt"
	"reflect"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"

	"github.com/logplane/logplane/kinds"
	smdschema "sigs.k8s.io/structured-merge-diff/v6/schema"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
	"sigs.k8s.io/structured-merge-diff/v6/value"
)

// goTypes is the type converter of the built-in kinds with one shortcut: the objects the field
// manager converts to record who changed what in an update (the live object and the new one,
// which it converts with typed.AllowDuplicates) are Go structs of the kind's own type, which
// conform to the kind's schema by construction, so they are not walked once more to validate
// them. That walk was half of the managed-fields cost of every write (a third of a reconciler's
// CPU in BenchmarkJobs). What a user applies (server-side apply's patch, converted without
// options) and every unstructured object are still validated. What a Go struct can get wrong
// against its schema (an associative list's element without its key, two with the same key)
// the kind's validation refuses before the field manager runs, on create and update alike.
type goTypes struct {
	managedfields.TypeConverter

	mu    sync.Mutex
	types map[schema.GroupVersionKind]smdType
}

type smdType struct {
	schema  *smdschema.Schema
	typeRef smdschema.TypeRef
}

func newGoTypes(tc managedfields.TypeConverter) *goTypes {
	return &goTypes{TypeConverter: tc, types: map[schema.GroupVersionKind]smdType{}}
}

func (g *goTypes) ObjectToTyped(obj runtime.Object, opts ...typed.ValidationOptions) (*typed.TypedValue, error) {
	if _, ok := obj.(*unstructured.Unstructured); ok || !slices.Contains(opts, typed.AllowDuplicates) {
		return g.TypeConverter.ObjectToTyped(obj, opts...)
	}
	t, err := g.typeOf(obj)
	if err != nil {
		return nil, err
	}
	v, err := value.NewValueReflect(obj)
	if err != nil {
		return nil, fmt.Errorf("registry: %T as a structured value: %w", obj, err)
	}
	return typed.AsTypedUnvalidated(v, t.schema, t.typeRef), nil
}

// typeOf finds the schema of obj's kind by converting an empty object of it once.
func (g *goTypes) typeOf(obj runtime.Object) (smdType, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	g.mu.Lock()
	t, ok := g.types[gvk]
	g.mu.Unlock()
	if ok {
		return t, nil
	}
	empty, err := kinds.Scheme.New(gvk)
	if err != nil {
		return smdType{}, fmt.Errorf("registry: %w", err)
	}
	empty.GetObjectKind().SetGroupVersionKind(gvk)
	tv, err := g.TypeConverter.ObjectToTyped(empty)
	if err != nil {
		return smdType{}, err
	}
	t = smdType{schema: tv.Schema(), typeRef: tv.TypeRef()}
	g.mu.Lock()
	g.types[gvk] = t
	g.mu.Unlock()
	return t, nil
}

// updateManagedFields records in next's managedFields what manager changed from cur, through
// subresource sub. A status write changes only the metadata and the status (prepareForUpdate
// keeps every other field as it was), so the field manager compares only those: comparing the
// spec too, the same on both sides, was most of the cost of every status write (a pod's
// containers, a Job's pod template) and found nothing.
func (r *Registry) updateManagedFields(k *kinds.Kind, sub string, cur, next runtime.Object, manager string) (runtime.Object, error) {
	fm, err := r.FieldManager(k, fieldManagerSubresource(sub))
	if err != nil {
		return nil, err
	}
	if sub != "status" || k.Unstructured || r.unabridged {
		return fm.UpdateNoErrors(cur, next, manager), nil
	}
	c, okC := metadataAndStatus(cur)
	n, okN := metadataAndStatus(next)
	if !okC || !okN {
		return fm.UpdateNoErrors(cur, next, manager), nil
	}
	out, err := meta.Accessor(fm.UpdateNoErrors(c, n, manager))
	if err != nil {
		return nil, err
	}
	nm, err := meta.Accessor(next)
	if err != nil {
		return nil, err
	}
	nm.SetManagedFields(out.GetManagedFields())
	return next, nil
}

// metadataAndStatus returns a copy of a Go-typed object with its type, metadata and status
// only.
func metadataAndStatus(obj runtime.Object) (runtime.Object, bool) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, false
	}
	src := v.Elem()
	out := reflect.New(src.Type())
	for _, f := range []string{"TypeMeta", "ObjectMeta", "Status"} {
		sf := src.FieldByName(f)
		if !sf.IsValid() {
			return nil, false
		}
		out.Elem().FieldByName(f).Set(sf)
	}
	cp, ok := out.Interface().(runtime.Object)
	if !ok {
		return nil, false
	}
	return cp.DeepCopyObject(), true
}
