package kinds

import (
	"fmt"
	"reflect"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
)

// shape knows the conventional top-level fields of a kind's objects (spec, status), so that the
// write path can separate them for any kind: by the fields of its Go type, found once, or by
// the keys of an unstructured object.
type shape struct {
	unstructured bool
	spec, status bool // the objects have a spec; a status the status subresource changes
	// For typed kinds: the indexes of the struct's fields.
	specField, statusField int
	others                 []int // every field but TypeMeta, ObjectMeta and Status
}

func shapeOf(k *Kind) (*shape, error) {
	statusSub := k.HasSubresource("status")
	if k.Unstructured {
		// A custom resource's generation counts every change but to its metadata (and its
		// status, with a status subresource), as Kubernetes' customresource strategy does.
		return &shape{unstructured: true, spec: true, status: statusSub}, nil
	}
	t := reflect.TypeOf(k.New())
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("kinds: %v: %v is not a pointer to a struct", k.GroupVersionKind, t)
	}
	t = t.Elem()
	sh := &shape{specField: -1, statusField: -1}
	for i := 0; i < t.NumField(); i++ {
		switch t.Field(i).Name {
		case "TypeMeta", "ObjectMeta":
		case "Spec":
			sh.spec, sh.specField = true, i
			sh.others = append(sh.others, i)
		case "Status":
			sh.statusField = i
		default:
			sh.others = append(sh.others, i)
		}
	}
	sh.status = sh.statusField >= 0 && statusSub
	if sh.statusField >= 0 && !statusSub {
		// Without a status subresource the status is like any other field.
		sh.others = append(sh.others, sh.statusField)
	}
	return sh, nil
}

func (k *Kind) shapeOrNew() *shape {
	if k.shape != nil {
		return k.shape
	}
	sh, err := shapeOf(k)
	if err != nil {
		panic(err)
	}
	return sh
}

// HasSpec reports whether the kind's objects have a spec, whose changes the generation counts.
func (k *Kind) HasSpec() bool { return k.shapeOrNew().spec }

// HasStatus reports whether the kind's objects have a status that only the status subresource
// changes.
func (k *Kind) HasStatus() bool { return k.shapeOrNew().status }

func elem(obj runtime.Object) reflect.Value { return reflect.ValueOf(obj).Elem() }

func content(obj runtime.Object) map[string]any {
	if u, ok := obj.(runtime.Unstructured); ok {
		return u.UnstructuredContent()
	}
	return nil
}

// ClearStatus clears obj's status, for a kind with a status subresource.
func (k *Kind) ClearStatus(obj runtime.Object) {
	sh := k.shapeOrNew()
	if !sh.status {
		return
	}
	if sh.unstructured {
		delete(content(obj), "status")
		return
	}
	f := elem(obj).Field(sh.statusField)
	f.Set(reflect.Zero(f.Type()))
}

// KeepStatus sets obj's status to old's, for a kind with a status subresource: an update of the
// main resource does not change the status.
func (k *Kind) KeepStatus(obj, old runtime.Object) {
	sh := k.shapeOrNew()
	if !sh.status {
		return
	}
	if sh.unstructured {
		c, oc := content(obj), content(old)
		if st, ok := oc["status"]; ok {
			c["status"] = runtime.DeepCopyJSONValue(st)
		} else {
			delete(c, "status")
		}
		return
	}
	elem(obj).Field(sh.statusField).Set(elem(old).Field(sh.statusField))
}

// KeepAllButStatus sets everything of obj but its metadata and status to old's: an update of the
// status subresource changes the status only.
func (k *Kind) KeepAllButStatus(obj, old runtime.Object) {
	sh := k.shapeOrNew()
	if sh.unstructured {
		c, oc := content(obj), content(old)
		for key := range c {
			if _, kept := oc[key]; !kept && !isMetaOrStatus(key) {
				delete(c, key)
			}
		}
		for key, v := range oc {
			if !isMetaOrStatus(key) {
				c[key] = runtime.DeepCopyJSONValue(v)
			}
		}
		return
	}
	nv, ov := elem(obj), elem(old)
	for _, i := range sh.others {
		if i != sh.statusField {
			nv.Field(i).Set(ov.Field(i))
		}
	}
}

func isMetaOrStatus(key string) bool {
	return key == "metadata" || key == "status" || key == "apiVersion" || key == "kind"
}

// SpecChanged reports whether obj's spec differs from old's: what the generation counts.
func (k *Kind) SpecChanged(obj, old runtime.Object) bool {
	sh := k.shapeOrNew()
	if !sh.spec {
		return false
	}
	if sh.unstructured {
		return !k.equalBut(obj, old, sh.status)
	}
	return !apiequality.Semantic.DeepEqual(elem(obj).Field(sh.specField).Interface(), elem(old).Field(sh.specField).Interface())
}

// StatusChanged reports whether obj's status differs from old's.
func (k *Kind) StatusChanged(obj, old runtime.Object) bool {
	sh := k.shapeOrNew()
	if sh.unstructured {
		return !apiequality.Semantic.DeepEqual(content(obj)["status"], content(old)["status"])
	}
	if sh.statusField < 0 {
		return false
	}
	return !apiequality.Semantic.DeepEqual(elem(obj).Field(sh.statusField).Interface(), elem(old).Field(sh.statusField).Interface())
}

// MetadataOnly reports whether obj differs from old in its metadata alone.
func (k *Kind) MetadataOnly(obj, old runtime.Object) bool {
	sh := k.shapeOrNew()
	if sh.unstructured {
		return k.equalBut(obj, old, false)
	}
	nv, ov := elem(obj), elem(old)
	if sh.statusField >= 0 && sh.status && !apiequality.Semantic.DeepEqual(nv.Field(sh.statusField).Interface(), ov.Field(sh.statusField).Interface()) {
		return false
	}
	for _, i := range sh.others {
		if !apiequality.Semantic.DeepEqual(nv.Field(i).Interface(), ov.Field(i).Interface()) {
			return false
		}
	}
	return true
}

// equalBut compares two unstructured objects but for their metadata, and their status when
// skipStatus is set.
func (k *Kind) equalBut(obj, old runtime.Object, skipStatus bool) bool {
	strip := func(m map[string]any) map[string]any {
		out := make(map[string]any, len(m))
		for key, v := range m {
			if key == "metadata" || key == "apiVersion" || key == "kind" || (skipStatus && key == "status") {
				continue
			}
			out[key] = v
		}
		return out
	}
	return apiequality.Semantic.DeepEqual(strip(content(obj)), strip(content(old)))
}
