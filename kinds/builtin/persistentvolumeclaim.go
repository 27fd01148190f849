package builtin

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// persistentVolumeClaim is core/v1 PersistentVolumeClaim. A claim without a class gets the
// default one from admission (DefaultStorageClass); the binder owns its status.
func persistentVolumeClaim() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "PersistentVolumeClaim"), Resource: "persistentvolumeclaims", Singular: "persistentvolumeclaim",
		ShortNames: []string{"pvc"}, Namespaced: true, Subresources: []string{"status"},
		Strategy: kinds.Typed[*corev1.PersistentVolumeClaim]{
			PrepareForCreate: func(pvc *corev1.PersistentVolumeClaim) {
				pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
			},
			Default:              defaults.PersistentVolumeClaim,
			Validate:             validation.PersistentVolumeClaim,
			ValidateUpdate:       validation.PersistentVolumeClaimUpdate,
			ValidateStatusUpdate: validation.PersistentVolumeClaimStatusUpdate,
			Table:                printers.PersistentVolumeClaimTable,
		}.Strategy(),
	}
}
