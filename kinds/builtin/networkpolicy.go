package builtin

import (
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// networkPolicy is networking.k8s.io/v1 NetworkPolicy. The node agents enforce it
// (dataplane/netpolicy).
func networkPolicy() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("networking.k8s.io", "v1", "NetworkPolicy"), Resource: "networkpolicies", Singular: "networkpolicy",
		ShortNames: []string{"netpol"}, Namespaced: true,
		Strategy: kinds.Typed[*networkingv1.NetworkPolicy]{
			Default:        defaults.NetworkPolicy,
			Validate:       validation.NetworkPolicy,
			ValidateUpdate: validation.NetworkPolicyUpdate,
			Table:          printers.NetworkPolicyTable,
		}.Strategy(),
	}
}
