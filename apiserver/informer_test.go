package apiserver_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// recorder keeps what an informer's handler saw.
type recorder struct {
	mu   sync.Mutex
	seen []string        // "ADD name rv", "UPDATE name rv", "DELETE name"
	rvs  map[string]bool // every resourceVersion delivered, to catch repeats
	dups []string
}

func (r *recorder) add(kind string, obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			cm, _ = d.Obj.(*corev1.ConfigMap)
		}
	}
	if cm == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := kind + " " + cm.Name + " " + cm.ResourceVersion
	if kind != "DELETE" {
		if r.rvs[cm.Name+"@"+cm.ResourceVersion] {
			r.dups = append(r.dups, key)
		}
		r.rvs[cm.Name+"@"+cm.ResourceVersion] = true
	}
	r.seen = append(r.seen, key)
}

func (r *recorder) snapshot() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...), append([]string(nil), r.dups...)
}

// TestInformerSurvivesRestart runs a client-go informer across a restart of the server on the
// same data directory, with changes made while the server was down (by a writer appending to
// the log directly, as a reconciler would); it must see every change once, in order.
func TestInformerSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s1 := apiservertest.Start(t, apiservertest.Options{DataDir: dir})
	addr, cfg := s1.Addr, s1.Config
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := t.Context()

	create := func(cs *kubernetes.Clientset, name string) string {
		t.Helper()
		cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return "ADD " + name + " " + cm.ResourceVersion
	}
	var want []string
	want = append(want, create(cs, "before-1"), create(cs, "before-2"))

	rec := &recorder{rvs: map[string]bool{}}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().ConfigMaps().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { rec.add("ADD", obj) },
		UpdateFunc: func(old, obj any) {
			if old.(*corev1.ConfigMap).ResourceVersion != obj.(*corev1.ConfigMap).ResourceVersion {
				rec.add("UPDATE", obj)
			}
		},
		DeleteFunc: func(obj any) { rec.add("DELETE", obj) },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	want = append(want, create(cs, "live-1"))
	waitSeen(t, rec, len(want))

	// Down: stop the server, and change things through the log directly.
	s1.Stop()
	l, err := eventlog.Open(ctx, eventlog.Config{DataDir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	store := projections.New(builtin.Catalog(), nil)
	runCtx, cancelRun := context.WithCancel(ctx)
	go func() { _ = store.Run(runCtx, l) }() // ends with cancelRun
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.ConsistentRead(ctx); err != nil {
		t.Fatal(err)
	}
	cmKind, _ := builtin.Catalog().ByKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	obj, err := reg.Create(ctx, cmKind, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "while-down", Namespace: "default"}}, registry.Request{Actor: registry.Reconciler("test")})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "ADD while-down "+rvOf(obj))
	obj, err = reg.Modify(ctx, cmKind, "default", "before-1", registry.Request{Actor: registry.Reconciler("test")}, registry.UpdateOptions{},
		func(cur runtime.Object) (runtime.Object, error) {
			cur.(*corev1.ConfigMap).Data = map[string]string{"changed": "while down"}
			return cur, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "UPDATE before-1 "+rvOf(obj))
	if _, _, err := reg.Delete(ctx, cmKind, "default", "before-2", metav1.DeleteOptions{}, registry.Request{Actor: registry.Reconciler("test")}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "DELETE before-2 ")
	cancelRun()
	l.Close()

	// Up again on the same directory and address.
	s2 := apiservertest.Start(t, apiservertest.Options{DataDir: dir, Addr: addr})
	cs2 := kubernetes.NewForConfigOrDie(s2.Config)
	want = append(want, create(cs2, "after-1"))
	waitSeen(t, rec, len(want))
	time.Sleep(300 * time.Millisecond) // anything repeated would show up now
	seen, dups := rec.snapshot()
	if len(dups) > 0 {
		t.Fatalf("repeated events: %v", dups)
	}
	if len(seen) != len(want) {
		t.Fatalf("saw %d events, want %d:\n%v\nwant\n%v", len(seen), len(want), seen, want)
	}
	// The initial sync delivers what was there in no particular order.
	slices.Sort(seen[:2])
	slices.Sort(want[:2])
	for i := range want {
		got := seen[i]
		if want[i][:7] == "DELETE " {
			got = got[:len("DELETE before-2 ")]
		}
		if got != want[i] {
			t.Fatalf("event %d: %q, want %q\nall: %v", i, seen[i], want[i], seen)
		}
	}
}

func rvOf(obj runtime.Object) string { return obj.(metav1.Object).GetResourceVersion() }

func waitSeen(t *testing.T, rec *recorder, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if seen, _ := rec.snapshot(); len(seen) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen, _ := rec.snapshot()
	t.Fatalf("informer saw %d events, want %d: %s", len(seen), n, fmt.Sprint(seen))
}
