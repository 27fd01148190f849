package builtin

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// endpoints is core/v1 Endpoints.
func endpoints() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "Endpoints"), Resource: "endpoints", Singular: "endpoints", ShortNames: []string{"ep"},
		Namespaced: true,
		Strategy: kinds.Typed[*corev1.Endpoints]{
			Default:        defaults.Endpoints,
			Validate:       validation.Endpoints,
			ValidateUpdate: validation.EndpointsUpdate,
			Table:          printers.EndpointsTable,
		}.Strategy(),
	}
}
