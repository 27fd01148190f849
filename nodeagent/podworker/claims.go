package podworker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// claimRetry is how soon a pod whose claim is not bound looks again (sooner than BackOff, which
// is for failures: a claim is bound within moments of its pod being scheduled).
const claimRetry = time.Second

// claimPath is the host directory of a claim (ClaimResolver).
func (w *worker) claimPath(ctx context.Context, namespace, claim string) (string, error) {
	cr, ok := w.m.cfg.Resolver.(ClaimResolver)
	if !ok || w.m.cfg.Resolver == nil {
		return "", fmt.Errorf("persistentvolumeclaim %q: no volumes on this node", claim)
	}
	return cr.ClaimPath(ctx, namespace, claim)
}

// claimsBound is the kubelet's wait for a pod's volumes before its sandbox is made: every claim
// the pod uses must be bound, else the error says which, as the kubelet's FailedMount event.
func (w *worker) claimsBound(ctx context.Context, pod *corev1.Pod) error {
	var names, unbound []string
	var errs []error
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		names = append(names, v.Name)
		if _, err := w.claimPath(ctx, pod.Namespace, v.PersistentVolumeClaim.ClaimName); err != nil {
			unbound = append(unbound, v.Name)
			errs = append(errs, fmt.Errorf("error processing PVC %s/%s: %w", pod.Namespace, v.PersistentVolumeClaim.ClaimName, err))
		}
	}
	if len(unbound) == 0 {
		return nil
	}
	return fmt.Errorf("Unable to attach or mount volumes: unmounted volumes=[%s], unattached volumes=[%s]: %w",
		strings.Join(unbound, " "), strings.Join(names, " "), errors.Join(errs...))
}
