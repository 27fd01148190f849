package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
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

// eventually polls cond until it holds, and fails the test with what cond says if it does not
// within d.
func eventually(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		ok, what := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
	}
}

type replica struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	seen   sync.Map // key → count
	count  atomic.Int64
	engine *engine.Engine
}

func startReplica(t *testing.T, l *eventlog.Log, ls *eventlog.Leases, name string) *replica {
	ctx, cancel := context.WithCancel(t.Context())
	r := &replica{name: name, cancel: cancel, done: make(chan struct{})}
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(ctx, l)
	e := engine.New(store, engine.Options{Leases: ls, Holder: name, Partitions: 32})
	e.Register(engine.Registration{Name: "count", For: configmaps, Reconciler: engine.ReconcilerFunc(
		func(ctx context.Context, req engine.Request) (engine.Result, error) {
			r.seen.Store(req.Key.Name, true)
			r.count.Add(1)
			return engine.Result{}, nil
		})})
	r.engine = e
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
	// Let the partitions settle among the three: each holds its share, and all are held.
	eventually(t, 30*time.Second, func() (bool, string) {
		total, fewest := 0, 32
		for _, r := range rs {
			n := len(r.engine.Partitions().Owned())
			total, fewest = total+n, min(fewest, n)
		}
		return total == 32 && fewest >= 10, fmt.Sprintf("partitions not shared: %d held, the fewest by one replica %d", total, fewest)
	})
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
		eventually(t, 20*time.Second, func() (bool, string) {
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
			return missing == 0, fmt.Sprintf("%d of %d keys not reconciled", missing, len(want))
		})
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

// An engine's metrics count each reconcile by result, as controller-runtime's do, and show how
// many partitions the replica holds (all of them, working alone).
func TestMetrics(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(ctx, l)
	reg := prometheus.NewPedanticRegistry()
	e := engine.New(store, engine.Options{Partitions: 16, Metrics: reg})
	e.Register(engine.Registration{Name: "count", For: configmaps, Reconciler: engine.ReconcilerFunc(
		func(ctx context.Context, req engine.Request) (engine.Result, error) {
			switch req.Key.Name {
			case "bad":
				return engine.Result{}, fmt.Errorf("%w: cannot", engine.ErrTerminal)
			case "later":
				return engine.Result{RequeueAfter: time.Hour}, nil
			}
			return engine.Result{}, nil
		})})
	done := make(chan struct{})
	runCtx, cancel := context.WithCancel(ctx)
	go func() { defer close(done); e.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, name := range []string{"ok-1", "ok-2", "bad", "later"} {
		if _, err := l.Create(ctx, cm(name)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		return e.Stats().Snapshot()["count"].Reconciles >= 4, fmt.Sprintf("reconciled %+v, want 4", e.Stats().Snapshot())
	})
	want := `
# HELP controller_runtime_reconcile_total Reconciles per reconciler (controller) and result: success, error, requeue_after.
# TYPE controller_runtime_reconcile_total counter
controller_runtime_reconcile_total{controller="count",result="error"} 1
controller_runtime_reconcile_total{controller="count",result="requeue_after"} 1
controller_runtime_reconcile_total{controller="count",result="success"} 2
# HELP logplane_reconciler_partitions_owned Partitions of the keys this replica holds (all of them when it works alone).
# TYPE logplane_reconciler_partitions_owned gauge
logplane_reconciler_partitions_owned 16
# HELP workqueue_depth Keys waiting in a reconciler's work queue.
# TYPE workqueue_depth gauge
workqueue_depth{name="count"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"controller_runtime_reconcile_total", "logplane_reconciler_partitions_owned", "workqueue_depth"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "controller_runtime_reconcile_time_seconds"); err != nil || n != 1 {
		t.Errorf("controller_runtime_reconcile_time_seconds: %d series, %v; want 1", n, err)
	}
}
