package history_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/history"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/registry"
)

var setKind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

type fixture struct {
	c  *reconcilerstest.Cluster
	ix *informer.Index
	h  *history.History
}

func start(t *testing.T) *fixture {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoReconcilers: true, NoScheduler: true})
	ix := informer.New(nil, history.Resource)
	cancel := c.Store.Subscribe(func(ch projections.Change) { ix.Observe(ch) })
	t.Cleanup(cancel)
	ix.Load(c.Store)
	h, err := history.New(ix, c.Registry, "test")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{c: c, ix: ix, h: h}
}

// synced waits until the index has every change the store applied.
func (f *fixture) synced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.c.Store.WaitDelivered(ctx, f.c.Store.Applied()); err != nil {
		t.Fatal(err)
	}
}

func parent(name string, uid types.UID) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: uid}}
}

func data(image string) runtime.RawExtension {
	return runtime.RawExtension{Raw: []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"` + image + `"}]}},"$patch":"replace"}}`)}
}

func TestNewControllerRevisionNamesAndHashes(t *testing.T) {
	p := parent("web", "uid-1")
	a, _ := history.NewControllerRevision(p, setKind, map[string]string{"app": "web"}, data("nginx:1"), 1, nil)
	b, _ := history.NewControllerRevision(p, setKind, map[string]string{"app": "web"}, data("nginx:1"), 2, nil)
	c, _ := history.NewControllerRevision(p, setKind, map[string]string{"app": "web"}, data("nginx:2"), 3, nil)
	one := int32(1)
	d, _ := history.NewControllerRevision(p, setKind, nil, data("nginx:1"), 1, &one)
	if a.Name != b.Name || a.Name == c.Name || a.Name == d.Name {
		t.Fatalf("names: same data %s %s, other data %s, other probe %s", a.Name, b.Name, c.Name, d.Name)
	}
	hash := a.Labels[history.ControllerRevisionHashLabel]
	if a.Name != "web-"+hash || a.Labels["app"] != "web" || metav1.GetControllerOf(a).UID != "uid-1" {
		t.Fatalf("revision %+v", a.ObjectMeta)
	}
	if !history.EqualRevision(a, b) || history.EqualRevision(a, c) || !history.EqualRevision(nil, nil) || history.EqualRevision(a, nil) {
		t.Fatal("EqualRevision")
	}
	if eq := history.FindEqualRevisions([]*appsv1.ControllerRevision{a, c, b}, b); len(eq) != 2 || eq[0] != a || eq[1] != b {
		t.Fatalf("FindEqualRevisions: %v", eq)
	}
	revs := []*appsv1.ControllerRevision{c, a, b}
	history.SortControllerRevisions(revs)
	if revs[0] != a || revs[2] != c || history.NextRevision(revs) != 4 || history.NextRevision(nil) != 1 {
		t.Fatalf("sorted %d %d %d", revs[0].Revision, revs[1].Revision, revs[2].Revision)
	}
}

func TestCreateListUpdateAdoptRelease(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	p := parent("web", "uid-1")
	var collisions int32

	rev, _ := history.NewControllerRevision(p, setKind, map[string]string{"app": "web"}, data("nginx:1"), 1, &collisions)
	// Someone else's revision holds the name this one hashes to, with other data: a collision.
	squatter := rev.DeepCopy()
	squatter.Data = data("other")
	squatter.OwnerReferences = nil
	if _, err := f.c.Registry.Create(ctx, mustKind(t, f), squatter, registry.Request{Actor: registry.Reconciler("test")}); err != nil {
		t.Fatal(err)
	}
	created, err := f.h.CreateControllerRevision(ctx, p, rev, &collisions)
	if err != nil {
		t.Fatal(err)
	}
	if collisions != 1 || created.Name == squatter.Name || created.Name != history.ControllerRevisionName("web", history.HashControllerRevision(rev, &collisions)) {
		t.Fatalf("after a collision: count %d, name %s (squatter %s)", collisions, created.Name, squatter.Name)
	}
	// Creating the same data again returns the existing revision and counts no collision.
	again, err := f.h.CreateControllerRevision(ctx, p, rev, &collisions)
	if err != nil || again.Name != created.Name || again.UID != created.UID || collisions != 1 {
		t.Fatalf("create again: %v %s %d", err, again.Name, collisions)
	}

	// Another controller's revision with matching labels is not listed; the orphan is.
	other, _ := history.NewControllerRevision(parent("web", "uid-2"), setKind, map[string]string{"app": "web"}, data("nginx:9"), 1, nil)
	other.Name = "other-rev"
	if _, err := f.c.Registry.Create(ctx, mustKind(t, f), other, registry.Request{Actor: registry.Reconciler("test")}); err != nil {
		t.Fatal(err)
	}
	f.synced(t)
	list, err := f.h.ListControllerRevisions(p, labels.SelectorFromSet(labels.Set{"app": "web"}))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range list {
		names[r.Name] = true
	}
	if len(list) != 2 || !names[created.Name] || !names[squatter.Name] {
		t.Fatalf("listed %v", names)
	}
	if l, _ := f.h.ListControllerRevisions(p, labels.SelectorFromSet(labels.Set{"app": "db"})); len(l) != 0 {
		t.Fatalf("the selector matched %d", len(l))
	}

	updated, err := f.h.UpdateControllerRevision(ctx, created, 5)
	if err != nil || updated.Revision != 5 {
		t.Fatalf("update: %v %+v", err, updated)
	}
	f.synced(t)
	var orphan *appsv1.ControllerRevision
	for _, r := range list {
		if r.Name == squatter.Name {
			orphan = r
		}
	}
	adopted, err := f.h.AdoptControllerRevision(ctx, p, setKind, orphan)
	if err != nil || metav1.GetControllerOf(adopted) == nil || metav1.GetControllerOf(adopted).UID != "uid-1" {
		t.Fatalf("adopt: %v %+v", err, adopted)
	}
	if _, err := f.h.AdoptControllerRevision(ctx, p, setKind, adopted); err == nil {
		t.Fatal("adopted a revision that has a controller")
	}
	released, err := f.h.ReleaseControllerRevision(ctx, p, adopted)
	if err != nil || len(released.OwnerReferences) != 0 {
		t.Fatalf("release: %v %+v", err, released)
	}
	if r, err := f.h.ReleaseControllerRevision(ctx, p, released); err != nil || r != nil {
		t.Fatalf("release of a revision not owned: %v %v", r, err)
	}
	if err := f.h.DeleteControllerRevision(ctx, released); err != nil {
		t.Fatal(err)
	}
	if err := f.h.DeleteControllerRevision(ctx, released); err != nil {
		t.Fatalf("deleting a revision gone: %v", err)
	}
	if _, err := f.c.Client.AppsV1().ControllerRevisions("default").Get(ctx, released.Name, metav1.GetOptions{}); err == nil {
		t.Fatal("the revision is still there")
	}
}

func mustKind(t *testing.T, f *fixture) *kinds.Kind {
	k, ok := f.c.Registry.Catalog().ByGroupResource(history.Resource)
	if !ok {
		t.Fatal("no controllerrevisions kind")
	}
	return k
}
