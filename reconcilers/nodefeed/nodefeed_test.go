package nodefeed_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	storagehelpers "k8s.io/component-helpers/storage/volume"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/nodefeed"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/registry"
)

// TestFeedConvergesAfterRestart runs the reconciler, stops it, changes what node n1 may read
// while it is down (its pod deleted, another bound to it using another Secret through an
// imagePullSecret and a ConfigMap through env), and starts it again: n1's feed converges to
// exactly its new set, with the log's position at least what the log held.
func TestFeedConvergesAfterRestart(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoReconcilers: true, NoScheduler: true})
	ctx := t.Context()
	req := registry.Request{Actor: registry.User("admin")}
	create := func(resource string, obj runtime.Object) {
		t.Helper()
		k, ok := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Resource: resource})
		if !ok {
			t.Fatalf("no %s", resource)
		}
		if _, err := c.Registry.Create(ctx, k, obj, req); err != nil {
			t.Fatal(err)
		}
	}
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "default"} }
	create("nodes", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	create("secrets", &corev1.Secret{ObjectMeta: meta("s1")})
	create("secrets", &corev1.Secret{ObjectMeta: meta("s2")})
	create("configmaps", &corev1.ConfigMap{ObjectMeta: meta("cm")})
	create("pods", &corev1.Pod{ObjectMeta: meta("p1"), Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "x"}},
		Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s1"}}}}}})

	run := func() func() {
		rctx, cancel := context.WithCancel(context.Background())
		e := engine.New(c.Store, engine.Options{})
		if err := nodefeed.Setup(nodefeed.Config{Feeds: c.Log})(rctx, e); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- e.Run(rctx) }()
		return func() {
			cancel()
			<-done
		}
	}
	key := func(resource, name string) eventlog.Key {
		return eventlog.Key{Resource: resource, Namespace: "default", Name: name}
	}
	// waitFeed waits until n1's feed holds exactly the namespaced objects want (beside the
	// cluster-wide ones) and reflects the log up to where it is now.
	waitFeed := func(want ...eventlog.Key) {
		t.Helper()
		_, last, err := c.Log.Bounds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			held, pos, err := c.Log.ReadFeed(ctx, "n1")
			if err != nil {
				t.Fatal(err)
			}
			got := map[eventlog.Key]bool{}
			for k := range held {
				if k.Namespace == "default" && k.Resource != "services" && k.Resource != "endpoints" && k.Resource != "endpointslices" {
					got[k] = true
				}
			}
			ok := pos >= last && len(got) == len(want)
			for _, k := range want {
				ok = ok && got[k]
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("n1's feed holds %v at %d, want %v at %d or later", keys(got), pos, want, last)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop := run()
	waitFeed(key("pods", "p1"), key("secrets", "s1"))
	stop()

	podKind, _ := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Resource: "pods"})
	if _, _, err := c.Registry.Delete(ctx, podKind, "default", "p1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, req); err != nil {
		t.Fatal(err)
	}
	create("pods", &corev1.Pod{ObjectMeta: meta("p2"), Spec: corev1.PodSpec{NodeName: "n1", ImagePullSecrets: []corev1.LocalObjectReference{{Name: "s2"}},
		Containers: []corev1.Container{{Name: "c", Image: "x", Env: []corev1.EnvVar{{Name: "E", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "k"}}}}}}}})

	stop = run()
	defer stop()
	waitFeed(key("pods", "p2"), key("secrets", "s2"), key("configmaps", "cm"))
}

func keys(m map[eventlog.Key]bool) []string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprint(k))
	}
	return out
}

// TestLocalVolumesFeedTheirNode: a claim selected for n1 (before any pod of n1 uses it) and a
// volume of the local provisioner on n1 are in n1's feed, which provisions, grows and reclaims
// them; a claim selected for another node leaves it.
func TestLocalVolumesFeedTheirNode(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoReconcilers: true, NoScheduler: true})
	ctx := t.Context()
	req := registry.Request{Actor: registry.User("admin")}
	kind := func(resource string) *kinds.Kind {
		k, ok := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Resource: resource})
		if !ok {
			t.Fatalf("no %s", resource)
		}
		return k
	}
	for _, n := range []string{"n1", "n2"} {
		if _, err := c.Registry.Create(ctx, kind("nodes"), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, req); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	e := engine.New(c.Store, engine.Options{})
	if err := nodefeed.Setup(nodefeed.Config{Feeds: c.Log})(rctx, e); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(rctx) }()
	defer func() { cancel(); <-done }()

	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default",
		Annotations: map[string]string{storagehelpers.AnnSelectedNode: "n1"}},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}}}}
	if _, err := c.Registry.Create(ctx, kind("persistentvolumeclaims"), claim, req); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1",
		Annotations: map[string]string{storagehelpers.AnnDynamicallyProvisioned: registry.LocalProvisioner}},
		Spec: corev1.PersistentVolumeSpec{Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/var/lib/x"}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}}}}}}
	if _, err := c.Registry.Create(ctx, kind("persistentvolumes"), pv, req); err != nil {
		t.Fatal(err)
	}
	claimKey := eventlog.Key{Resource: "persistentvolumeclaims", Namespace: "default", Name: "data"}
	pvKey := eventlog.Key{Resource: "persistentvolumes", Name: "pvc-1"}
	wait := func(node string, want map[eventlog.Key]bool) {
		t.Helper()
		_, last, err := c.Log.Bounds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			held, pos, err := c.Log.ReadFeed(ctx, node)
			if err != nil {
				t.Fatal(err)
			}
			ok := pos >= last
			for k, in := range want {
				_, has := held[k]
				ok = ok && has == in
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's feed at %d (want %d): claim %v, volume %v; want %v", node, pos, last, held[claimKey], held[pvKey], want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("n1", map[eventlog.Key]bool{claimKey: true, pvKey: true})
	wait("n2", map[eventlog.Key]bool{claimKey: false, pvKey: false})

	if _, err := c.Registry.Modify(ctx, kind("persistentvolumeclaims"), "default", "data", req, registry.UpdateOptions{},
		func(cur runtime.Object) (runtime.Object, error) {
			cur.(*corev1.PersistentVolumeClaim).Annotations[storagehelpers.AnnSelectedNode] = "n2"
			return cur, nil
		}); err != nil {
		t.Fatal(err)
	}
	wait("n1", map[eventlog.Key]bool{claimKey: false, pvKey: true})
	wait("n2", map[eventlog.Key]bool{claimKey: true})
	if !nodefeed.CanRead(c.Store, "n2", claimKey) || nodefeed.CanRead(c.Store, "n1", claimKey) || !nodefeed.CanRead(c.Store, "n1", pvKey) {
		t.Error("CanRead disagrees with the feeds")
	}
}
