package builtin

import (
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// clusterRoleBinding is rbac.authorization.k8s.io/v1 ClusterRoleBinding.
func clusterRoleBinding() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"), Resource: "clusterrolebindings", Singular: "clusterrolebinding",
		Namespaced: false,
		Strategy: kinds.Typed[*rbacv1.ClusterRoleBinding]{
			Default:        func(b *rbacv1.ClusterRoleBinding) { defaultBinding(&b.RoleRef, b.Subjects) },
			Validate:       validation.ClusterRoleBinding,
			ValidateUpdate: validation.ClusterRoleBindingUpdate,
			Table:          printers.ClusterRoleBindingTable,
		}.Strategy(),
	}
}
