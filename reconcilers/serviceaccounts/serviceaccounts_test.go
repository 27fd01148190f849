package serviceaccounts_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/serviceaccounts"
	"github.com/logplane/logplane/registry"
)

func TestEveryNamespaceGetsItsDefaultAccount(t *testing.T) {
	ctx := t.Context()
	l := eventlogtest.Open(t)
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(ctx, l)
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(store, engine.Options{Registry: reg})
	if _, err := serviceaccounts.New(e, serviceaccounts.Config{}); err != nil {
		t.Fatal(err)
	}
	go e.Run(ctx)

	nsKind, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "namespaces"})
	saKind, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "serviceaccounts"})
	if _, err := reg.Create(ctx, nsKind, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}, registry.Request{Actor: registry.User("admin")}); err != nil {
		t.Fatal(err)
	}
	key := eventlog.Key{Resource: "serviceaccounts", Namespace: "team-a", Name: "default"}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the default account", func() bool { _, ok := store.Get(key); return ok })

	// Deleted, it comes back.
	first, _ := store.Get(key)
	if _, _, err := reg.Delete(ctx, saKind, "team-a", "default", metav1.DeleteOptions{}, registry.Request{Actor: registry.User("admin")}); err != nil {
		t.Fatal(err)
	}
	waitFor("the account made again", func() bool { o, ok := store.Get(key); return ok && o.Seq != first.Seq })
}
