package builtin

import (
	appsv1 "k8s.io/api/apps/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// statefulSet is apps/v1 StatefulSet.
func statefulSet() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("apps", "v1", "StatefulSet"), Resource: "statefulsets", Singular: "statefulset", ShortNames: []string{"sts"},
		Categories: all, Namespaced: true, Subresources: []string{"status", "scale"},
		Strategy: kinds.Typed[*appsv1.StatefulSet]{
			Default:              defaults.StatefulSet,
			Validate:             validation.StatefulSet,
			ValidateUpdate:       validation.StatefulSetUpdate,
			ValidateStatusUpdate: validation.StatefulSetStatusUpdate,
			Table:                printers.StatefulSetTable,
			Scale: func(ss *appsv1.StatefulSet) (*int32, int32, string) {
				return ss.Spec.Replicas, ss.Status.Replicas, selectorString(ss.Spec.Selector)
			},
			SetReplicas: func(ss *appsv1.StatefulSet, n int32) { ss.Spec.Replicas = &n },
		}.Strategy(),
	}
}
