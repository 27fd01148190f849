package builtin

import (
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// role is rbac.authorization.k8s.io/v1 Role.
func role() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("rbac.authorization.k8s.io", "v1", "Role"), Resource: "roles", Singular: "role",
		Namespaced: true,
		Strategy: kinds.Typed[*rbacv1.Role]{
			Validate:       validation.Role,
			ValidateUpdate: validation.RoleUpdate,
			Table:          printers.RoleTable,
		}.Strategy(),
	}
}
