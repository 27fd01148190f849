package recorder_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

func TestAggregatesRepeats(t *testing.T) {
	ctx := t.Context()
	l := eventlogtest.Open(t)
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(ctx, l)
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	cat := builtin.Catalog()
	nsKind, _ := cat.ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
	if _, err := reg.Create(ctx, nsKind, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, registry.Request{Actor: registry.System("test")}); err != nil {
		t.Fatal(err)
	}
	podKind, _ := cat.ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
	pod, err := reg.Create(ctx, podKind, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "hello"}}},
	}, registry.Request{Actor: registry.User("admin")})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.New(recorder.Config{Registry: reg, Actor: registry.Reconciler("test"), Source: corev1.EventSource{Component: "kubelet", Host: "node-1"}, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	go rec.Run(ctx)
	for i := 0; i < 3; i++ {
		rec.Event(pod, 0, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container web in pod web_default")
	}
	rec.Event(pod, 0, corev1.EventTypeNormal, "Pulled", "Container image \"hello\" already present on machine")

	evKind, _ := cat.ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Event"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		objs, _, err := reg.List(ctx, evKind, registry.Query{Namespace: "default", Fields: fields.OneTermEqualSelector("involvedObject.name", "web")}, registry.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int32{}
		for _, o := range objs {
			obj, err := o.Decode()
			if err != nil {
				t.Fatal(err)
			}
			e := obj.(*corev1.Event)
			counts[e.Reason] += e.Count
			if e.Source.Component != "kubelet" || e.InvolvedObject.UID != pod.(*corev1.Pod).UID {
				t.Fatalf("event %+v", e)
			}
		}
		if len(objs) == 2 && counts["BackOff"] == 3 && counts["Pulled"] == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events: %d objects, counts %v; want 2 objects, BackOff 3 and Pulled 1", len(objs), counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Events about one object at one instant (a stepped clock, or a coarse one) are each kept:
// their names, made of the time as client-go makes them, never collide.
func TestEventsAtOneInstant(t *testing.T) {
	ctx := t.Context()
	l := eventlogtest.Open(t)
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(ctx, l)
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	cat := builtin.Catalog()
	nsKind, _ := cat.ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
	if _, err := reg.Create(ctx, nsKind, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, registry.Request{Actor: registry.System("test")}); err != nil {
		t.Fatal(err)
	}
	nodeKind, _ := cat.ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Node"})
	node, err := reg.Create(ctx, nodeKind, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, registry.Request{Actor: registry.User("admin")})
	if err != nil {
		t.Fatal(err)
	}
	clk := testingclock.NewFakeClock(time.Unix(1000, 0))
	rec, err := recorder.New(recorder.Config{Registry: reg, Actor: registry.Reconciler("test"), Source: corev1.EventSource{Component: "kubelet", Host: "node-1"}, Workers: 1, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	go rec.Run(ctx)
	reasons := []string{"NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", "NodeReady"}
	for _, r := range reasons {
		rec.Event(node, 0, corev1.EventTypeNormal, r, "Node node-1 status is now: "+r)
	}
	evKind, _ := cat.ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Event"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		objs, _, err := reg.List(ctx, evKind, registry.Query{Fields: fields.OneTermEqualSelector("involvedObject.name", "node-1")}, registry.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) == len(reasons) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Events about node-1, want %d (one per reason)", len(objs), len(reasons))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
