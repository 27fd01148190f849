package builtin

import (
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// clusterRole is rbac.authorization.k8s.io/v1 ClusterRole.
func clusterRole() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"), Resource: "clusterroles", Singular: "clusterrole",
		Namespaced: false,
		Strategy: kinds.Typed[*rbacv1.ClusterRole]{
			Validate:       validation.ClusterRole,
			ValidateUpdate: validation.ClusterRoleUpdate,
			Table:          printers.ClusterRoleTable,
		}.Strategy(),
	}
}
