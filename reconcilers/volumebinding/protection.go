package volumebinding

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/registry"
)

// ProtectionName is the pvc-protection reconciler's name.
const ProtectionName = "pvc-protection"

// PVCProtectionFinalizer is what the StorageObjectInUseProtection admission puts on claims.
const PVCProtectionFinalizer = "kubernetes.io/pvc-protection"

var pods = schema.GroupResource{Resource: "pods"}

// registerProtection registers the port of kube-controller-manager's pvc-protection controller:
// a claim being deleted keeps its finalizer while a pod that is not finished uses it.
func (b *Binder) registerProtection(e *engine.Engine, workers int) {
	e.Register(engine.Registration{
		Name: ProtectionName, For: claims, Workers: workers, Reconciler: engine.ReconcilerFunc(b.syncProtection),
		Watches: []engine.Watch{engine.Watches(pods, b.protectedClaims)},
		Reads:   []schema.GroupResource{pods},
	})
}

func protected(o runtime.Object) bool {
	c := o.(*corev1.PersistentVolumeClaim)
	return c.DeletionTimestamp != nil && slices.Contains(c.Finalizers, PVCProtectionFinalizer)
}

// protectedClaims maps a pod's change to the claims of its namespace waiting for their pods.
func (b *Binder) protectedClaims(ev engine.Event) []eventlog.Key {
	var keys []eventlog.Key
	for _, o := range b.ix.Objects(claims, ev.Object().Key.Namespace, protected) {
		c := o.(*corev1.PersistentVolumeClaim)
		keys = append(keys, claimKey(c.Namespace, c.Name))
	}
	return keys
}

// uses says whether pod, not finished, mounts the claim name.
func uses(pod *corev1.Pod, name string) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == name ||
			v.Ephemeral != nil && pod.Name+"-"+v.Name == name {
			return true
		}
	}
	return false
}

func (b *Binder) syncProtection(ctx context.Context, req engine.Request) (engine.Result, error) {
	o, ok := b.ix.Object(req.Key)
	if !ok || !protected(o) {
		return engine.Result{}, nil
	}
	claim := o.(*corev1.PersistentVolumeClaim)
	for _, p := range b.ix.Objects(pods, claim.Namespace, nil) {
		if uses(p.(*corev1.Pod), claim.Name) {
			return engine.Result{}, nil // the pod's change queues the claim again
		}
	}
	next := claim.DeepCopy()
	next.Finalizers = slices.DeleteFunc(next.Finalizers, func(f string) bool { return f == PVCProtectionFinalizer })
	_, err := b.w.Update(ctx, b.claimKind, next, registry.Request{Actor: registry.Reconciler(ProtectionName), Cause: req.Cause})
	if err = ignoreGone(err); err != nil {
		return engine.Result{}, fmt.Errorf("volumebinding: removing the protection of claim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
	return engine.Result{}, nil
}
