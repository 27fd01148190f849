package builtin

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// replicaSet is apps/v1 ReplicaSet.
func replicaSet() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("apps", "v1", "ReplicaSet"), Resource: "replicasets", Singular: "replicaset", ShortNames: []string{"rs"},
		Categories: all, Namespaced: true, Subresources: []string{"status", "scale"},
		Strategy: kinds.Typed[*appsv1.ReplicaSet]{
			Default:              defaults.ReplicaSet,
			Validate:             validation.ReplicaSet,
			ValidateUpdate:       validation.ReplicaSetUpdate,
			ValidateStatusUpdate: validation.ReplicaSetStatusUpdate,
			Table:                printers.ReplicaSetTable,
			Fields: func(rs *appsv1.ReplicaSet, s fields.Set) {
				s["status.replicas"] = strconv.Itoa(int(rs.Status.Replicas))
			},
			Scale: func(rs *appsv1.ReplicaSet) (*int32, int32, string) {
				return rs.Spec.Replicas, rs.Status.Replicas, selectorString(rs.Spec.Selector)
			},
			SetReplicas: func(rs *appsv1.ReplicaSet, n int32) { rs.Spec.Replicas = &n },
		}.Strategy(),
	}
}
