package builtin

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// namespace is core/v1 Namespace. Its phase is the server's; deleting one marks it Terminating
// and the namespace lifecycle (reconcilers/namespaces) empties it and removes the "kubernetes"
// finalizer through the finalize subresource, the only way spec.finalizers change.
func namespace() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "Namespace"), Resource: "namespaces", Singular: "namespace", ShortNames: []string{"ns"},
		Subresources: []string{"status", "finalize"},
		Verbs:        []string{"create", "delete", "get", "list", "patch", "update", "watch"},
		Strategy: kinds.Typed[*corev1.Namespace]{
			PrepareForCreate: func(ns *corev1.Namespace) {
				ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
				if len(ns.Spec.Finalizers) == 0 {
					ns.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
				}
			},
			PrepareForUpdate: func(ns, old *corev1.Namespace, sub string) {
				// The phase is the server's: Terminating once deletion started. Spec finalizers
				// change through the finalize subresource only.
				ns.Status.Phase = old.Status.Phase
				if sub != "finalize" {
					ns.Spec.Finalizers = old.Spec.Finalizers
				}
			},
			Default:              defaults.Namespace,
			Validate:             validation.Namespace,
			ValidateUpdate:       validation.NamespaceUpdate,
			ValidateStatusUpdate: validation.NamespaceStatusUpdate,
			Table:                printers.NamespaceTable,
			Fields: func(ns *corev1.Namespace, s fields.Set) {
				s["status.phase"] = string(ns.Status.Phase)
			},
			PendingFinalizers: func(ns *corev1.Namespace) bool { return len(ns.Spec.Finalizers) > 0 },
			Terminate: func(ns *corev1.Namespace, now time.Time) bool {
				if ns.DeletionTimestamp != nil {
					return false
				}
				t := metav1.NewTime(now.Truncate(time.Second))
				ns.DeletionTimestamp = &t
				ns.DeletionGracePeriodSeconds = new(int64)
				ns.Status.Phase = corev1.NamespaceTerminating
				return true
			},
		}.Strategy(),
	}
}
