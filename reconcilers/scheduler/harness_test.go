package scheduler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/scheduler"
	"github.com/logplane/logplane/registry"
)

var catalog = builtin.Catalog()

func kindOf(resource string) *kinds.Kind {
	k, ok := catalog.ByGroupResource(schema.GroupResource{Resource: resource})
	if !ok {
		panic(resource)
	}
	return k
}

// cluster is a real log, its projection, and a scheduler on an engine, all running until the
// test ends.
type cluster struct {
	t      testing.TB
	log    *eventlog.Log
	store  *projections.Store
	reg    *registry.Registry
	sched  *scheduler.Scheduler
	engine *engine.Engine
	stop   func()
}

// option changes the scheduler's configuration or its engine's options.
type option func(*scheduler.Config, *engine.Options)

func newCluster(t testing.TB, l *eventlog.Log, opts ...option) *cluster {
	t.Helper()
	return newReplica(t, l, engine.Options{}, opts...)
}

// newReplica is newCluster with the engine options of a replica among others (leases, holder).
func newReplica(t testing.TB, l *eventlog.Log, eopts engine.Options, opts ...option) *cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	store := projections.New(catalog, nil)
	storeDone := make(chan struct{})
	go func() { defer close(storeDone); store.Run(ctx, l) }()
	reg, err := registry.New(registry.Config{Log: l, Store: store, Catalog: catalog})
	if err != nil {
		t.Fatal(err)
	}
	eopts.Registry = reg
	cfg := scheduler.Config{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	for _, o := range opts {
		o(&cfg, &eopts)
	}
	e := engine.New(store, eopts)
	s, err := scheduler.New(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 1)
	go func() { e.Run(ctx); done <- struct{}{} }()
	c := &cluster{t: t, log: l, store: store, reg: reg, sched: s, engine: e}
	stopped := false
	c.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		<-storeDone
	}
	t.Cleanup(c.stop)
	return c
}

// waitReconciled waits until the scheduler has handled every change the projection has applied
// so far (and written what it decided), before a test asserts that it did nothing more.
func (c *cluster) waitReconciled() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 30*time.Second)
	defer cancel()
	if err := c.engine.WaitReconciled(ctx, c.store.Applied()); err != nil {
		c.t.Fatal(err)
	}
}

// startCluster starts a cluster on a fresh log holding the default namespace.
func startCluster(t testing.TB, opts ...option) *cluster {
	c := newCluster(t, eventlogtest.Open(t), opts...)
	c.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, "namespaces")
	return c
}

var user = registry.Request{Actor: registry.User("test")}

func (c *cluster) create(obj runtime.Object, resource string) uint64 {
	c.t.Helper()
	out, err := c.reg.Create(c.t.Context(), kindOf(resource), obj, user)
	if err != nil {
		c.t.Fatal(err)
	}
	return seqOf(c.t, out)
}

func seqOf(t testing.TB, obj runtime.Object) uint64 {
	m, _ := meta.Accessor(obj) // every object here has metadata
	seq, err := registry.ParseResourceVersion(m.GetResourceVersion())
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// modify changes an object through the registry: sub "" for spec and metadata, "status" for
// status.
func (c *cluster) modify(resource, ns, name, sub string, fn func(runtime.Object)) {
	c.t.Helper()
	if _, err := c.reg.Modify(c.t.Context(), kindOf(resource), ns, name, user, registry.UpdateOptions{Subresource: sub},
		func(o runtime.Object) (runtime.Object, error) {
			fn(o)
			return o, nil
		}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) modifyNode(name, sub string, fn func(*corev1.Node)) {
	c.t.Helper()
	c.modify("nodes", "", name, sub, func(o runtime.Object) { fn(o.(*corev1.Node)) })
}

func (c *cluster) modifyPod(name, sub string, fn func(*corev1.Pod)) {
	c.t.Helper()
	c.modify("pods", "default", name, sub, func(o runtime.Object) { fn(o.(*corev1.Pod)) })
}

func (c *cluster) deletePod(name string) {
	c.t.Helper()
	if _, _, err := c.reg.Delete(c.t.Context(), kindOf("pods"), "default", name, metav1.DeleteOptions{}, user); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) pod(name string) *corev1.Pod {
	c.t.Helper()
	o, ok := c.store.Get(eventlog.Key{Resource: "pods", Namespace: "default", Name: name})
	if !ok {
		c.t.Fatalf("pod %s not found", name)
	}
	obj, err := o.Decode()
	if err != nil {
		c.t.Fatal(err)
	}
	return obj.(*corev1.Pod)
}

// events returns the core/v1 events about a pod, oldest first.
func (c *cluster) events(pod string) []*corev1.Event {
	c.t.Helper()
	objs, _ := c.store.List(projections.Query{Resource: schema.GroupResource{Resource: "events"}, Namespace: "default",
		Fields: fields.OneTermEqualSelector("involvedObject.name", pod)})
	var out []*corev1.Event
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			c.t.Fatal(err)
		}
		out = append(out, obj.(*corev1.Event))
	}
	return out
}

// eventually polls cond until it holds, or fails the test after timeout with what last said.
func eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitBound waits until the pod is bound and returns its node.
func (c *cluster) waitBound(name string) string {
	c.t.Helper()
	var node string
	eventually(c.t, 10*time.Second, func() (bool, string) {
		node = c.pod(name).Spec.NodeName
		return node != "", "pod " + name + " not bound"
	})
	return node
}

// waitEvent waits for an event with reason about pod and returns it.
func (c *cluster) waitEvent(pod, reason string) *corev1.Event {
	c.t.Helper()
	var found *corev1.Event
	eventually(c.t, 10*time.Second, func() (bool, string) {
		for _, e := range c.events(pod) {
			if e.Reason == reason {
				found = e
				return true, ""
			}
		}
		return false, fmt.Sprintf("no %s event about %s", reason, pod)
	})
	return found
}

func readyNode(name, cpu, mem string, pods int64, opts ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Status: corev1.NodeStatus{
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
				corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI),
			},
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
				corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI),
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func pendingPod(name, cpu string, opts ...func(*corev1.Pod)) *corev1.Pod {
	req := corev1.ResourceList{}
	if cpu != "" {
		req[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			SchedulerName: scheduler.DefaultName,
			Containers:    []corev1.Container{{Name: "c", Image: "nginx", Resources: corev1.ResourceRequirements{Requests: req}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}
