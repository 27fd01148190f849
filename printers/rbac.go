package printers

import (
	"fmt"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The Tables of the RBAC kinds: roles print Kubernetes' default Name and Created At, bindings
// their role and (wide) subjects.
var (
	RoleTable               = defaultTable
	ClusterRoleTable        = defaultTable
	RoleBindingTable        = table(bindingColumns("roleBinding"), cells(roleBindingRow))
	ClusterRoleBindingTable = table(bindingColumns("clusterRoleBinding"), cells(clusterRoleBindingRow))
)

func bindingColumns(what string) []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		nameColumn,
		{Name: "Role", Type: "string", Description: rbacv1.RoleBinding{}.SwaggerDoc()["roleRef"]},
		ageColumn,
		{Name: "Users", Type: "string", Priority: 1, Description: "Users in the " + what},
		{Name: "Groups", Type: "string", Priority: 1, Description: "Groups in the " + what},
		{Name: "ServiceAccounts", Type: "string", Priority: 1, Description: "ServiceAccounts in the " + what},
	}
}

func roleBindingRow(c clock, b *rbacv1.RoleBinding) []any {
	return bindingRow(c, &b.ObjectMeta, b.RoleRef, b.Subjects)
}

func clusterRoleBindingRow(c clock, b *rbacv1.ClusterRoleBinding) []any {
	return bindingRow(c, &b.ObjectMeta, b.RoleRef, b.Subjects)
}

func bindingRow(c clock, m *metav1.ObjectMeta, ref rbacv1.RoleRef, subjects []rbacv1.Subject) []any {
	var users, groups, sas []string
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			sas = append(sas, s.Namespace+"/"+s.Name)
		case rbacv1.UserKind:
			users = append(users, s.Name)
		case rbacv1.GroupKind:
			groups = append(groups, s.Name)
		}
	}
	return []any{m.Name, fmt.Sprintf("%s/%s", ref.Kind, ref.Name), c.since(m.CreationTimestamp),
		strings.Join(users, ", "), strings.Join(groups, ", "), strings.Join(sas, ", ")}
}
