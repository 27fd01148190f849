package engine_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/reconcilers/engine"
)

var configmaps = schema.GroupResource{Resource: "configmaps"}

func cm(name string) *eventv1.ObjectChanged {
	return &eventv1.ObjectChanged{
		Type: eventv1.ChangeType_CHANGE_TYPE_ADDED, Reason: "create", Encoding: eventv1.Encoding_ENCODING_JSON, Object: []byte(`{}`),
		Ref: &eventv1.ObjectRef{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: "default", Name: name},
	}
}

type replica struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	seen   sync.Map // key → count
	count  atomic.Int64
}

func startReplica(t *testing.T, l *eventlog.Log, ls *eventlog.Leases, name string) *replica {
	ctx, cancel := context.WithCancel(t.Context())
	r := &replica{name: name, cancel: cancel, done: make(chan struct{})}
	store := projections.New(kinds.Builtin(), nil)
	go store.Run(ctx, l)
	e := engine.New(store, engine.Options{Leases: ls, Holder: name, Partitions: 32})
	e.Register(engine.Registration{Name: "count", Primary: configmaps, Reconciler: engine.ReconcilerFunc(
		func(ctx context.Context, req engine.Request) (engine.Result, error) {
			r.seen.Store(req.Key.Name, true)
			r.count.Add(1)
			return engine.Result{}, nil
		})})
	go func() { defer close(r.done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// Three replicas share the keys evenly; when one stops, the others take its keys over.
func TestReplicasShareAndTakeOver(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	ls, err := l.Leases(ctx, "engine-test", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rs := []*replica{startReplica(t, l, ls, "a"), startReplica(t, l, ls, "b"), startReplica(t, l, ls, "c")}
	time.Sleep(3 * time.Second) // let the partitions settle among the three
	const n = 600
	for i := 0; i < n; i++ {
		if _, err := l.Create(ctx, cm(fmt.Sprintf("cm-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	all := map[string]bool{}
	for i := 0; i < n; i++ {
		all[fmt.Sprintf("cm-%d", i)] = true
	}
	waitSeen := func(want map[string]bool, among []*replica) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			missing := 0
			for k := range want {
				found := false
				for _, r := range among {
					if _, ok := r.seen.Load(k); ok {
						found = true
					}
				}
				if !found {
					missing++
				}
			}
			if missing == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d keys not reconciled", missing, len(want))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitSeen(all, rs)
	for _, r := range rs {
		share := float64(r.count.Load()) / n
		t.Logf("replica %s reconciled %d (%.0f%%)", r.name, r.count.Load(), share*100)
		if share < 0.20 || share > 0.46 {
			t.Errorf("replica %s handled %.0f%% of the keys, want 33%% ± 13%%", r.name, share*100)
		}
	}
	// Stop c: a and b take its partitions over, reconcile each of its keys once more, and share
	// the new keys.
	cKeys := map[string]bool{}
	rs[2].seen.Range(func(k, _ any) bool { cKeys[k.(string)] = true; return true })
	rs[2].cancel()
	<-rs[2].done
	for _, r := range rs[:2] {
		r.seen.Clear()
	}
	for i := n; i < n+60; i++ {
		name := fmt.Sprintf("cm-%d", i)
		cKeys[name] = true
		if _, err := l.Create(ctx, cm(name)); err != nil {
			t.Fatal(err)
		}
	}
	waitSeen(cKeys, rs[:2])
}
