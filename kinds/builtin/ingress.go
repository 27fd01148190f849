package builtin

import (
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// ingress is networking.k8s.io/v1 Ingress. The DefaultIngressClass admission gives a new one
// without a class the default class; the node agents serve those of logplane's class
// (dataplane/ingressproxy), and reconcilers/ingressstatus writes the nodes' addresses into
// status.loadBalancer.
func ingress() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("networking.k8s.io", "v1", "Ingress"), Resource: "ingresses", Singular: "ingress",
		ShortNames: []string{"ing"}, Namespaced: true,
		Subresources: []string{"status"},
		Strategy: kinds.Typed[*networkingv1.Ingress]{
			Validate:             validation.Ingress,
			ValidateUpdate:       validation.IngressUpdate,
			ValidateStatusUpdate: validation.IngressStatusUpdate,
			Table:                printers.IngressTable,
		}.Strategy(),
	}
}
