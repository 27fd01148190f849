package ownerref

import (
	"context"
	"errors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

// object is a decoded API object: a runtime.Object with metadata.
type object interface {
	runtime.Object
	metav1.Object
}

// AdoptOrphans adopts with ref the orphans of kind k in namespace ns that the index holds as a
// T, not being deleted, whose labels selector matches and that match accepts (nil: all), as
// the orphan half of Kubernetes' ControllerRefManager claims. It returns those adopted, as
// written, and the errors of those it could not adopt, joined.
func AdoptOrphans[T object](ctx context.Context, w Modifier, ix *informer.Index, k *kinds.Kind, ns string,
	selector labels.Selector, match func(T) bool, ref metav1.OwnerReference, req registry.Request) ([]T, error) {
	var adopted []T
	var errs []error
	for _, key := range ix.Orphans(k.GroupResource(), ns) {
		o, ok := informer.Get[T](ix, k.GroupResource(), key)
		if !ok || o.GetDeletionTimestamp() != nil || metav1.GetControllerOfNoCopy(o) != nil ||
			!selector.Matches(labels.Set(o.GetLabels())) || (match != nil && !match(o)) {
			continue
		}
		out, err := Adopt(ctx, w, k, o.GetNamespace(), o.GetName(), o.GetUID(), ref, req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if t, ok := out.(T); ok {
			adopted = append(adopted, t)
		}
	}
	return adopted, errors.Join(errs...)
}
