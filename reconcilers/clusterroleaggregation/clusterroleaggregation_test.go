package clusterroleaggregation_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/clusterroleaggregation"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/registry"
)

// TestAggregation: a ClusterRole with an aggregationRule gathers the rules of the roles its
// selectors match, and follows them when they change, are labelled away or appear.
func TestAggregation(t *testing.T) {
	ctx := t.Context()
	l := eventlogtest.Open(t)
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(ctx, l)
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(store, engine.Options{Registry: reg})
	if _, err := clusterroleaggregation.New(e, clusterroleaggregation.Config{}); err != nil {
		t.Fatal(err)
	}
	go e.Run(ctx)
	k, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterroles"})
	admin := registry.Request{Actor: registry.User("admin")}
	label := map[string]string{"example.com/aggregate-to-monitor": "true"}
	pods := rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}
	nodes := rbacv1.PolicyRule{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"nodes"}}
	create := func(cr *rbacv1.ClusterRole) {
		t.Helper()
		if _, err := reg.Create(ctx, k, cr, admin); err != nil {
			t.Fatal(err)
		}
	}
	create(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "monitor"}, AggregationRule: &rbacv1.AggregationRule{
		ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: label}}}})
	create(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "a-pods", Labels: label}, Rules: []rbacv1.PolicyRule{pods}})
	create(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "b-other"}, Rules: []rbacv1.PolicyRule{nodes}})
	rulesOf := func() []rbacv1.PolicyRule {
		o, ok := store.Get(eventlog.Key{Group: rbacv1.GroupName, Resource: "clusterroles", Name: "monitor"})
		if !ok {
			return nil
		}
		obj, err := o.Decode()
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*rbacv1.ClusterRole).Rules
	}
	waitRules := func(want ...rbacv1.PolicyRule) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !equality.Semantic.DeepEqual(rulesOf(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("monitor's rules %v, want %v", rulesOf(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitRules(pods)
	// Another role labelled for it joins; its rules follow the pods role's (by name).
	if _, err := reg.Modify(ctx, k, "", "b-other", admin, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		cur.(*rbacv1.ClusterRole).Labels = label
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitRules(pods, nodes)
	// Deleting a part takes its rules away.
	if _, _, err := reg.Delete(ctx, k, "", "a-pods", metav1.DeleteOptions{}, admin); err != nil {
		t.Fatal(err)
	}
	waitRules(nodes)
}

// TestDefaultRolesAggregated: in a control plane with every reconciler, Kubernetes' admin,
// edit and view roles gather their system:aggregate-to-* parts, so that view lets one read
// pods, edit also write them, and admin also write roles; kubectl auth can-i answers so for a
// user bound to each.
func TestDefaultRolesAggregated(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true})
	for _, who := range []string{"viewer:view", "editor:edit", "boss:admin"} {
		user, role, _ := strings.Cut(who, ":")
		c.MustKubectl("create", "rolebinding", user, "--clusterrole="+role, "--user="+user, "-n", "default")
	}
	for _, tc := range []struct {
		user, verb, resource string
		want                 string
	}{
		{"viewer", "list", "pods", "yes"},
		{"viewer", "create", "pods", "no"},
		{"editor", "create", "pods", "yes"},
		{"editor", "create", "roles", "no"},
		{"boss", "create", "roles", "yes"},
		{"boss", "create", "pods", "yes"},
	} {
		c.Eventually(20*time.Second, func() (bool, string) {
			out, _ := c.Kubectl("auth", "can-i", tc.verb, tc.resource, "-n", "default", "--as", tc.user)
			return strings.TrimSpace(out) == tc.want, fmt.Sprintf("can-i %s %s --as %s: %q, want %s", tc.verb, tc.resource, tc.user, out, tc.want)
		})
	}
}
