package addressrepair_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/addressrepair"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/registry"
)

type env struct {
	log   *eventlog.Log
	store *projections.Store
	reg   *registry.Registry
	e     *engine.Engine
	clk   *testingclock.FakeClock
}

func start(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	l := eventlogtest.Open(t)
	clk := testingclock.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	store := projections.New(builtin.Catalog(), nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = store.Run(ctx, l) // ends with the test
	}()
	t.Cleanup(func() { <-done })
	reg, err := registry.New(registry.Config{Log: l, Store: store, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	en := &env{log: l, store: store, reg: reg, clk: clk}
	if _, err := reg.Create(ctx, en.kind("", "namespaces"), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, registry.Request{}); err != nil {
		t.Fatal(err)
	}
	en.e = engine.New(store, engine.Options{Registry: reg, Clock: clk})
	if _, err := addressrepair.New(en.e, addressrepair.Config{}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() { errs <- en.e.Run(ctx) }()
	t.Cleanup(func() {
		if err := <-errs; err != nil && ctx.Err() == nil {
			t.Error(err)
		}
	})
	return en
}

func (en *env) kind(group, resource string) *kinds.Kind {
	k, ok := en.reg.Catalog().ByGroupResource(schema.GroupResource{Group: group, Resource: resource})
	if !ok {
		panic(resource)
	}
	return k
}

// settle waits until the reconcilers have handled everything the log holds so far.
func (en *env) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := en.e.WaitReconciled(ctx, en.store.Applied()); err != nil {
		t.Fatal(err)
	}
}

func ipKey(ip string) eventlog.Key {
	return eventlog.Key{Group: "networking.k8s.io", Resource: "ipaddresses", Name: ip}
}

func (en *env) holder(t *testing.T, key eventlog.Key) string {
	t.Helper()
	o, ok := en.store.Get(key)
	if !ok {
		return ""
	}
	if key.Resource == "servicenodeports" {
		ns, name := registry.NodePortParent(o)
		return ns + "/" + name
	}
	obj, err := o.Decode()
	if err != nil {
		t.Fatal(err)
	}
	ref := obj.(*networkingv1.IPAddress).Spec.ParentRef
	return ref.Namespace + "/" + ref.Name
}

func (en *env) events(t *testing.T, reason string) int {
	t.Helper()
	objs, _ := en.store.List(projections.Query{Resource: schema.GroupResource{Resource: "events"}})
	n := 0
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if obj.(*corev1.Event).Reason == reason {
			n++
		}
	}
	return n
}

// waitEvent waits for an Event of that reason, which the recorder writes on its own time.
func (en *env) waitEvent(t *testing.T, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for en.events(t, reason) == 0 {
		if err := en.store.WaitFor(ctx, en.store.Applied()+1); err != nil {
			t.Fatalf("no %s Event: %v", reason, err)
		}
	}
}

// TestMissingAllocationsAreMade: a Service whose IPAddress and node port object are deleted
// gets them back, naming it, with ClusterIPNotAllocated and PortNotAllocated Events.
func TestMissingAllocationsAreMade(t *testing.T) {
	en := start(t)
	ctx := t.Context()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.3.3",
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30033}}}}
	if _, err := en.reg.Create(ctx, en.kind("", "services"), svc, registry.Request{}); err != nil {
		t.Fatal(err)
	}
	en.settle(t)
	if _, _, err := en.reg.Delete(ctx, en.kind("networking.k8s.io", "ipaddresses"), "", "10.96.3.3", metav1.DeleteOptions{}, registry.Request{}); err != nil {
		t.Fatal(err)
	}
	// The recorder names an Event by its object and the clock's time: two Events about one
	// object at one instant of the fake clock would collide, so the port goes a second later.
	en.settle(t)
	en.clk.Step(time.Second)
	o, _ := en.store.Get(registry.NodePortKey(30033))
	if err := en.reg.DeleteNodePort(ctx, eventlog.Record{Seq: o.Seq, Event: o.Event}, registry.Request{}); err != nil {
		t.Fatal(err)
	}
	en.settle(t)
	if h := en.holder(t, ipKey("10.96.3.3")); h != "default/web" {
		t.Errorf("IPAddress 10.96.3.3 held by %q after the repair, want default/web", h)
	}
	if h := en.holder(t, registry.NodePortKey(30033)); h != "default/web" {
		t.Errorf("node port 30033 held by %q after the repair, want default/web", h)
	}
	for _, reason := range []string{"ClusterIPNotAllocated", "PortNotAllocated"} {
		en.waitEvent(t, reason)
	}
}

// TestLeakedAllocationsAreDeleted: an IPAddress and a node port object naming a Service that
// does not exist stay for the grace period (the Service may still be being written), then are
// deleted; an IPAddress naming an existing Service that does not hold it, newer than the
// Service, is deleted after 5 s; those the Services hold stay.
func TestLeakedAllocationsAreDeleted(t *testing.T) {
	en := start(t)
	ctx := t.Context()
	ipKind := en.kind("networking.k8s.io", "ipaddresses")
	newIP := func(ip, svc string) {
		t.Helper()
		a := &networkingv1.IPAddress{ObjectMeta: metav1.ObjectMeta{Name: ip, Labels: map[string]string{
			networkingv1.LabelIPAddressFamily: "IPv4", networkingv1.LabelManagedBy: registry.IPAllocatorName}},
			Spec: networkingv1.IPAddressSpec{ParentRef: &networkingv1.ParentReference{Resource: "services", Namespace: "default", Name: svc}}}
		if _, err := en.reg.Create(ctx, ipKind, a, registry.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.4.4",
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30044}}}}
	if _, err := en.reg.Create(ctx, en.kind("", "services"), svc, registry.Request{}); err != nil {
		t.Fatal(err)
	}
	en.clk.Step(time.Second) // the stray objects are newer than the Service
	newIP("10.96.4.5", "ghost")
	newIP("10.96.4.6", "web")
	if err := en.reg.CreateNodePort(ctx, 30045, networkingv1.ParentReference{Resource: "services", Namespace: "default", Name: "ghost"}, registry.Request{}); err != nil {
		t.Fatal(err)
	}
	en.settle(t)
	for _, k := range []eventlog.Key{ipKey("10.96.4.5"), ipKey("10.96.4.6"), registry.NodePortKey(30045)} {
		if _, ok := en.store.Get(k); !ok {
			t.Fatalf("%s deleted within its grace period", k)
		}
	}
	en.clk.Step(addressrepair.NewerGrace + time.Second)
	en.settle(t)
	if _, ok := en.store.Get(ipKey("10.96.4.6")); ok {
		t.Error("IPAddress 10.96.4.6, naming web which does not hold it, kept after 5 s")
	}
	if _, ok := en.store.Get(ipKey("10.96.4.5")); !ok {
		t.Error("IPAddress 10.96.4.5 of a missing Service deleted before 60 s")
	}
	en.clk.Step(addressrepair.LeakGrace)
	en.settle(t)
	for _, k := range []eventlog.Key{ipKey("10.96.4.5"), registry.NodePortKey(30045)} {
		if _, ok := en.store.Get(k); ok {
			t.Errorf("%s of a Service that does not exist kept after the grace period", k)
		}
	}
	if h := en.holder(t, ipKey("10.96.4.4")); h != "default/web" {
		t.Errorf("web's own IPAddress held by %q", h)
	}
	if h := en.holder(t, registry.NodePortKey(30044)); h != "default/web" {
		t.Errorf("web's own node port held by %q", h)
	}
}
