package projections_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/kinds/kindstest"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// writePods fills a log with pods realistic pods, each created and then updated (status and
// labels) until it has revisions revisions, from 16 writers: pods*revisions events in all. It
// returns the last sequence.
func writePods(b *testing.B, l *eventlog.Log, pods, revisions int) uint64 {
	b.Helper()
	ctx := b.Context()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(next.Load()), 9))
			for {
				i := int(next.Add(1)) - 1
				if i >= pods {
					return
				}
				pod := kindstest.RealisticPod(i, rng)
				for r := range revisions {
					typ := eventv1.ChangeType_CHANGE_TYPE_ADDED
					if r > 0 {
						typ = eventv1.ChangeType_CHANGE_TYPE_MODIFIED
						pod.Status.Conditions[1].LastTransitionTime.Time = pod.Status.Conditions[1].LastTransitionTime.Add(time.Duration(r) * time.Second)
						pod.Labels["revision"] = strconv.Itoa(r)
					}
					if _, err := l.Append(ctx, kindstest.PodEvent(b, typ, pod, eventv1.Encoding_ENCODING_PROTOBUF), eventlog.AnyRevision); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	_, last, err := l.Bounds(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return last
}

func openLog(b *testing.B, dir string) *eventlog.Log {
	b.Helper()
	l, err := eventlog.Open(b.Context(), eventlog.Config{DataDir: dir, Durability: eventlog.Lazy})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkRebuild replays a log of 100,000 events about 25,000 realistic ~2 KB pods (each
// created and updated three times) into an empty store, as a restart with no snapshot does, from
// a log whose blocks are S2-compressed (blocks=s2, the default) and from one whose blocks are
// not (blocks=none). Sub-benchmarks: from the log with Replay (beyond 4,096 events an ordered
// consumer that ends at the last event: the path At and a cold start take), from the log with
// Run (the ordered consumer a live store follows with), and Apply alone on records already in
// memory (the store's own cost). Metrics: events/s, events/cpu-s (per second of CPU the whole
// process used, server included, which other tenants' load does not inflate) and disk-MB (the
// stream's files).
func BenchmarkRebuild(b *testing.B) {
	const pods, revisions = 25_000, 4
	var recs []eventlog.Record
	for _, blocks := range []string{"s2", "none"} {
		b.Run("blocks="+blocks, func(b *testing.B) {
			dir := b.TempDir()
			l, err := eventlog.Open(b.Context(), eventlog.Config{DataDir: dir, Durability: eventlog.Lazy, NoCompression: blocks == "none"})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			last := writePods(b, l, pods, revisions)
			events := float64(last)
			disk := dirMB(b, dir)
			b.Run("from=replay", func(b *testing.B) {
				var s *projections.Store
				cpu0 := cpuTime()
				for b.Loop() {
					s = projections.New(builtin.Catalog(), nil)
					if err := l.Replay(b.Context(), eventlog.Filter{}, 0, 0, func(r eventlog.Record) error { s.Apply(r); return nil }); err != nil {
						b.Fatal(err)
					}
				}
				if s.Len() != pods {
					b.Fatalf("%d objects, want %d", s.Len(), pods)
				}
				b.ReportMetric(events*float64(b.N)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(events*float64(b.N)/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
				b.ReportMetric(disk, "disk-MB")
			})
			b.Run("from=follow", func(b *testing.B) {
				cpu0 := cpuTime()
				for b.Loop() {
					s := projections.New(builtin.Catalog(), nil)
					ctx, cancel := context.WithCancel(b.Context())
					done := make(chan error, 1)
					go func() { done <- s.Run(ctx, l) }()
					if err := s.WaitFor(ctx, last); err != nil {
						b.Fatal(err)
					}
					cancel()
					<-done
				}
				b.ReportMetric(events*float64(b.N)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(events*float64(b.N)/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
			})
			if recs == nil {
				if err := l.Replay(b.Context(), eventlog.Filter{}, 0, 0, func(r eventlog.Record) error { recs = append(recs, r); return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("from=memory", func(b *testing.B) {
		events := float64(len(recs))
		cpu0 := cpuTime()
		for b.Loop() {
			s := projections.New(builtin.Catalog(), nil)
			for _, r := range recs {
				s.Apply(r)
			}
		}
		b.ReportMetric(events*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(events*float64(b.N)/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
	})
}

// dirMB is the size of the files under dir, in MB.
func dirMB(b *testing.B, dir string) float64 {
	b.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / 1e6
}

// BenchmarkRestart restarts a process holding 100,000 realistic pods whose log has a history of
// 1 and of 5 revisions per pod (100,000 and 500,000 events): it opens the log on its data
// directory (starting the embedded server), restores the latest snapshot (taken 1,000 events
// before the end) and replays the tail. Metrics: restart-ms (all of that; open-ms and
// restored-ms are the times from the start to the log being open and to the snapshot being
// loaded), restart-cpu-ms (the CPU time the process spent on it, which other tenants' load does
// not inflate), snapshot-MB (its
// size), heap-MB (the live heap of the restored store: the resident memory the projection of
// 100,000 pods costs) and rss-MB (the whole process, server included). restart-ms is the median
// of the iterations: run with -benchtime Nx.
func BenchmarkRestart(b *testing.B) {
	// Components log at info; their lines would split the benchmark's result line.
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	b.Cleanup(func() { slog.SetDefault(prev) })
	const pods, tail = 100_000, 1000
	for _, revisions := range []int{1, 5} {
		b.Run(fmt.Sprintf("objects=100000/history=%d", pods*revisions), func(b *testing.B) {
			dir := b.TempDir()
			l := openLog(b, dir)
			writePods(b, l, pods-tail/revisions, revisions)
			live := projections.New(builtin.Catalog(), nil)
			if err := l.Replay(b.Context(), eventlog.Filter{}, 0, 0, func(r eventlog.Record) error { live.Apply(r); return nil }); err != nil {
				b.Fatal(err)
			}
			info, err := live.Snapshot(b.Context(), l)
			if err != nil {
				b.Fatal(err)
			}
			// The tail: pods created after the snapshot.
			rng := rand.New(rand.NewPCG(5, 5))
			for i := range tail {
				pod := kindstest.RealisticPod(pods+i, rng)
				if _, err := l.Append(b.Context(), kindstest.PodEvent(b, eventv1.ChangeType_CHANGE_TYPE_ADDED, pod, eventv1.Encoding_ENCODING_PROTOBUF), eventlog.AnyRevision); err != nil {
					b.Fatal(err)
				}
			}
			_, last, _ := l.Bounds(b.Context())
			wantLen := live.Len() + tail
			live = nil
			l.Close()

			var heap, rss float64
			var took, opened, restored, cpu []time.Duration
			b.ResetTimer()
			for b.Loop() {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				start, cpu0 := time.Now(), cpuTime()
				l := openLog(b, dir)
				opened = append(opened, time.Since(start))
				s := projections.New(builtin.Catalog(), nil)
				if _, err := s.Restore(b.Context(), l); err != nil {
					b.Fatal(err)
				}
				restored = append(restored, time.Since(start))
				if err := l.Replay(b.Context(), eventlog.Filter{}, s.Applied(), 0, func(r eventlog.Record) error { s.Apply(r); return nil }); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				cpu = append(cpu, cpuTime()-cpu0)
				b.StopTimer()
				if s.Applied() != last || s.Len() != wantLen {
					b.Fatalf("restored to %d with %d objects, want %d with %d", s.Applied(), s.Len(), last, wantLen)
				}
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				heap = float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
				rss = residentMB()
				runtime.KeepAlive(s)
				l.Close()
				b.StartTimer()
			}
			median := func(ds []time.Duration) float64 {
				slices.Sort(ds)
				return float64(ds[len(ds)/2].Microseconds()) / 1000
			}
			b.ReportMetric(median(took), "restart-ms")
			b.ReportMetric(median(opened), "open-ms")
			b.ReportMetric(median(restored), "restored-ms")
			b.ReportMetric(median(cpu), "restart-cpu-ms")
			b.ReportMetric(float64(info.Size)/(1<<20), "snapshot-MB")
			b.ReportMetric(heap, "heap-MB")
			b.ReportMetric(rss, "rss-MB")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system: on a shared machine, a figure
// that other tenants' load does not inflate the way it inflates wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0 // no figure
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// residentMB is the process's resident set size.
func residentMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0 // not on Linux: no figure
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64) // 0 if malformed
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkPodEncoding encodes and decodes a realistic pod in the two encodings the log
// supports, to choose the one objects are written in. Metrics: ns/op and bytes (encoded size).
func BenchmarkPodEncoding(b *testing.B) {
	pod := kindstest.RealisticPod(7, rand.New(rand.NewPCG(7, 7)))
	for _, enc := range []eventv1.Encoding{eventv1.Encoding_ENCODING_PROTOBUF, eventv1.Encoding_ENCODING_JSON} {
		name := strings.ToLower(strings.TrimPrefix(enc.String(), "ENCODING_"))
		data, err := kinds.Encode(pod, enc)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encoding="+name+"/op=encode", func(b *testing.B) {
			for b.Loop() {
				if _, err := kinds.Encode(pod, enc); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data)), "bytes")
		})
		b.Run("encoding="+name+"/op=decode", func(b *testing.B) {
			for b.Loop() {
				if _, err := kindstest.PodKind.Decode(enc, data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data)), "bytes")
		})
	}
}

// BenchmarkStoreKeeps compares the two ways a store could keep objects: encoded, as the event
// carries them (decoded on every read, which gives the caller its own copy), or decoded (deep
// copied on every read, since callers may change what they get). Metrics: ns/op of one read
// that hands the caller an object it owns, and heap-MB for 100,000 pods kept that way.
func BenchmarkStoreKeeps(b *testing.B) {
	const n = 100_000
	heapOf := func(build func() any) float64 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		kept := build()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(kept)
		return float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	}
	b.Run("keeps=bytes", func(b *testing.B) {
		var evs []*eventv1.ObjectChanged
		heap := heapOf(func() any {
			rng := rand.New(rand.NewPCG(8, 8))
			evs = make([]*eventv1.ObjectChanged, n)
			for i := range evs {
				evs[i] = kindstest.PodEvent(b, eventv1.ChangeType_CHANGE_TYPE_ADDED, kindstest.RealisticPod(i, rng), eventv1.Encoding_ENCODING_PROTOBUF)
			}
			return evs
		})
		i := 0
		for b.Loop() {
			if _, err := kindstest.PodKind.Decode(evs[i%n].Encoding, evs[i%n].Object); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(heap, "heap-MB")
	})
	b.Run("keeps=decoded", func(b *testing.B) {
		var kept []*corev1.Pod
		heap := heapOf(func() any {
			rng := rand.New(rand.NewPCG(8, 8))
			kept = make([]*corev1.Pod, n)
			for i := range kept {
				// As the store would have it: decoded from the log, not built in memory.
				data, err := kinds.Encode(kindstest.RealisticPod(i, rng), eventv1.Encoding_ENCODING_PROTOBUF)
				if err != nil {
					b.Fatal(err)
				}
				obj, err := kindstest.PodKind.Decode(eventv1.Encoding_ENCODING_PROTOBUF, data)
				if err != nil {
					b.Fatal(err)
				}
				kept[i] = obj.(*corev1.Pod)
			}
			return kept
		})
		i := 0
		for b.Loop() {
			_ = kept[i%n].DeepCopy()
			i++
		}
		b.ReportMetric(heap, "heap-MB")
	})
}

// BenchmarkSnapshotCodec writes and reads a snapshot of 100,000 realistic pods in memory: the
// store's own share of a restart. Metrics: ns/op, snapshot-MB, and store-heap-MB, the live heap
// of a store holding those 100,000 pods (objects, envelopes, indexes).
func BenchmarkSnapshotCodec(b *testing.B) {
	s := projections.New(builtin.Catalog(), nil)
	applyPods(b, s, 100_000)
	var buf bytes.Buffer
	if _, err := s.WriteSnapshot(&buf); err != nil {
		b.Fatal(err)
	}
	b.Run("op=write", func(b *testing.B) {
		for b.Loop() {
			var w bytes.Buffer
			if _, err := s.WriteSnapshot(&w); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(buf.Len())/(1<<20), "snapshot-MB")
	})
	b.Run("op=read", func(b *testing.B) {
		var heap float64
		var cpu time.Duration
		for b.Loop() {
			b.StopTimer()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.StartTimer()
			cpu0 := cpuTime()
			r := projections.New(builtin.Catalog(), nil)
			if err := r.ReadSnapshot(bytes.NewReader(buf.Bytes())); err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - cpu0
			b.StopTimer()
			if r.Len() != 100_000 {
				b.Fatal(r.Len())
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap = float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
			runtime.KeepAlive(r)
			b.StartTimer()
		}
		b.ReportMetric(heap, "store-heap-MB")
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	})
}
