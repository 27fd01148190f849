package scheduler

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// RegistryWriter is the Writer of a scheduler in production: every write goes through the
// registry (defaulting, validation, managed fields, compare-and-set), with the scheduler as actor
// and the triggering event as cause. Events go through the shared recorder instead.
type RegistryWriter struct {
	reg   *registry.Registry
	actor registry.Actor
	pods  *kinds.Kind
}

var _ Writer = (*RegistryWriter)(nil)

// NewRegistryWriter returns a writer through reg, whose writes name the reconciler actor (for
// example "scheduler").
func NewRegistryWriter(reg *registry.Registry, actor string) (*RegistryWriter, error) {
	pods, ok := reg.Catalog().ByGroupResource(podsResource)
	if !ok {
		return nil, errors.New("scheduler: the registry serves no pods")
	}
	return &RegistryWriter{reg: reg, actor: registry.Reconciler(actor), pods: pods}, nil
}

func (w *RegistryWriter) request(cause uint64) registry.Request {
	return registry.Request{Actor: w.actor, Cause: cause}
}

// Bind assigns pod to node through the registry's binding (POST pods/<name>/binding's rules),
// on the condition that the pod is still the one decided on (its uid).
func (w *RegistryWriter) Bind(ctx context.Context, pod *corev1.Pod, node string, cause uint64) error {
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	_, err := w.reg.Bind(ctx, pod.Namespace, pod.Name, b, w.request(cause))
	return err
}

// SetPodCondition sets cond on the pod's status through the status subresource.
func (w *RegistryWriter) SetPodCondition(ctx context.Context, pod *corev1.Pod, cond corev1.PodCondition, cause uint64) error {
	_, err := w.reg.Modify(ctx, w.pods, pod.Namespace, pod.Name, w.request(cause), registry.UpdateOptions{Subresource: "status"},
		func(cur runtime.Object) (runtime.Object, error) {
			p, ok := cur.(*corev1.Pod)
			if !ok {
				return nil, apierrors.NewInternalError(fmt.Errorf("pods decode to %T", cur))
			}
			if p.UID != pod.UID {
				return nil, apierrors.NewConflict(w.pods.GroupResource(), pod.Name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", pod.UID, p.UID))
			}
			SetCondition(&p.Status, cond)
			return p, nil
		})
	return err
}
