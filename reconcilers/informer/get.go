package informer

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

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
