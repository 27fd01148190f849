package job_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// trace records, for a benchmark run with -v, when each pod reached each stage (as the
// projection applied it), to say where the time goes.
type trace struct {
	mu     sync.Mutex
	start  time.Time
	stages map[string]map[string]time.Time // stage → pod or job → first time
}

var stageOrder = []string{"job created", "pod created", "pod bound", "pod running", "pod succeeded", "job complete"}

func startTrace(store *projections.Store) (*trace, func()) {
	tr := &trace{start: time.Now(), stages: map[string]map[string]time.Time{}}
	for _, s := range stageOrder {
		tr.stages[s] = map[string]time.Time{}
	}
	cancel := store.Subscribe(func(ch projections.Change) {
		if ch.New == nil {
			return
		}
		now := time.Now()
		name := ch.New.Key.Name
		switch ch.New.Key.Resource {
		case "pods":
			tr.mark("pod created", name, now)
			if ch.New.Fields["spec.nodeName"] != "" {
				tr.mark("pod bound", name, now)
			}
			switch corev1.PodPhase(ch.New.Fields["status.phase"]) {
			case corev1.PodRunning:
				tr.mark("pod running", name, now)
			case corev1.PodSucceeded:
				tr.mark("pod succeeded", name, now)
			}
		case "jobs":
			tr.mark("job created", name, now)
			if obj, err := ch.New.Decode(); err == nil && hasCondition(obj.(*batchv1.Job), batchv1.JobComplete, "") {
				tr.mark("job complete", name, now)
			}
		}
	})
	return tr, cancel
}

func (tr *trace) mark(stage, name string, at time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if _, ok := tr.stages[stage][name]; !ok {
		tr.stages[stage][name] = at
	}
}

// log writes, per stage, how many reached it and when (from the start: first, median, last),
// and the count of events in the log by resource, actor and reason.
func (tr *trace) log(tb testing.TB, c *reconcilerstest.Cluster) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, s := range stageOrder {
		var ds []time.Duration
		for _, at := range tr.stages[s] {
			ds = append(ds, at.Sub(tr.start))
		}
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		tb.Logf("%-14s %6d  first %7.3fs  median %7.3fs  last %7.3fs", s, len(ds), ds[0].Seconds(), ds[len(ds)/2].Seconds(), ds[len(ds)-1].Seconds())
	}
	counts := map[string]int{}
	total := 0
	err := c.Registry.Scan(context.Background(), 0, ^uint64(0), func(rec eventlog.Record) error {
		if rec.Err != nil {
			return nil
		}
		ev := rec.Event
		actor := ev.GetActor().GetName()
		if ev.GetActor().GetKind() == eventv1.ActorKind_ACTOR_KIND_NODE {
			actor = "*" // every node together
		}
		counts[fmt.Sprintf("%s by %s/%s (%s)", ev.GetRef().GetResource(), ev.GetActor().GetKind(), actor, ev.GetReason())]++
		total++
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
	for _, k := range keys {
		if counts[k] > 10 {
			tb.Logf("%7d %s", counts[k], k)
		}
	}
	tb.Logf("%7d events in all", total)
}
