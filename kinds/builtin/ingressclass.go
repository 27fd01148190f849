package builtin

import (
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// ingressClass is networking.k8s.io/v1 IngressClass. The API server creates logplane's own,
// "logplane" (controller logplane.io/ingress), marked the default class.
func ingressClass() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("networking.k8s.io", "v1", "IngressClass"), Resource: "ingressclasses", Singular: "ingressclass",
		Strategy: kinds.Typed[*networkingv1.IngressClass]{
			Default:        defaults.IngressClass,
			Validate:       validation.IngressClass,
			ValidateUpdate: validation.IngressClassUpdate,
			Table:          printers.IngressClassTable,
		}.Strategy(),
	}
}
