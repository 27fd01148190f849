// Package ownerref adopts and releases dependents through the registry, as Kubernetes'
// ControllerRefManager does for its controllers: adoption adds a controller reference to an
// orphan that is still the object read, has no controller and is not being deleted; release
// removes references to owners. The replica set and deployment reconcilers and the garbage
// collector use it.
package ownerref

import (
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// Modifier is what adoption and release need of the registry.
type Modifier interface {
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
}

var _ Modifier = (*registry.Registry)(nil)

var errSkip = errors.New("ownerref: nothing to do")

// Controller is the reference a controller puts on what it controls: controller and
// blockOwnerDeletion set.
func Controller(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &t, BlockOwnerDeletion: &t}
}

// Adopt adds ref, a controller reference, to the object ns/name of kind k, if it is still the
// object of uid, has no controller and is not being deleted. It returns the object as written,
// or nil (and no error) if it went away or another controller or a deletion came first.
func Adopt(ctx context.Context, w Modifier, k *kinds.Kind, ns, name string, uid types.UID, ref metav1.OwnerReference, req registry.Request) (runtime.Object, error) {
	out, err := w.Modify(ctx, k, ns, name, req, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		m, ok := cur.(metav1.Object)
		if !ok {
			return nil, fmt.Errorf("ownerref: %T has no metadata", cur)
		}
		if m.GetUID() != uid || m.GetDeletionTimestamp() != nil || metav1.GetControllerOfNoCopy(m) != nil {
			return nil, errSkip
		}
		m.SetOwnerReferences(append(m.GetOwnerReferences(), ref))
		return cur, nil
	})
	if errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ownerref: adopting %s %s/%s: %w", k.Kind, ns, name, err)
	}
	return out, nil
}

// Release removes the references to the owners of uids from the object ns/name of kind k, if it
// is still the object of uid. An object that went away, or holds none of them, is no error.
func Release(ctx context.Context, w Modifier, k *kinds.Kind, ns, name string, uid types.UID, owners []types.UID, req registry.Request) error {
	_, err := w.Modify(ctx, k, ns, name, req, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		m, ok := cur.(metav1.Object)
		if !ok {
			return nil, fmt.Errorf("ownerref: %T has no metadata", cur)
		}
		if m.GetUID() != uid {
			return nil, errSkip
		}
		refs := m.GetOwnerReferences()
		kept := slices.DeleteFunc(slices.Clone(refs), func(r metav1.OwnerReference) bool { return slices.Contains(owners, r.UID) })
		if len(kept) == len(refs) {
			return nil, errSkip
		}
		m.SetOwnerReferences(kept)
		return cur, nil
	})
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("ownerref: releasing %s %s/%s: %w", k.Kind, ns, name, err)
}
