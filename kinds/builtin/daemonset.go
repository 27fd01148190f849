package builtin

import (
	appsv1 "k8s.io/api/apps/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// daemonSet is apps/v1 DaemonSet.
func daemonSet() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("apps", "v1", "DaemonSet"), Resource: "daemonsets", Singular: "daemonset", ShortNames: []string{"ds"},
		Categories: all, Namespaced: true, Subresources: []string{"status"},
		Strategy: kinds.Typed[*appsv1.DaemonSet]{
			Default:              defaults.DaemonSet,
			Validate:             validation.DaemonSet,
			ValidateUpdate:       validation.DaemonSetUpdate,
			ValidateStatusUpdate: validation.DaemonSetStatusUpdate,
			Table:                printers.DaemonSetTable,
		}.Strategy(),
	}
}
