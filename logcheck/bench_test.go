package logcheck_test

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/kinds/kindstest"
	"github.com/logplane/logplane/logcheck"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// BenchmarkCheck runs Check, objects decoded, on a log of LOGPLANE_BENCH_CHECK_EVENTS events
// (1,000,000 by default: 250,000 realistic ~2 KB pods, each created and updated three times,
// S2-compressed blocks as by default) with a snapshot at its end. The log is written once into
// LOGPLANE_BENCH_CHECK_DIR when set (and reused by later runs), else into a temporary directory.
// The collector runs at GOGC=400, as `logplane log check` sets it. Metrics: events/s, check-s
// (seconds for the whole check), cpu-s (CPU seconds the process used for it, the server's
// included, which other tenants' load does not inflate) and events.
func BenchmarkCheck(b *testing.B) {
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	b.Cleanup(func() { slog.SetDefault(prev) })
	events := 1_000_000
	if s := os.Getenv("LOGPLANE_BENCH_CHECK_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		events = n
	}
	dir := os.Getenv("LOGPLANE_BENCH_CHECK_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	ctx := b.Context()
	l, err := eventlog.Open(ctx, eventlog.Config{DataDir: dir, Durability: eventlog.Lazy})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if _, last, err := l.Bounds(ctx); err != nil {
		b.Fatal(err)
	} else if last < uint64(events) {
		b.Logf("writing %d events into %s", events, dir)
		writePodRevisions(b, l, events/4, 4)
		store := projections.New(builtin.Catalog(), slog.Default())
		if err := l.Replay(ctx, eventlog.Filter{}, 0, 0, func(r eventlog.Record) error { store.Apply(r); return nil }); err != nil {
			b.Fatal(err)
		}
		if _, err := store.Snapshot(ctx, l); err != nil {
			b.Fatal(err)
		}
	}
	var took []time.Duration
	var n uint64
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		rep, err := logcheck.Check(ctx, l, logcheck.Options{Catalog: builtin.Catalog()})
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		if !rep.OK() || rep.Objects != rep.Events || rep.Snapshots != 1 {
			b.Fatalf("check: %d findings, %d events, %d objects decoded, %d snapshots", len(rep.Findings), rep.Events, rep.Objects, rep.Snapshots)
		}
		n = rep.Events
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	var total time.Duration
	for _, d := range took {
		total += d
	}
	avg := total / time.Duration(len(took))
	b.ReportMetric(float64(n)/avg.Seconds(), "events/s")
	b.ReportMetric(avg.Seconds(), "check-s")
	b.ReportMetric(cpu.Seconds()/float64(len(took)), "cpu-s")
	b.ReportMetric(float64(n), "events")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writePodRevisions appends pods realistic pods, each created then updated until it has
// revisions revisions, from 16 writers.
func writePodRevisions(b *testing.B, l *eventlog.Log, pods, revisions int) {
	ctx := b.Context()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				i := int(next.Add(1)) - 1
				if i >= pods {
					return
				}
				pod := kindstest.RealisticPod(i, rng)
				var seq uint64
				for r := range revisions {
					typ := eventv1.ChangeType_CHANGE_TYPE_ADDED
					expect := eventlog.NoRevision
					if r > 0 {
						typ, expect = eventv1.ChangeType_CHANGE_TYPE_MODIFIED, seq
						pod.Labels["revision"] = strconv.Itoa(r)
					}
					var err error
					if seq, err = l.Append(ctx, kindstest.PodEvent(b, typ, pod, eventv1.Encoding_ENCODING_PROTOBUF), expect); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
