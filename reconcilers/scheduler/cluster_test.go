package scheduler

import (
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

// fakeChanges is a projection with fixed listings whose changes the test sends by hand.
type fakeChanges struct {
	objs []*projections.Object
	fn   func(projections.Change)
}

func (f *fakeChanges) Subscribe(fn func(projections.Change)) func() { f.fn = fn; return func() {} }

func (f *fakeChanges) List(q projections.Query) ([]*projections.Object, uint64) {
	var out []*projections.Object
	for _, o := range f.objs {
		if o.Key.Resource == q.Resource.Resource {
			out = append(out, o)
		}
	}
	return out, 10
}

var seq uint64 = 10

func object(t *testing.T, resource string, obj runtime.Object) *projections.Object {
	t.Helper()
	k, ok := builtin.Catalog().ByGroupResource(schema.GroupResource{Resource: resource})
	if !ok {
		t.Fatalf("no kind for %s", resource)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		t.Fatal(err)
	}
	data, err := kinds.Encode(obj, eventv1.Encoding_ENCODING_PROTOBUF)
	if err != nil {
		t.Fatal(err)
	}
	seq++
	ev := &eventv1.ObjectChanged{Type: eventv1.ChangeType_CHANGE_TYPE_MODIFIED, Reason: "spec", Encoding: eventv1.Encoding_ENCODING_PROTOBUF, Object: data,
		Ref: &eventv1.ObjectRef{Version: "v1", Kind: k.Kind, Resource: resource, Namespace: m.GetNamespace(), Name: m.GetName(), Uid: string(m.GetUID())}}
	return &projections.Object{Key: eventlog.Key{Resource: resource, Namespace: m.GetNamespace(), Name: m.GetName()}, Kind: k, Seq: seq, Event: ev,
		Fields: k.Fields(obj)}
}

func testNode(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourcePods: resource.MustParse("10")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

func testPod(uid, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: types.UID(uid)},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("600m")}}}}},
	}
}

func requested(c *cluster, node string) (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodes[node]
	if nd == nil {
		return 0, 0
	}
	return nd.Requested.MilliCPU, nd.PodCount()
}

// An assumed pod is accounted once, whatever happens to it: bound, recreated under the same
// name, forgotten, or deleted.
func TestClusterAccountsEachPodOnce(t *testing.T) {
	src := &fakeChanges{objs: []*projections.Object{object(t, "nodes", testNode("node-1"))}}
	c := newCluster(slog.Default())
	src.Subscribe(c.Observe)
	c.load(src)

	p1 := placement.NewPod(testPod("uid-1", ""))
	if d := c.schedule(p1); d.Node != "node-1" {
		t.Fatalf("placed on %q: %v", d.Node, d.Err)
	}
	if cpu, n := requested(c, "node-1"); cpu != 600 || n != 1 {
		t.Fatalf("after assuming: %dm on %d pods", cpu, n)
	}
	// Still pending in the projection (the binding is in flight): the assumption stays.
	src.fn(projections.Change{Seq: seq + 1, New: object(t, "pods", testPod("uid-1", ""))})
	if cpu, n := requested(c, "node-1"); cpu != 600 || n != 1 {
		t.Fatalf("after a pending revision: %dm on %d pods", cpu, n)
	}
	// No room for a second one while the first is assumed.
	if d := c.schedule(placement.NewPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "other", UID: "uid-9"},
		Spec: testPod("", "").Spec})); d.Node != "" {
		t.Fatalf("second pod placed on %s", d.Node)
	}
	// Recreated under the same name before the binding came back: counted once.
	p2 := placement.NewPod(testPod("uid-2", ""))
	if d := c.schedule(p2); d.Node != "node-1" {
		t.Fatalf("recreated pod placed on %q: %v", d.Node, d.Err)
	}
	c.forget(p1.Key, "uid-1") // the first pod's binding fails late: nothing to forget any more
	if cpu, n := requested(c, "node-1"); cpu != 600 || n != 1 {
		t.Fatalf("after recreating: %dm on %d pods", cpu, n)
	}
	// The binding comes back: accounted as bound, once; forgetting it now changes nothing.
	bound := object(t, "pods", testPod("uid-2", "node-1"))
	src.fn(projections.Change{Seq: bound.Seq, New: bound})
	c.forget(p2.Key, "uid-2")
	if cpu, n := requested(c, "node-1"); cpu != 600 || n != 1 {
		t.Fatalf("after binding: %dm on %d pods", cpu, n)
	}
	// Deleted: gone.
	src.fn(projections.Change{Seq: bound.Seq + 1, Old: bound})
	if cpu, n := requested(c, "node-1"); cpu != 0 || n != 0 {
		t.Fatalf("after deleting: %dm on %d pods", cpu, n)
	}
}
