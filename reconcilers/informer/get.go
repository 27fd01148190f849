package informer

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
)

// Get returns the decoded object with key if key is of resource gr and the object is a T (a
// *corev1.Pod of "pods"); the zero T and false otherwise. Keys of other resources are not
// decoded. The object is shared: copy it before changing it.
func Get[T runtime.Object](ix *Index, gr schema.GroupResource, key eventlog.Key) (T, bool) {
	var zero T
	if key.Group != gr.Group || key.Resource != gr.Resource {
		return zero, false
	}
	obj, ok := ix.Object(key)
	t, isT := obj.(T)
	if !ok || !isT {
		return zero, false
	}
	return t, true
}

// Controlled returns the objects of resource gr whose controller (the ownerReference with
// controller: true) is owner, decoded as T. They are shared: copy one before changing it.
func Controlled[T interface {
	runtime.Object
	metav1.Object
}](ix *Index, gr schema.GroupResource, owner types.UID) []T {
	var out []T
	for _, k := range ix.Dependents(owner) {
		o, ok := Get[T](ix, gr, k)
		if !ok {
			continue
		}
		if ref := metav1.GetControllerOfNoCopy(o); ref != nil && ref.UID == owner {
			out = append(out, o)
		}
	}
	return out
}
