package ownerref_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/ownerref"
	"github.com/logplane/logplane/registry"
)

// AdoptOrphans adopts the orphans the selector and match accept, and no other: not one of
// another namespace, not one with other labels, not one match refuses.
func TestAdoptOrphans(t *testing.T) {
	ctx := t.Context()
	l := eventlogtest.Open(t)
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(ctx, l)
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	podsGR := schema.GroupResource{Resource: "pods"}
	nsKind, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "namespaces"})
	pods, _ := reg.Catalog().ByGroupResource(podsGR)
	for _, ns := range []string{"default", "other"} {
		if _, err := reg.Create(ctx, nsKind, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, registry.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	ix := informer.New(nil, podsGR)
	stop := store.Subscribe(func(c projections.Change) { ix.Observe(c) })
	defer stop()
	ix.Load(store)
	for _, p := range []struct{ ns, name, app string }{
		{"default", "web-1", "web"}, {"default", "web-2", "web"}, {"default", "db-1", "db"}, {"other", "web-3", "web"},
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.ns, Labels: map[string]string{"app": p.app}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := reg.Create(ctx, pods, pod, registry.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(ix.Orphans(podsGR, "default")) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the index never had the three orphans of default")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ref := ownerref.Controller("apps/v1", "ReplicaSet", "web", "uid-web")
	notTwo := func(p *corev1.Pod) bool { return p.Name != "web-2" }
	adopted, err := ownerref.AdoptOrphans(ctx, reg, ix, pods, "default", labels.SelectorFromSet(labels.Set{"app": "web"}), notTwo, ref, registry.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if len(adopted) != 1 || adopted[0].Name != "web-1" {
		t.Fatalf("adopted %d pods, want web-1 alone", len(adopted))
	}
	if c := metav1.GetControllerOfNoCopy(adopted[0]); c == nil || c.UID != "uid-web" {
		t.Errorf("web-1 as written has controller %v", c)
	}
}
