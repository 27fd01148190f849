package apiserver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/registry"
)

// TestNodeCredentialIsRestricted holds node n1's log credential, as a stolen one would be
// held, and writes through a registry of its own over it (which sends its writes as the
// node's commands): the status of its own pod goes in, stamped with n1 as its actor whatever
// the writer claims; everything else — another node's pod, any spec, a ConfigMap, another
// node's Node and Lease, a purge, listing streams, appending to the stream directly — is
// refused with 403 or by the server, and writes nothing.
func TestNodeCredentialIsRestricted(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{LogListen: "127.0.0.1:-1", Durability: eventlog.Lazy})
	ctx := t.Context()
	admin := s.API.Registry()
	cat := admin.Catalog()
	kind := func(group, resource string) *kinds.Kind {
		k, ok := cat.ByGroupResource(schema.GroupResource{Group: group, Resource: resource})
		if !ok {
			t.Fatalf("no %s", resource)
		}
		return k
	}
	podKind, cmKind, nodeKind, leaseKind := kind("", "pods"), kind("", "configmaps"), kind("", "nodes"), kind("coordination.k8s.io", "leases")
	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	}
	asAdmin := registry.Request{Actor: registry.User("admin")}
	for _, p := range []*corev1.Pod{pod("mine", "n1"), pod("theirs", "n2")} {
		if _, err := admin.Create(ctx, podKind, p, asAdmin); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Create(ctx, nodeKind, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}}, asAdmin); err != nil {
		t.Fatal(err)
	}

	// The node's own connection, projection (of its feed) and registry, as its agent has.
	runNodeFeeds(t, s)
	nl, store, reg := nodeView(t, s, "n1")
	waitStore(t, "n1's pod in its feed", func() bool {
		_, ok := store.Get(eventlog.Key{Resource: "pods", Namespace: "default", Name: "mine"})
		return ok
	})
	if _, err := reg.ConsistentRead(ctx); err != nil {
		t.Fatal(err)
	}
	// It claims to be the admin: the log takes the actor from its credential.
	claim := registry.Request{Actor: registry.User("admin")}
	status := func(phase corev1.PodPhase) registry.Mutation {
		return func(cur runtime.Object) (runtime.Object, error) {
			p := cur.(*corev1.Pod).DeepCopy()
			p.Status.Phase = phase
			return p, nil
		}
	}

	// Allowed: its own pod's status, its own Node and Lease.
	if _, err := reg.Modify(ctx, podKind, "default", "mine", claim, registry.UpdateOptions{Subresource: "status"}, status(corev1.PodRunning)); err != nil {
		t.Fatalf("the status of its own pod: %v", err)
	}
	hist, err := s.Log.History(ctx, eventlog.Key{Resource: "pods", Namespace: "default", Name: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if a := hist[len(hist)-1].Event.GetActor(); a.GetKind() != eventv1.ActorKind_ACTOR_KIND_NODE || a.GetName() != "n1" {
		t.Errorf("the status change's actor is %v, want node n1 (the writer claimed the admin)", a)
	}
	if _, err := reg.Create(ctx, nodeKind, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, claim); err != nil {
		t.Errorf("its own Node: %v", err)
	}
	if _, err := reg.Create(ctx, leaseKind, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n1", Namespace: "kube-node-lease"}}, claim); err != nil {
		t.Errorf("its own Lease: %v", err)
	}

	_, last, err := s.Log.Bounds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want 403 Forbidden", what, err)
		}
	}
	unseen := func(what string, err error) {
		t.Helper()
		if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want 404 (not in its feed) or 403", what, err)
		}
	}
	_, err = reg.Modify(ctx, podKind, "default", "theirs", claim, registry.UpdateOptions{Subresource: "status"}, status(corev1.PodFailed))
	// It does not even see another node's pod (its feed holds its own only): a 404 from its
	// own registry; the log's refusal of the same write is below, past the registry.
	unseen("another node's pod's status", err)
	_, err = reg.Modify(ctx, podKind, "default", "mine", claim, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*corev1.Pod).DeepCopy()
		p.Spec.Containers[0].Image = "evil"
		return p, nil
	})
	forbidden("its own pod's spec", err)
	_, err = reg.Modify(ctx, podKind, "default", "mine", claim, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*corev1.Pod).DeepCopy()
		p.Labels["app"] = "other"
		return p, nil
	})
	forbidden("its own pod's labels", err)
	// Past the registry's checks, as a hostile agent would: the log itself refuses.
	theirs, err := s.Log.Get(ctx, eventlog.Key{Resource: "pods", Namespace: "default", Name: "theirs"})
	if err != nil {
		t.Fatal(err)
	}
	ev := proto.Clone(theirs.Event).(*eventv1.ObjectChanged)
	ev.Fields["spec.nodeName"] = "n1"
	if _, err := nl.Append(ctx, ev, theirs.Seq); !errors.Is(err, eventlog.ErrForbidden) {
		t.Errorf("appending another node's pod directly, claiming it is bound here: %v, want ErrForbidden", err)
	}
	_, _, err = reg.Delete(ctx, podKind, "default", "theirs", metav1.DeleteOptions{}, claim)
	unseen("deleting another node's pod", err)
	_, err = reg.Create(ctx, podKind, pod("new", "n1"), claim)
	forbidden("creating a pod", err)
	_, err = reg.Create(ctx, cmKind, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "default"}}, claim)
	forbidden("a ConfigMap", err)
	_, err = reg.Modify(ctx, nodeKind, "", "n2", claim, registry.UpdateOptions{Subresource: "status"}, func(cur runtime.Object) (runtime.Object, error) {
		n := cur.(*corev1.Node).DeepCopy()
		n.Status.Phase = corev1.NodeTerminated
		return n, nil
	})
	forbidden("another node's Node", err)
	_, err = reg.Create(ctx, leaseKind, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n2", Namespace: "kube-node-lease"}}, claim)
	forbidden("another node's Lease", err)

	// Straight at NATS with the same credential.
	var v eventlogtest.Violations
	nc := eventlogtest.Connect(t, s.Log, eventlog.Identity{Role: eventlog.RoleNode, Name: "n1"}, nats.ErrorHandler(v.Handler))
	saw := func(what string) {
		t.Helper()
		if ok, errs := v.Saw(what); !ok {
			t.Errorf("the server reported no permissions violation for %q (saw %v)", what, errs)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 500*time.Millisecond) }
	c, cancel := short()
	if _, err := js.Publish(c, "lp.obj.core.pods.default.theirs", []byte("x")); err == nil {
		t.Error("appending to the stream directly succeeded")
	}
	cancel()
	saw("lp.obj.core.pods.default.theirs")
	c, cancel = short()
	if err := js.DeleteStream(c, "LOGPLANE"); err == nil {
		t.Error("deleting the stream succeeded")
	}
	cancel()
	saw("$JS.API.STREAM.DELETE.LOGPLANE")
	c, cancel = short()
	if _, err := nc.RequestWithContext(c, "$JS.API.STREAM.PURGE.LOGPLANE", []byte(`{"filter":"lp.obj.core.pods.default.theirs"}`)); err == nil {
		t.Error("purging another node's pod's history succeeded")
	}
	cancel()
	saw("$JS.API.STREAM.PURGE.LOGPLANE")
	c, cancel = short()
	names := js.StreamNames(c)
	for range names.Name() {
	}
	cancel()
	saw("$JS.API.STREAM.NAMES")
	// A command sent on another node's subject.
	c, cancel = short()
	if _, err := nc.RequestWithContext(c, "lp.node.n2.append", []byte("x")); err == nil {
		t.Error("a command on another node's subject was answered")
	}
	cancel()
	saw("lp.node.n2.append")

	// Nothing of it was written.
	_, after, err := s.Log.Bounds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != last {
		recs, _ := s.Log.History(ctx, eventlog.Key{Resource: "pods", Namespace: "default", Name: "theirs"})
		t.Errorf("the log grew from %d to %d during the refused attempts (theirs: %d revisions)", last, after, len(recs))
	}
}
