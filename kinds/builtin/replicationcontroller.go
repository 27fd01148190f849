package builtin

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// replicationController is core/v1 ReplicationController.
func replicationController() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "ReplicationController"), Resource: "replicationcontrollers", Singular: "replicationcontroller",
		ShortNames: []string{"rc"}, Categories: all, Namespaced: true, Subresources: []string{"status", "scale"},
		Strategy: kinds.Typed[*corev1.ReplicationController]{
			Default:              defaults.ReplicationController,
			Validate:             validation.ReplicationController,
			ValidateUpdate:       validation.ReplicationControllerUpdate,
			ValidateStatusUpdate: validation.ReplicationControllerStatusUpdate,
			Table:                printers.ReplicationControllerTable,
			Fields: func(rc *corev1.ReplicationController, s fields.Set) {
				s["status.replicas"] = strconv.Itoa(int(rc.Status.Replicas))
			},
			Scale: func(rc *corev1.ReplicationController) (*int32, int32, string) {
				return rc.Spec.Replicas, rc.Status.Replicas, labels.SelectorFromSet(rc.Spec.Selector).String()
			},
			SetReplicas: func(rc *corev1.ReplicationController, n int32) { rc.Spec.Replicas = &n },
		}.Strategy(),
	}
}
