package builtin

import (
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// ipAddress is networking.k8s.io/v1 IPAddress: one object per allocated cluster IP, named by
// the address and naming the Service that holds it. The registry's allocator creates it with
// compare-and-set in the log before the Service is written (Kubernetes' ipallocator does the
// same against etcd), so that two API servers never hand out the same address.
func ipAddress() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("networking.k8s.io", "v1", "IPAddress"), Resource: "ipaddresses", Singular: "ipaddress", ShortNames: []string{"ip"},
		Strategy: kinds.Typed[*networkingv1.IPAddress]{
			Validate:       validation.IPAddress,
			ValidateUpdate: validation.IPAddressUpdate,
			Table:          printers.IPAddressTable,
		}.Strategy(),
	}
}

// serviceCIDR is networking.k8s.io/v1 ServiceCIDR: a range cluster IPs are allocated from. The
// API server creates the default one ("kubernetes") from its configured range.
func serviceCIDR() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("networking.k8s.io", "v1", "ServiceCIDR"), Resource: "servicecidrs", Singular: "servicecidr",
		Subresources: []string{"status"},
		Strategy: kinds.Typed[*networkingv1.ServiceCIDR]{
			Validate:             validation.ServiceCIDR,
			ValidateUpdate:       validation.ServiceCIDRUpdate,
			ValidateStatusUpdate: validation.MetadataUpdate[*networkingv1.ServiceCIDR],
			Table:                printers.ServiceCIDRTable,
		}.Strategy(),
	}
}
