package builtin

import (
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// endpointSlice is discovery.k8s.io/v1 EndpointSlice.
func endpointSlice() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("discovery.k8s.io", "v1", "EndpointSlice"), Resource: "endpointslices", Singular: "endpointslice",
		Namespaced: true,
		Strategy: kinds.Typed[*discoveryv1.EndpointSlice]{
			Default:        defaults.EndpointSlice,
			Validate:       validation.EndpointSlice,
			ValidateUpdate: validation.EndpointSliceUpdate,
			Table:          printers.EndpointSliceTable,
		}.Strategy(),
	}
}
