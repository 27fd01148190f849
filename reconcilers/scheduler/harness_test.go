package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/scheduler"
)

var catalog = kinds.Builtin()

func kindOf(resource string) *kinds.Kind {
	k, ok := catalog.ByGroupResource(schema.GroupResource{Resource: resource})
	if !ok {
		panic(resource)
	}
	return k
}

// logWriter writes objects straight into the log, standing in for the registry: what it writes
// is what the registry's pods/binding, pods/status and events writes append.
type logWriter struct {
	log   *eventlog.Log
	store *projections.Store
}

var _ scheduler.Writer = (*logWriter)(nil)

func (w *logWriter) event(obj runtime.Object, resource, reason string, typ eventv1.ChangeType, cause uint64) (*eventv1.ObjectChanged, error) {
	k := kindOf(resource)
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	m.SetResourceVersion("")
	data, err := kinds.Encode(obj, eventv1.Encoding_ENCODING_PROTOBUF)
	if err != nil {
		return nil, err
	}
	return &eventv1.ObjectChanged{
		Type: typ, Reason: reason, Cause: cause, Time: timestamppb.Now(),
		Actor: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_RECONCILER, Name: "scheduler"},
		Ref: &eventv1.ObjectRef{Group: k.Group, Version: k.Version, Kind: k.Kind, Resource: k.Resource,
			Namespace: m.GetNamespace(), Name: m.GetName(), Uid: string(m.GetUID())},
		Encoding: eventv1.Encoding_ENCODING_PROTOBUF, Object: data,
		Labels: m.GetLabels(), Fields: k.Fields(obj),
	}, nil
}

// create appends obj as a new object and waits until the store has it.
func (w *logWriter) create(ctx context.Context, obj runtime.Object, resource string, cause uint64) (uint64, error) {
	m, _ := meta.Accessor(obj) // every object here has metadata
	if m.GetUID() == "" {
		m.SetUID(types.UID(fmt.Sprintf("uid-%s-%s-%d", resource, m.GetName(), time.Now().UnixNano())))
	}
	if ts := m.GetCreationTimestamp(); ts.IsZero() {
		m.SetCreationTimestamp(metav1.Now())
	}
	ev, err := w.event(obj, resource, "create", eventv1.ChangeType_CHANGE_TYPE_ADDED, cause)
	if err != nil {
		return 0, err
	}
	seq, err := w.log.Create(ctx, ev)
	if errors.Is(err, eventlog.ErrExists) {
		return 0, apierrors.NewAlreadyExists(kindOf(resource).GroupResource(), m.GetName())
	}
	if err != nil {
		return 0, err
	}
	return seq, w.store.WaitFor(ctx, seq)
}

// modify reads the current revision of an object, changes it with fn and appends it, retrying
// when another writer got there first, as the registry's Modify does.
func (w *logWriter) modify(ctx context.Context, resource, ns, name string, uid types.UID, reason string, cause uint64, fn func(runtime.Object) error) (uint64, error) {
	k := kindOf(resource)
	key := eventlog.Key{Group: k.Group, Resource: resource, Namespace: ns, Name: name}
	fromLog := false
	for {
		// Like the registry: the current revision from the projection, from the log itself
		// after losing a race (the projection may not have the winner yet).
		rec, err := w.current(ctx, key, fromLog)
		if errors.Is(err, eventlog.ErrNotFound) {
			return 0, apierrors.NewNotFound(k.GroupResource(), name)
		}
		if err != nil {
			return 0, err
		}
		obj, err := k.Decode(rec.Event.GetEncoding(), rec.Event.GetObject())
		if err != nil {
			return 0, err
		}
		m, _ := meta.Accessor(obj)
		if uid != "" && m.GetUID() != uid {
			return 0, apierrors.NewConflict(k.GroupResource(), name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", uid, m.GetUID()))
		}
		if err := fn(obj); err != nil {
			return 0, err
		}
		typ := eventv1.ChangeType_CHANGE_TYPE_MODIFIED
		if m.GetDeletionTimestamp() != nil && len(m.GetFinalizers()) == 0 && reason == "delete" {
			typ = eventv1.ChangeType_CHANGE_TYPE_DELETED
		}
		ev, err := w.event(obj, resource, reason, typ, cause)
		if err != nil {
			return 0, err
		}
		seq, err := w.log.Append(ctx, ev, rec.Seq)
		if errors.Is(err, eventlog.ErrConflict) {
			fromLog = true
			continue
		}
		if err != nil {
			return 0, err
		}
		return seq, w.store.WaitFor(ctx, seq)
	}
}

func (w *logWriter) current(ctx context.Context, key eventlog.Key, fromLog bool) (eventlog.Record, error) {
	if !fromLog && w.store != nil {
		o, ok := w.store.Get(key)
		if !ok {
			return eventlog.Record{}, eventlog.ErrNotFound
		}
		return eventlog.Record{Seq: o.Seq, Event: o.Event}, nil
	}
	return w.log.Get(ctx, key)
}

func (w *logWriter) Bind(ctx context.Context, pod *corev1.Pod, node string, cause uint64) error {
	_, err := w.modify(ctx, "pods", pod.Namespace, pod.Name, pod.UID, "bind", cause, func(o runtime.Object) error {
		p := o.(*corev1.Pod)
		if p.Spec.NodeName != "" {
			return apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, p.Name, fmt.Errorf("pod %v is already assigned to node %q", p.Name, p.Spec.NodeName))
		}
		p.Spec.NodeName = node
		scheduler.SetCondition(&p.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()})
		return nil
	})
	return err
}

func (w *logWriter) SetPodCondition(ctx context.Context, pod *corev1.Pod, cond corev1.PodCondition, cause uint64) error {
	_, err := w.modify(ctx, "pods", pod.Namespace, pod.Name, pod.UID, "status", cause, func(o runtime.Object) error {
		scheduler.SetCondition(&o.(*corev1.Pod).Status, cond)
		return nil
	})
	return err
}

func (w *logWriter) CreateEvent(ctx context.Context, ev *corev1.Event, cause uint64) error {
	_, err := w.create(ctx, ev, "events", cause)
	return err
}

func (w *logWriter) UpdateEvent(ctx context.Context, ev *corev1.Event, cause uint64) error {
	_, err := w.modify(ctx, "events", ev.Namespace, ev.Name, "", "update", cause, func(o runtime.Object) error {
		cur := o.(*corev1.Event)
		cur.Count, cur.LastTimestamp, cur.Message = ev.Count, ev.LastTimestamp, ev.Message
		return nil
	})
	return err
}

// cluster is a real log, its projection, and a scheduler on an engine, all running until the
// test ends.
type cluster struct {
	t     testing.TB
	log   *eventlog.Log
	store *projections.Store
	w     *logWriter
	sched *scheduler.Scheduler
	stop  func()
}

type option func(*scheduler.Config)

func newCluster(t testing.TB, l *eventlog.Log, opts ...option) *cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	store := projections.New(catalog, nil)
	storeDone := make(chan struct{})
	go func() { defer close(storeDone); store.Run(ctx, l) }()
	w := &logWriter{log: l, store: store}
	cfg := scheduler.Config{Store: store, Writer: w, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Instance: "test"}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := scheduler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(store, engine.Options{})
	e.Register(s.Registration())
	done := make(chan struct{}, 2)
	go func() { s.Run(ctx); done <- struct{}{} }()
	go func() { e.Run(ctx); done <- struct{}{} }()
	c := &cluster{t: t, log: l, store: store, w: w, sched: s}
	stopped := false
	c.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		<-done
		<-storeDone
	}
	t.Cleanup(c.stop)
	return c
}

func startCluster(t testing.TB, opts ...option) *cluster {
	return newCluster(t, eventlogtest.Open(t), opts...)
}

func (c *cluster) create(obj runtime.Object, resource string) uint64 {
	c.t.Helper()
	seq, err := c.w.create(c.t.Context(), obj, resource, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	return seq
}

func (c *cluster) modifyNode(name string, fn func(*corev1.Node)) {
	c.t.Helper()
	if _, err := c.w.modify(c.t.Context(), "nodes", "", name, "", "spec", 0, func(o runtime.Object) error {
		fn(o.(*corev1.Node))
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) modifyPod(name string, reason string, fn func(*corev1.Pod)) {
	c.t.Helper()
	if _, err := c.w.modify(c.t.Context(), "pods", "default", name, "", reason, 0, func(o runtime.Object) error {
		fn(o.(*corev1.Pod))
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) deletePod(name string) {
	c.t.Helper()
	if _, err := c.w.modify(c.t.Context(), "pods", "default", name, "", "delete", 0, func(o runtime.Object) error {
		now := metav1.Now()
		o.(*corev1.Pod).DeletionTimestamp = &now
		return nil
	}); err != nil {
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
