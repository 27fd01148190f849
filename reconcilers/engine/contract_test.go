package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/reconcilers/engine"
)

var (
	pods        = schema.GroupResource{Resource: "pods"}
	replicaSets = schema.GroupResource{Group: "apps", Resource: "replicasets"}
)

// event is a JSON object event: typ of the object named by ref, with metadata.
func event(typ eventv1.ChangeType, ref *eventv1.ObjectRef, metadata string) *eventv1.ObjectChanged {
	return &eventv1.ObjectChanged{Type: typ, Reason: "create", Encoding: eventv1.Encoding_ENCODING_JSON,
		Object: []byte(`{"metadata":` + metadata + `}`), Ref: ref}
}

func podRef(name string) *eventv1.ObjectRef {
	return &eventv1.ObjectRef{Version: "v1", Kind: "Pod", Resource: "pods", Namespace: "default", Name: name}
}

func rsRef(name string) *eventv1.ObjectRef {
	return &eventv1.ObjectRef{Group: "apps", Version: "v1", Kind: "ReplicaSet", Resource: "replicasets", Namespace: "default", Name: name}
}

// ownedBy is the metadata of an object controlled by the replica set rs.
func ownedBy(name, rs string) string {
	return fmt.Sprintf(`{"name":%q,"namespace":"default","uid":"uid-%s","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":%q,"uid":"uid-%s","controller":true}]}`,
		name, name, rs, rs)
}

// started runs a store on l and e on it until the test ends.
func started(t *testing.T, l *eventlog.Log, opts engine.Options, register func(e *engine.Engine)) *engine.Engine {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	store := projections.New(builtin.Catalog(), nil)
	storeDone := make(chan struct{})
	go func() { defer close(storeDone); _ = store.Run(ctx, l) }()
	e := engine.New(store, opts)
	register(e)
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; <-storeDone })
	return e
}

func waitReconciled(t *testing.T, e *engine.Engine, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.WaitReconciled(ctx, seq); err != nil {
		t.Fatal(err)
	}
}

// A mapping sees the informer index as of the change it maps, without doing anything for it:
// the engine updates the index first. Changes of owned objects queue their controller, before
// and after the change, with the change as cause; For objects are kept decoded.
func TestOwnsAndIndexBeforeMapping(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	var mu sync.Mutex
	var stale []string
	causes := map[string]uint64{}
	e := started(t, l, engine.Options{}, func(e *engine.Engine) {
		ix := e.Index()
		e.Register(engine.Registration{
			Name: "rs",
			For:  replicaSets,
			Owns: []schema.GroupResource{pods},
			Watches: []engine.Watch{engine.Watches(pods, func(ev engine.Event) []eventlog.Key {
				// The index already holds this revision (or none, for a deletion).
				m, ok := ix.Meta(ev.Object().Key)
				if (ev.New != nil && (!ok || m.Seq != ev.Seq)) || (ev.New == nil && ok) {
					mu.Lock()
					stale = append(stale, fmt.Sprintf("%s at %d: index has %+v", ev.Object().Key, ev.Seq, m))
					mu.Unlock()
				}
				return nil
			})},
			Reconciler: engine.ReconcilerFunc(func(_ context.Context, req engine.Request) (engine.Result, error) {
				mu.Lock()
				causes[req.Key.Name] = max(causes[req.Key.Name], req.Cause)
				mu.Unlock()
				return engine.Result{}, nil
			}),
		})
	})
	if _, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, rsRef("a"), `{"name":"a","namespace":"default","uid":"uid-a"}`)); err != nil {
		t.Fatal(err)
	}
	seq, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, podRef("p"), ownedBy("p", "a")))
	if err != nil {
		t.Fatal(err)
	}
	waitReconciled(t, e, seq)
	mu.Lock()
	if causes["a"] != seq {
		t.Errorf("replica set a reconciled with cause %d, want the owned pod's creation %d", causes["a"], seq)
	}
	mu.Unlock()
	// Another controller: both the old and the new one look.
	seq, err = l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, podRef("p"), ownedBy("p", "b")), eventlog.AnyRevision)
	if err != nil {
		t.Fatal(err)
	}
	waitReconciled(t, e, seq)
	mu.Lock()
	if causes["a"] != seq || causes["b"] != seq {
		t.Errorf("causes %v after the pod changed controller at %d: want both a and b", causes, seq)
	}
	if len(stale) > 0 {
		t.Errorf("mappings saw a stale index: %v", stale)
	}
	mu.Unlock()
	if obj, ok := e.Index().Object(eventlog.Key{Group: "apps", Resource: "replicasets", Namespace: "default", Name: "a"}); !ok || obj == nil {
		t.Error("the index does not keep the For resource decoded")
	}
}

// WaitReconciled returns only once the keys queued by the changes up to a sequence are
// reconciled: not while a reconcile is in flight, nor while a failed one waits to be retried;
// a reconcile that asked to be requeued later is done.
func TestWaitReconciled(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	release := make(chan struct{})
	var failed atomic.Bool
	var reconciled sync.Map
	e := started(t, l, engine.Options{}, func(e *engine.Engine) {
		e.Register(engine.Registration{Name: "cm", For: configmaps, Reconciler: engine.ReconcilerFunc(
			func(ctx context.Context, req engine.Request) (engine.Result, error) {
				switch req.Key.Name {
				case "slow":
					select {
					case <-release:
					case <-ctx.Done():
						return engine.Result{}, ctx.Err()
					}
				case "flaky":
					if !failed.Swap(true) {
						return engine.Result{}, errors.New("the first time")
					}
				case "later":
					reconciled.Store(req.Key.Name, true)
					return engine.Result{RequeueAfter: time.Hour}, nil
				}
				reconciled.Store(req.Key.Name, true)
				return engine.Result{}, nil
			})})
	})
	var last uint64
	for _, name := range []string{"later", "flaky", "slow"} {
		seq, err := l.Create(ctx, cm(name))
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := e.WaitReconciled(short, last); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReconciled while slow is being reconciled: %v", err)
	}
	close(release)
	waitReconciled(t, e, last)
	for _, name := range []string{"later", "flaky", "slow"} {
		if _, ok := reconciled.Load(name); !ok {
			t.Errorf("%s not reconciled when WaitReconciled returned", name)
		}
	}
}

// Requeues follow the engine's clock: a key asking to be looked at again in a minute is looked
// at when the clock has moved a minute, not before; once the clock makes it due, WaitReconciled
// waits for it.
func TestRequeueOnTheEnginesClock(t *testing.T) {
	l := eventlogtest.Open(t)
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var n atomic.Int64
	e := started(t, l, engine.Options{Clock: clk}, func(e *engine.Engine) {
		e.Register(engine.Registration{Name: "cm", For: configmaps, Reconciler: engine.ReconcilerFunc(
			func(context.Context, engine.Request) (engine.Result, error) {
				n.Add(1)
				return engine.Result{RequeueAfter: time.Minute}, nil
			})})
	})
	seq, err := l.Create(t.Context(), cm("a"))
	if err != nil {
		t.Fatal(err)
	}
	waitReconciled(t, e, seq)
	clk.Step(59 * time.Second)
	waitReconciled(t, e, seq)
	if got := n.Load(); got != 1 {
		t.Fatalf("%d reconciles after 59s, want 1 (the requeue is due at 60s)", got)
	}
	clk.Step(time.Second)
	waitReconciled(t, e, seq)
	if got := n.Load(); got != 2 {
		t.Fatalf("%d reconciles once the requeue is due, want 2", got)
	}
}
