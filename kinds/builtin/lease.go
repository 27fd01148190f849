package builtin

import (
	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// lease is coordination.k8s.io/v1 Lease.
func lease() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("coordination.k8s.io", "v1", "Lease"), Resource: "leases", Singular: "lease", Namespaced: true,
		Strategy: kinds.Typed[*coordinationv1.Lease]{
			Validate:       validation.Lease,
			ValidateUpdate: validation.LeaseUpdate,
			Table:          printers.LeaseTable,
		}.Strategy(),
	}
}
