package rbac_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/logplane/logplane/apiserver/rbac"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// TestRuleAllows: Kubernetes' matching of verbs, groups, resources with */subresource,
// resource names and non-resource URLs with a trailing *.
func TestRuleAllows(t *testing.T) {
	res := func(verb, group, resource, sub, name string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, Name: name, ResourceRequest: true}
	}
	path := func(verb, p string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{Verb: verb, Path: p}
	}
	for _, tc := range []struct {
		name  string
		rule  rbacv1.PolicyRule
		attrs authorizer.AttributesRecord
		want  bool
	}{
		{"exact", rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}, res("get", "", "pods", "", "p"), true},
		{"other verb", rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}, res("list", "", "pods", "", ""), false},
		{"other group", rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"deployments"}}, res("get", "apps", "deployments", "", ""), false},
		{"resource is not its subresource", rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}, res("get", "", "pods", "log", "p"), false},
		{"*/subresource", rbacv1.PolicyRule{Verbs: []string{"update"}, APIGroups: []string{"*"}, Resources: []string{"*/status"}}, res("update", "apps", "deployments", "status", "d"), true},
		{"*/subresource is not another", rbacv1.PolicyRule{Verbs: []string{"update"}, APIGroups: []string{"*"}, Resources: []string{"*/status"}}, res("update", "apps", "deployments", "scale", "d"), false},
		{"named", rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"a"}}, res("get", "", "secrets", "", "a"), true},
		{"named, list of all", rbacv1.PolicyRule{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"a"}}, res("list", "", "secrets", "", ""), false},
		{"url prefix", rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/apis/*"}}, path("get", "/apis/apps/v1"), true},
		{"url exact only", rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/version"}}, path("get", "/version/x"), false},
		{"url rule, resource request", rbacv1.PolicyRule{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}, res("get", "", "pods", "", ""), false},
	} {
		if got := rbac.RuleAllows(tc.attrs, &tc.rule); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

type env struct {
	t   *testing.T
	reg *registry.Registry
	st  *projections.Store
	a   *rbac.Authorizer
}

func newEnv(t *testing.T) *env {
	ctx := t.Context()
	l := eventlogtest.Open(t)
	st := projections.New(builtin.Catalog(), nil)
	go st.Run(ctx, l)
	reg, err := registry.New(registry.Config{Log: l, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	a := rbac.New(st)
	cancel, err := a.Sync()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	e := &env{t, reg, st, a}
	for _, ns := range []string{"a", "b"} {
		e.create("namespaces", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	return e
}

// create writes obj and waits until the authorizer has it.
func (e *env) create(resource string, obj runtime.Object) {
	e.t.Helper()
	group := rbacv1.GroupName
	if resource == "namespaces" {
		group = ""
	}
	k, _ := e.reg.Catalog().ByGroupResource(schema.GroupResource{Group: group, Resource: resource})
	if _, err := e.reg.Create(e.t.Context(), k, obj, registry.Request{Actor: registry.User("admin")}); err != nil {
		e.t.Fatal(err)
	}
	e.sync()
}

func (e *env) delete(resource, ns, name string) {
	e.t.Helper()
	k, _ := e.reg.Catalog().ByGroupResource(schema.GroupResource{Group: rbacv1.GroupName, Resource: resource})
	if _, _, err := e.reg.Delete(e.t.Context(), k, ns, name, metav1.DeleteOptions{}, registry.Request{Actor: registry.User("admin")}); err != nil {
		e.t.Fatal(err)
	}
	e.sync()
}

func (e *env) sync() {
	if err := e.st.WaitDelivered(e.t.Context(), e.st.Applied()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) decide(u user.Info, verb, resource, ns string) (bool, string) {
	d, reason, err := e.a.Authorize(context.Background(), authorizer.AttributesRecord{User: u, Verb: verb, Resource: resource, Namespace: ns, ResourceRequest: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return d == authorizer.DecisionAllow, reason
}

var podReader = []rbacv1.PolicyRule{{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods"}}}

func binding(name, ns, kind, role string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role}, Subjects: subjects}
}

// TestAuthorizer: subjects match as Kubernetes matches them (users, groups, service accounts
// defaulting to the binding's namespace), rights follow roles and bindings as they change,
// and a binding to a missing role says so in the reason.
func TestAuthorizer(t *testing.T) {
	e := newEnv(t)
	alice := &user.DefaultInfo{Name: "alice", Groups: []string{"devs"}}
	bob := &user.DefaultInfo{Name: "bob", Groups: []string{"ops"}}
	robot := &user.DefaultInfo{Name: "system:serviceaccount:a:robot", Groups: []string{"system:serviceaccounts"}}
	e.create("roles", &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: "a"}, Rules: podReader})
	e.create("rolebindings", binding("devs", "a", "Role", "pod-reader",
		rbacv1.Subject{Kind: "Group", APIGroup: rbacv1.GroupName, Name: "devs"},
		rbacv1.Subject{Kind: "ServiceAccount", Name: "robot"}))
	for _, tc := range []struct {
		u            user.Info
		verb, res, n string
		want         bool
	}{
		{alice, "get", "pods", "a", true},
		{alice, "delete", "pods", "a", false},
		{alice, "get", "pods", "b", false},
		{alice, "get", "pods", "", false},
		{bob, "get", "pods", "a", false},
		{robot, "list", "pods", "a", true},
	} {
		if got, _ := e.decide(tc.u, tc.verb, tc.res, tc.n); got != tc.want {
			t.Errorf("%s %s %s in %q: %v, want %v", tc.u.GetName(), tc.verb, tc.res, tc.n, got, tc.want)
		}
	}
	if _, reason := e.decide(alice, "get", "pods", "a"); reason != `RBAC: allowed by RoleBinding "devs/a" of Role "pod-reader" to Group "devs"` {
		t.Errorf("reason %q", reason)
	}
	// A service account in a cluster role binding needs its namespace.
	e.create("clusterroles", &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "pods-everywhere"}, Rules: podReader})
	e.create("clusterrolebindings", &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bob"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "pods-everywhere"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "bob"}, {Kind: "ServiceAccount", Namespace: "a", Name: "robot"}}})
	for _, u := range []user.Info{bob, robot} {
		if ok, _ := e.decide(u, "list", "pods", "b"); !ok {
			t.Errorf("%s may not list pods in b through the cluster role binding", u.GetName())
		}
		if ok, _ := e.decide(u, "list", "pods", ""); !ok {
			t.Errorf("%s may not list pods of all namespaces", u.GetName())
		}
	}
	// Deleting the role takes the rights away; the binding's reason says what is missing.
	e.delete("roles", "a", "pod-reader")
	if ok, reason := e.decide(alice, "get", "pods", "a"); ok || !strings.Contains(reason, `roles.rbac.authorization.k8s.io "pod-reader" not found`) {
		t.Errorf("after the role's deletion: %v %q", ok, reason)
	}
	e.delete("clusterrolebindings", "", "bob")
	if ok, _ := e.decide(bob, "list", "pods", "b"); ok {
		t.Error("bob keeps his rights after his binding's deletion")
	}
}

// TestCheckWrite: escalation prevention on roles and bindings.
func TestCheckWrite(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	alice := &user.DefaultInfo{Name: "alice"}
	admin := &user.DefaultInfo{Name: "root", Groups: []string{user.SystemPrivilegedGroup}}
	e.create("roles", &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "a"}, Rules: append([]rbacv1.PolicyRule{
		{Verbs: []string{"create", "update"}, APIGroups: []string{rbacv1.GroupName}, Resources: []string{"roles", "rolebindings"}},
		{Verbs: []string{"bind"}, APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles"}, ResourceNames: []string{"bindable"}},
	}, podReader...)})
	e.create("rolebindings", binding("alice", "a", "Role", "alice", rbacv1.Subject{Kind: "User", APIGroup: rbacv1.GroupName, Name: "alice"}))
	secrets := []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"secrets"}}}
	e.create("clusterroles", &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "bindable"}, Rules: secrets})
	e.create("clusterroles", &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "secrets"}, Rules: secrets})
	check := func(u user.Info, obj runtime.Object) error { return e.a.CheckWrite(ctx, e.a, u, obj, nil) }

	if err := check(alice, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "a"}, Rules: podReader}); err != nil {
		t.Errorf("a role with alice's own rights: %v", err)
	}
	err := check(alice, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "a"}, Rules: secrets})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `user "alice" (groups=[]) is attempting to grant RBAC permissions not currently held:`+"\n"+`{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`) {
		t.Errorf("a role with more: %v", err)
	}
	if err := check(admin, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "a"}, Rules: secrets}); err != nil {
		t.Errorf("system:masters: %v", err)
	}
	// bind on a role lets a binding to it through; without it, its rules must be held.
	if err := check(alice, binding("x", "a", "ClusterRole", "bindable", rbacv1.Subject{Kind: "User", APIGroup: rbacv1.GroupName, Name: "bob"})); err != nil {
		t.Errorf("binding a role alice may bind: %v", err)
	}
	if err := check(alice, binding("x", "a", "ClusterRole", "secrets", rbacv1.Subject{Kind: "User", APIGroup: rbacv1.GroupName, Name: "bob"})); !apierrors.IsForbidden(err) {
		t.Errorf("binding a role with more: %v", err)
	}
	if err := check(alice, binding("x", "a", "ClusterRole", "missing")); !apierrors.IsNotFound(err) {
		t.Errorf("binding a missing role: %v", err)
	}
	// An aggregation rule needs every right.
	agg := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "agg"}, AggregationRule: &rbacv1.AggregationRule{
		ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"x": "y"}}}}}
	e.create("clusterroles", &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "role-writer"}, Rules: []rbacv1.PolicyRule{
		{Verbs: []string{"create"}, APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles"}}}})
	e.create("clusterrolebindings", &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice-role-writer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "role-writer"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "alice"}}})
	if err := check(alice, agg); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "must have cluster-admin privileges to use the aggregationRule") {
		t.Errorf("an aggregation rule: %v", err)
	}
}
