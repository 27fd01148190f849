package builtin

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// persistentVolume is core/v1 PersistentVolume: written by hand (hostPath, local) or by a node
// agent's local provisioner; the binder (reconcilers/volumebinding) owns its status.
func persistentVolume() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "PersistentVolume"), Resource: "persistentvolumes", Singular: "persistentvolume",
		ShortNames: []string{"pv"}, Subresources: []string{"status"},
		Strategy: kinds.Typed[*corev1.PersistentVolume]{
			PrepareForCreate: func(pv *corev1.PersistentVolume) {
				pv.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumePending}
			},
			Default:              defaults.PersistentVolume,
			Validate:             validation.PersistentVolume,
			ValidateUpdate:       validation.PersistentVolumeUpdate,
			ValidateStatusUpdate: validation.PersistentVolumeStatusUpdate,
			Table:                printers.PersistentVolumeTable,
		}.Strategy(),
	}
}
