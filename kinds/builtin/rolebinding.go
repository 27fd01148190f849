package builtin

import (
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// roleBinding is rbac.authorization.k8s.io/v1 RoleBinding.
func roleBinding() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"), Resource: "rolebindings", Singular: "rolebinding",
		Namespaced: true,
		Strategy: kinds.Typed[*rbacv1.RoleBinding]{
			Default:        func(b *rbacv1.RoleBinding) { defaultBinding(&b.RoleRef, b.Subjects) },
			Validate:       validation.RoleBinding,
			ValidateUpdate: validation.RoleBindingUpdate,
			Table:          printers.RoleBindingTable,
		}.Strategy(),
	}
}

// defaultBinding is Kubernetes' RBAC v1 defaulting of a binding: the roleRef's and the users'
// and groups' apiGroup is rbac.authorization.k8s.io when left out.
func defaultBinding(ref *rbacv1.RoleRef, subjects []rbacv1.Subject) {
	if ref.APIGroup == "" {
		ref.APIGroup = rbacv1.GroupName
	}
	for i := range subjects {
		s := &subjects[i]
		if s.APIGroup == "" && (s.Kind == rbacv1.UserKind || s.Kind == rbacv1.GroupKind) {
			s.APIGroup = rbacv1.GroupName
		}
	}
}
