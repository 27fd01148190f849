package validation_test

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/validation"
)

// TestRBAC: Kubernetes' RBAC validation, with the field paths it reports, and unknown verbs.
func TestRBAC(t *testing.T) {
	role := func(rules ...rbacv1.PolicyRule) *rbacv1.Role {
		return &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "default"}, Rules: rules}
	}
	pods := rbacv1.PolicyRule{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods"}}
	for _, tc := range []struct {
		name string
		errs []string
	}{
		{"valid", nil},
		{"no verbs", []string{"rules[0].verbs: Required value"}},
		{"unknown verb", []string{`rules[0].verbs[1]: Unsupported value: "lsit"`}},
		{"no groups", []string{"rules[0].apiGroups: Required value"}},
		{"urls in a role", []string{"rules[0].nonResourceURLs: Invalid value"}},
		{"bad name", []string{"metadata.name: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := role(pods)
			switch tc.name {
			case "no verbs":
				r.Rules[0].Verbs = nil
			case "unknown verb":
				r.Rules[0].Verbs = []string{"get", "lsit"}
			case "no groups":
				r.Rules[0].APIGroups = nil
			case "urls in a role":
				r.Rules = []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz"}}}
			case "bad name":
				r.Name = "a/b"
			}
			errs := validation.Role(r)
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %v, want %v", errs, tc.errs)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), tc.errs[i]) {
					t.Errorf("error %q, want %q", e.Error(), tc.errs[i])
				}
			}
		})
	}
	b := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "b"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "r"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "sa"}, {Kind: "Robot", Name: "x"}}}
	got := validation.ClusterRoleBinding(b).ToAggregate().Error()
	for _, want := range []string{`roleRef.kind: Unsupported value: "Role"`, "subjects[0].namespace: Required value", `subjects[1].kind: Unsupported value: "Robot"`} {
		if !strings.Contains(got, want) {
			t.Errorf("%s\nlacks %s", got, want)
		}
	}
	old := b.DeepCopy()
	b.RoleRef.Kind, b.Subjects = "ClusterRole", nil
	if errs := validation.ClusterRoleBindingUpdate(b, old); !strings.Contains(errs.ToAggregate().Error(), "roleRef: Invalid value") {
		t.Errorf("a changed roleRef: %v", errs)
	}
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "c"}, AggregationRule: &rbacv1.AggregationRule{}}
	if errs := validation.ClusterRole(cr); len(errs) != 1 || !strings.Contains(errs[0].Error(), "aggregationRule.clusterRoleSelectors: Required value") {
		t.Errorf("an empty aggregation rule: %v", errs)
	}
}
