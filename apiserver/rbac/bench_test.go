package rbac_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/logplane/logplane/apiserver/rbac"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// BenchmarkAuthorize measures RBAC decisions over 1,000 Roles and 1,000 RoleBindings (one per
// user, 10 namespaces) and Kubernetes' default cluster roles and bindings: a user allowed by
// its binding, and one denied.
func BenchmarkAuthorize(b *testing.B) {
	a, users := authorizerWith(b, 1000)
	for _, bc := range []struct {
		name  string
		attrs authorizer.AttributesRecord
		want  authorizer.Decision
	}{
		{"allowed", authorizer.AttributesRecord{User: users[500], Verb: "get", Resource: "pods", Namespace: "ns-0", Name: "p", ResourceRequest: true}, authorizer.DecisionAllow},
		{"denied", authorizer.AttributesRecord{User: users[500], Verb: "delete", Resource: "secrets", Namespace: "ns-1", Name: "s", ResourceRequest: true}, authorizer.DecisionNoOpinion},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if d, _, _ := a.Authorize(ctx, bc.attrs); d != bc.want {
					b.Fatalf("decision %v, want %v", d, bc.want)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
		})
	}
}

// authorizerWith makes n Roles and RoleBindings (role i lets user-i get pods in ns-(i%10)) and
// the default cluster roles and bindings, in a real log, and returns an authorizer over them.
func authorizerWith(tb testing.TB, n int) (*rbac.Authorizer, []user.Info) {
	ctx := tb.Context()
	l := eventlogtest.Open(tb)
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(ctx, l)
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		tb.Fatal(err)
	}
	kind := func(r string) *kinds.Kind {
		k, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Group: rbacv1.GroupName, Resource: r})
		return k
	}
	req := registry.Request{Actor: registry.User("admin")}
	create := func(r string, obj runtime.Object) {
		if _, err := reg.Create(ctx, kind(r), obj, req); err != nil {
			tb.Fatal(err)
		}
	}
	nsKind, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "namespaces"})
	for i := 0; i < 10; i++ {
		if _, err := reg.Create(ctx, nsKind, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%d", i)}}, req); err != nil {
			tb.Fatal(err)
		}
	}
	for _, r := range rbac.ClusterRoles() {
		create("clusterroles", r)
	}
	for _, b := range rbac.ClusterRoleBindings() {
		create("clusterrolebindings", b)
	}
	var users []user.Info
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("ns-%d", i%10)
		name := fmt.Sprintf("user-%d", i)
		create("roles", &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Rules: []rbacv1.PolicyRule{{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods", "configmaps"}}}})
		create("rolebindings", &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: name}}})
		users = append(users, &user.DefaultInfo{Name: name, Groups: []string{"devs", user.AllAuthenticated}})
	}
	a := rbac.New(store)
	cancel, err := a.Sync()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cancel)
	return a, users
}
