package apiserver_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/nodefeed"
	"github.com/logplane/logplane/registry"
)

// runNodeFeeds runs the nodefeed reconciler on the server's projection, as the reconcile role
// does, until the test ends.
func runNodeFeeds(t *testing.T, s *apiservertest.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := engine.New(s.API.Store(), engine.Options{})
	if err := nodefeed.Setup(nodefeed.Config{Feeds: s.Log})(ctx, e); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// nodeView opens node's own log connection with its credential, and the projection and registry
// its agent has: the projection follows the node's feed and has the control plane open its
// Secrets.
func nodeView(t *testing.T, s *apiservertest.Server, node string) (*eventlog.Log, *projections.Store, *registry.Registry) {
	t.Helper()
	ctx := t.Context()
	creds := eventlogtest.Credentials(t, s.Log, eventlog.Identity{Role: eventlog.RoleNode, Name: node})
	nl, err := eventlog.Open(ctx, eventlog.Config{URL: s.Log.ClientURL(), Creds: creds})
	if err != nil {
		t.Fatal(err)
	}
	if !nl.IsNodeFeed() {
		t.Fatal("a node's credential does not make a node's log")
	}
	store := projections.New(builtin.Catalog(), nil, projections.WithOpener(nl.NodeOpener()))
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.RunFeed(runCtx, nl) }()
	t.Cleanup(func() {
		stop()
		<-done
		nl.Close()
	})
	reg, err := registry.New(registry.Config{Log: nl, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return nl, store, reg
}

// waitStore waits until cond holds of store.
func waitStore(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNodeCredentialReadsOnlyItsFeed holds node n1's log credential, as a stolen one would be
// held: its projection, built from its feed, gets its own pod, the Secret (opened by the control
// plane) and ConfigMap that pod uses, the Services, Namespaces and Nodes, and nothing of the pod
// on n2 or what that pod uses; straight at NATS, reading the log's stream, the snapshots, the
// data keys, n2's feed, the object subjects, or having n2's Secret opened, are each refused.
// When its pod moves away, the pod and what only it used leave its projection.
func TestNodeCredentialReadsOnlyItsFeed(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{LogListen: "127.0.0.1:-1", Durability: eventlog.Lazy, Encryption: true})
	ctx := t.Context()
	admin := s.API.Registry()
	cat := admin.Catalog()
	asAdmin := registry.Request{Actor: registry.User("admin")}
	create := func(resource string, obj runtime.Object) {
		t.Helper()
		k, ok := cat.ByGroupResource(schema.GroupResource{Resource: resource})
		if !ok {
			t.Fatalf("no %s", resource)
		}
		if _, err := admin.Create(ctx, k, obj, asAdmin); err != nil {
			t.Fatal(err)
		}
	}
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "default"} }
	pod := func(name, node, secret, cm string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: meta(name), Spec: corev1.PodSpec{NodeName: node,
			Containers: []corev1.Container{{Name: "c", Image: "busybox", EnvFrom: []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}}}}},
			Volumes: []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}}}}}}}
	}
	for _, n := range []string{"n1", "n2"} {
		create("nodes", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	create("secrets", &corev1.Secret{ObjectMeta: meta("s1"), Data: map[string][]byte{"k": []byte("value-of-s1")}})
	create("secrets", &corev1.Secret{ObjectMeta: meta("s2"), Data: map[string][]byte{"k": []byte("value-of-s2")}})
	create("configmaps", &corev1.ConfigMap{ObjectMeta: meta("cm1"), Data: map[string]string{"k": "v1"}})
	create("configmaps", &corev1.ConfigMap{ObjectMeta: meta("cm2"), Data: map[string]string{"k": "v2"}})
	create("services", &corev1.Service{ObjectMeta: meta("svc"), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}})
	create("pods", pod("mine", "n1", "s1", "cm1"))
	create("pods", pod("theirs", "n2", "s2", "cm2"))
	runNodeFeeds(t, s)

	nl, store, reg := nodeView(t, s, "n1")
	key := func(resource, name string) eventlog.Key {
		return eventlog.Key{Resource: resource, Namespace: "default", Name: name}
	}
	waitStore(t, "n1's pod in its projection", func() bool { _, ok := store.Get(key("pods", "mine")); return ok })
	// What the control plane has applied when n1's feed has passed it.
	if _, err := reg.ConsistentRead(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []eventlog.Key{key("pods", "mine"), key("secrets", "s1"), key("configmaps", "cm1"), key("services", "svc"),
		{Resource: "namespaces", Name: "default"}, {Resource: "nodes", Name: "n1"}, {Resource: "nodes", Name: "n2"}} {
		if _, ok := store.Get(k); !ok {
			t.Errorf("n1's projection lacks %s", k)
		}
	}
	for _, k := range []eventlog.Key{key("pods", "theirs"), key("secrets", "s2"), key("configmaps", "cm2")} {
		if _, ok := store.Get(k); ok {
			t.Errorf("n1's projection holds %s, which only n2 may read", k)
		}
	}
	if o, ok := store.Get(key("secrets", "s1")); ok {
		obj, err := o.Decode()
		if err != nil {
			t.Fatalf("its Secret: %v", err)
		}
		if got := obj.(*corev1.Secret).Data["k"]; string(got) != "value-of-s1" {
			t.Errorf("its Secret opened to %q", got)
		}
	}

	// Through its log connection: the stream is not its to follow.
	if err := nl.Follow(ctx, eventlog.Filter{}, 0, func(eventlog.Record) error { return nil }); err == nil {
		t.Error("a node's log followed the stream")
	}
	// Having n2's Secret opened, with the sealed event taken from the log by the admin.
	sealed, err := s.Log.Get(ctx, key("secrets", "s2"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed.Event.GetObject(), []byte("value-of-s2")) {
		t.Fatal("the Secret is not sealed in the log: the test would prove nothing")
	}
	if _, err := nl.NodeOpener().Open(ctx, sealed.Event); !errors.Is(err, eventlog.ErrForbidden) {
		t.Errorf("opening n2's Secret: %v, want ErrForbidden", err)
	}
	own, err := s.Log.Get(ctx, key("secrets", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nl.NodeOpener().Open(ctx, own.Event); err != nil {
		t.Errorf("opening its own pod's Secret: %v", err)
	}

	// Straight at NATS with the same credential.
	var v eventlogtest.Violations
	nc := eventlogtest.Connect(t, s.Log, eventlog.Identity{Role: eventlog.RoleNode, Name: "n1"}, nats.ErrorHandler(v.Handler))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 500*time.Millisecond) }
	refused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s succeeded", what)
		}
	}
	saw := func(subject string) {
		t.Helper()
		if ok, errs := v.Saw(subject); !ok {
			t.Errorf("the server reported no permissions violation for %q (saw %v)", subject, errs)
		}
	}
	c, cancel := short()
	_, err = js.Stream(c, "LOGPLANE")
	cancel()
	refused("the stream's info", err)
	saw("$JS.API.STREAM.INFO.LOGPLANE")
	c, cancel = short()
	_, err = js.OrderedConsumer(c, "LOGPLANE", jetstream.OrderedConsumerConfig{})
	cancel()
	refused("a consumer of the stream", err)
	saw("$JS.API.CONSUMER.CREATE.LOGPLANE.")
	c, cancel = short()
	_, err = js.OrderedConsumer(c, "LOGPLANE_FEED_n2", jetstream.OrderedConsumerConfig{})
	cancel()
	refused("a consumer of n2's feed", err)
	saw("$JS.API.CONSUMER.CREATE.LOGPLANE_FEED_n2.")
	c, cancel = short()
	_, err = nc.RequestWithContext(c, "$JS.API.CONSUMER.CREATE.LOGPLANE_FEED_n2.x", []byte(`{"stream_name":"LOGPLANE_FEED_n2","config":{"name":"x","ack_policy":"none"}}`))
	cancel()
	refused("creating a consumer on n2's feed by its API subject", err)
	saw("$JS.API.CONSUMER.CREATE.LOGPLANE_FEED_n2.x")
	c, cancel = short()
	_, err = nc.RequestWithContext(c, "$JS.API.DIRECT.GET.LOGPLANE.lp.obj.core.secrets.default.s2", nil)
	cancel()
	refused("a direct get of n2's Secret from the stream", err)
	saw("$JS.API.DIRECT.GET.LOGPLANE.lp.obj.core.secrets.default.s2")
	c, cancel = short()
	_, err = nc.RequestWithContext(c, "$JS.API.DIRECT.GET.LOGPLANE_FEED_n2.lp.feed.n2.obj.core.secrets.default.s2", nil)
	cancel()
	refused("a direct get of n2's Secret from n2's feed", err)
	saw("$JS.API.DIRECT.GET.LOGPLANE_FEED_n2.lp.feed.n2.obj.core.secrets.default.s2")
	c, cancel = short()
	_, err = js.Stream(c, "LOGPLANE_KEYS")
	cancel()
	refused("the data keys' stream", err)
	saw("$JS.API.STREAM.INFO.LOGPLANE_KEYS")
	c, cancel = short()
	_, err = js.ObjectStore(c, "LOGPLANE_SNAPSHOTS")
	cancel()
	refused("the snapshots", err)
	for _, subj := range []string{"lp.obj.>", "lp.feed.n2.>", "lp.node.n2.>", "$JS.API.>"} {
		sub, err := nc.SubscribeSync(subj)
		if err == nil {
			_ = nc.Flush()
			_ = sub.Unsubscribe()
		}
		saw(subj)
	}
	// Its own feed, on the other hand, it reads.
	c, cancel = short()
	_, err = js.OrderedConsumer(c, "LOGPLANE_FEED_n1", jetstream.OrderedConsumerConfig{})
	cancel()
	if err != nil {
		t.Errorf("a consumer of its own feed: %v", err)
	}
	// It may not publish to its own feed either.
	c, cancel = short()
	_, err = js.Publish(c, "lp.feed.n1.obj.core.pods.default.theirs", []byte("x"))
	cancel()
	refused("publishing into its own feed", err)
	saw("lp.feed.n1.obj.core.pods.default.theirs")

	// Writes wait for the feed to pass them: its own pod's status, read back at once.
	podKind, _ := cat.ByGroupResource(schema.GroupResource{Resource: "pods"})
	if _, err := reg.Modify(ctx, podKind, "default", "mine", registry.Request{Actor: registry.Node("n1")}, registry.UpdateOptions{Subresource: "status"},
		func(cur runtime.Object) (runtime.Object, error) {
			p := cur.(*corev1.Pod).DeepCopy()
			p.Status.Phase = corev1.PodRunning
			return p, nil
		}); err != nil {
		t.Fatalf("the status of its own pod: %v", err)
	}
	if o, _ := store.Get(key("pods", "mine")); o == nil {
		t.Fatal("its pod left its projection")
	} else if obj, err := o.Decode(); err != nil || obj.(*corev1.Pod).Status.Phase != corev1.PodRunning {
		t.Errorf("its projection has not its own write once it returned: %v %v", obj, err)
	}

	// The pod goes away: it and what only it used leave n1's projection; n2's Secret is used
	// by a pod moved to n1 and arrives.
	podK, _ := cat.ByGroupResource(schema.GroupResource{Resource: "pods"})
	if _, _, err := admin.Delete(ctx, podK, "default", "mine", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, asAdmin); err != nil {
		t.Fatal(err)
	}
	create("pods", pod("moved", "n1", "s2", "cm2"))
	waitStore(t, "the deleted pod and its Secret and ConfigMap to leave, the new pod's to come", func() bool {
		_, p := store.Get(key("pods", "mine"))
		_, s1 := store.Get(key("secrets", "s1"))
		_, cm1 := store.Get(key("configmaps", "cm1"))
		_, s2 := store.Get(key("secrets", "s2"))
		_, moved := store.Get(key("pods", "moved"))
		return !p && !s1 && !cm1 && s2 && moved
	})
	if _, err := nl.NodeOpener().Open(ctx, own.Event); !errors.Is(err, eventlog.ErrForbidden) {
		t.Errorf("opening the Secret of its pod gone: %v, want ErrForbidden", err)
	}

	// A node new to the control plane (no Node yet, as an agent before it registers) has its
	// feed made by asking, and its first consistent read sees the cluster's Nodes.
	_, s3, reg3 := nodeView(t, s, "n3")
	if _, err := reg3.ConsistentRead(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []eventlog.Key{{Resource: "nodes", Name: "n1"}, {Resource: "namespaces", Name: "default"}, key("services", "svc")} {
		if _, ok := s3.Get(k); !ok {
			t.Errorf("a new node's first consistent read lacks %s", k)
		}
	}
}
