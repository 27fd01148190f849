package informer_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

func setup(t *testing.T) (*projections.Store, *registry.Registry) {
	t.Helper()
	l := eventlogtest.Open(t)
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(t.Context(), l)
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "namespaces"})
	if _, err := reg.Create(t.Context(), ns, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, registry.Request{}); err != nil {
		t.Fatal(err)
	}
	return store, reg
}

func ownedConfigMap(name string, owner types.UID) *corev1.ConfigMap {
	t := true
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Finalizers: []string{"example.com/keep"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "owner", UID: owner, Controller: &t}}}}
}

// The index holds what existed before it started and what changes after, the dependents of an
// owner by uid, decoded objects of kept resources only, and the cause of the last spec change.
func TestIndex(t *testing.T) {
	store, reg := setup(t)
	ctx := t.Context()
	cms, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "configmaps"})
	pods, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "pods"})
	if _, err := reg.Create(ctx, cms, ownedConfigMap("before", "u1"), registry.Request{}); err != nil {
		t.Fatal(err)
	}
	ix := informer.New(nil, schema.GroupResource{Resource: "pods"})
	stop := store.Subscribe(func(c projections.Change) { ix.Observe(c) })
	defer stop()
	ix.Load(store)
	if _, err := reg.Create(ctx, cms, ownedConfigMap("after", "u1"), registry.Request{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	created, err := reg.Create(ctx, pods, pod, registry.Request{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("index never got %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("both dependents", func() bool { return len(ix.Dependents("u1")) == 2 })
	before := eventlog.Key{Resource: "configmaps", Namespace: "default", Name: "before"}
	m, ok := ix.Meta(before)
	if !ok || len(m.Finalizers) != 1 || m.Controller() == nil || m.Controller().UID != "u1" || m.Deleting {
		t.Errorf("meta of before: %+v", m)
	}
	if _, ok := ix.Object(before); ok {
		t.Error("configmaps are not kept, yet the index has a decoded one")
	}
	podKey := eventlog.Key{Resource: "pods", Namespace: "default", Name: "p"}
	waitFor("the pod", func() bool { _, ok := ix.Object(podKey); return ok })
	podsGR := schema.GroupResource{Resource: "pods"}
	if p, ok := informer.Get[*corev1.Pod](ix, podsGR, podKey); !ok || p.Name != "p" {
		t.Errorf("Get of the pod: %v, %v", p, ok)
	}
	if _, ok := informer.Get[*corev1.ConfigMap](ix, podsGR, podKey); ok {
		t.Error("Get of the pod as a ConfigMap: found")
	}
	if _, ok := informer.Get[*corev1.Pod](ix, schema.GroupResource{Resource: "configmaps"}, podKey); ok {
		t.Error("Get of the pod's key as another resource: found")
	}
	if pm, _ := ix.Meta(podKey); pm.SpecSeq == 0 || pm.UID != created.(*corev1.Pod).UID {
		t.Errorf("pod meta %+v", pm)
	}
	// A status change keeps the spec cause; a delete with a finalizer marks it deleting; the
	// deletion of the other removes it from its owner's dependents.
	spec, _ := ix.Meta(podKey)
	if _, err := reg.Modify(ctx, pods, "default", "p", registry.Request{}, registry.UpdateOptions{Subresource: "status"}, func(cur runtime.Object) (runtime.Object, error) {
		cur.(*corev1.Pod).Status.Message = "hello"
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor("the status change", func() bool { m, _ := ix.Meta(podKey); return m.Seq > spec.Seq })
	if m, _ := ix.Meta(podKey); m.SpecSeq != spec.SpecSeq {
		t.Errorf("a status change moved the spec cause from %d to %d", spec.SpecSeq, m.SpecSeq)
	}
	if _, _, err := reg.Delete(ctx, cms, "default", "before", metav1.DeleteOptions{}, registry.Request{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the deletion mark", func() bool { m, _ := ix.Meta(before); return m.Deleting })
	after := eventlog.Key{Resource: "configmaps", Namespace: "default", Name: "after"}
	if _, err := reg.Modify(ctx, cms, "default", "after", registry.Request{}, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		cur.(*corev1.ConfigMap).Finalizers = nil
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Delete(ctx, cms, "default", "after", metav1.DeleteOptions{}, registry.Request{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the deletion", func() bool { _, ok := ix.Meta(after); return !ok })
	if deps := ix.Dependents("u1"); len(deps) != 1 || deps[0] != before {
		t.Errorf("dependents of u1: %v", deps)
	}
	if n := ix.Undecodable(); n != 0 {
		t.Errorf("%d undecodable", n)
	}
}
