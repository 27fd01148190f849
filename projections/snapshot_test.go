package projections_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/kinds/kindstest"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// dump renders every live object of a store, with what a reader sees of it, one line each.
func dump(s *projections.Store) string {
	var b strings.Builder
	fmt.Fprintf(&b, "applied %d, %d objects\n", s.Applied(), s.Len())
	for _, gr := range s.Resources() {
		objs, _ := s.List(projections.Query{Resource: gr})
		for _, o := range objs {
			kind := "opaque"
			if o.Kind != nil {
				kind = o.Kind.Kind
			}
			fmt.Fprintf(&b, "%s %s seq=%d type=%v labels=%v fields=%v object=%x\n", o.Key, kind, o.Seq,
				o.Event.GetType(), o.Labels, o.Fields, o.Event.GetObject())
		}
	}
	return b.String()
}

// history writes a random workload to l: pods created, relabelled, rescheduled and deleted,
// plus objects of a resource no binary knows. It calls after(seq) after every append.
func history(t *testing.T, l *eventlog.Log, n int, seed uint64, after func(seq uint64)) {
	t.Helper()
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(seed, 7))
	live := map[int]*corev1.Pod{}
	revs := map[int]uint64{}
	for i := 0; i < n; i++ {
		id := rng.IntN(n/4 + 1)
		pod, ok := live[id]
		var seq uint64
		var err error
		switch {
		case i%50 == 7:
			ev := &eventv1.ObjectChanged{
				Type: eventv1.ChangeType_CHANGE_TYPE_ADDED, Reason: "create", Encoding: eventv1.Encoding_ENCODING_JSON,
				Ref:    &eventv1.ObjectRef{Group: "example.com", Version: "v1", Kind: "Widget", Resource: "widgets", Name: fmt.Sprintf("w-%d-%d", seed, i)},
				Object: []byte(fmt.Sprintf(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w-%d-%d"}}`, seed, i)),
				Labels: map[string]string{"color": []string{"red", "blue"}[i%2]},
			}
			if seq, err = l.Create(ctx, ev); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
			if after != nil {
				after(seq)
			}
			continue
		case !ok:
			pod = kindstest.RealisticPod(id, rng)
			pod.Name = fmt.Sprintf("s%d-%s", seed, pod.Name)
			seq, err = l.Create(ctx, kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, pod, eventv1.Encoding_ENCODING_PROTOBUF))
			live[id] = pod
		case rng.IntN(4) == 0:
			seq, err = l.Append(ctx, kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_DELETED, pod, eventv1.Encoding_ENCODING_PROTOBUF), revs[id])
			delete(live, id)
		default:
			pod = pod.DeepCopy()
			pod.Labels["tier"] = []string{"frontend", "backend", "cache", "batch"}[rng.IntN(4)]
			pod.Spec.NodeName = fmt.Sprintf("node-%03d", rng.IntN(10))
			pod.Status.Phase = []corev1.PodPhase{corev1.PodRunning, corev1.PodPending, corev1.PodSucceeded}[rng.IntN(3)]
			seq, err = l.Append(ctx, kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_MODIFIED, pod, eventv1.Encoding_ENCODING_PROTOBUF), revs[id])
			live[id] = pod
		}
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		revs[id] = seq
		if after != nil {
			after(seq)
		}
	}
}

func follow(t *testing.T, l *eventlog.Log, s *projections.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, eventlog.ErrClosed) {
			t.Errorf("run: %v", err)
		}
	})
}

func TestRestartEqualsBefore(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *eventlog.Config) { c.DataDir = dir }
	l := eventlogtest.Open(t, cfg)
	live := projections.New(builtin.Catalog(), nil)
	follow(t, l, live)
	var last uint64
	history(t, l, 300, 1, func(seq uint64) { last = seq })
	if _, err := live.Snapshot(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	history(t, l, 200, 2, func(seq uint64) { last = seq }) // a tail after the snapshot
	if err := live.WaitFor(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	before := dump(live)
	l.Close()

	// The process restarts: a new log on the same data directory, a new store.
	l2 := eventlogtest.Open(t, cfg)
	restarted := projections.New(builtin.Catalog(), nil)
	info, err := restarted.Restore(t.Context(), l2)
	if err != nil {
		t.Fatal(err)
	}
	if info.Seq == 0 || info.Seq >= last {
		t.Fatalf("restored snapshot at %d, want one between 0 and %d", info.Seq, last)
	}
	follow(t, l2, restarted)
	if err := restarted.WaitFor(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	if after := dump(restarted); after != before {
		t.Fatalf("projection after restart differs:\n%s", diffLines(before, after))
	}
}

func TestSnapshotPlusTailEqualsFullReplay(t *testing.T) {
	l := eventlogtest.Open(t)
	live := projections.New(builtin.Catalog(), nil)
	follow(t, l, live)
	var last uint64
	for round := range 3 {
		history(t, l, 150, uint64(10+round), func(seq uint64) { last = seq })
		if err := live.WaitFor(t.Context(), last); err != nil {
			t.Fatal(err)
		}
		if _, err := live.Snapshot(t.Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	history(t, l, 100, 20, func(seq uint64) { last = seq })

	full := projections.New(builtin.Catalog(), nil)
	if err := l.Replay(t.Context(), eventlog.Filter{}, 0, last, func(r eventlog.Record) error { full.Apply(r); return nil }); err != nil {
		t.Fatal(err)
	}
	fromSnap := projections.New(builtin.Catalog(), nil)
	info, err := fromSnap.Restore(t.Context(), l)
	if err != nil || info.Seq == 0 {
		t.Fatalf("restore: %v %+v", err, info)
	}
	if err := l.Replay(t.Context(), eventlog.Filter{}, fromSnap.Applied(), last, func(r eventlog.Record) error { fromSnap.Apply(r); return nil }); err != nil {
		t.Fatal(err)
	}
	if a, b := dump(full), dump(fromSnap); a != b {
		t.Fatalf("snapshot + tail differs from full replay:\n%s", diffLines(a, b))
	}
	if a, b := dump(full), dump(live); a != b {
		t.Fatalf("full replay differs from the live store:\n%s", diffLines(a, b))
	}
}

func TestAsOfEqualsStateThen(t *testing.T) {
	l := eventlogtest.Open(t)
	live := projections.New(builtin.Catalog(), nil)
	follow(t, l, live)
	then := map[uint64]string{}
	n := 0
	history(t, l, 400, 3, func(seq uint64) {
		n++
		if err := live.WaitFor(t.Context(), seq); err != nil {
			t.Fatal(err)
		}
		if n%37 == 0 {
			then[seq] = dump(live)
		}
		if n%100 == 50 { // snapshots at some points, so that views start from them
			if _, err := live.Snapshot(t.Context(), l); err != nil {
				t.Fatal(err)
			}
		}
	})
	if len(then) < 10 {
		t.Fatalf("only %d points recorded", len(then))
	}
	for _, seq := range slices.Sorted(maps.Keys(then)) {
		view, err := projections.At(t.Context(), l, builtin.Catalog(), seq)
		if err != nil {
			t.Fatalf("as of %d: %v", seq, err)
		}
		if got := dump(view); got != then[seq] {
			t.Fatalf("view as of %d differs from the state then:\n%s", seq, diffLines(then[seq], got))
		}
	}
	_, last, _ := l.Bounds(t.Context())
	if _, err := projections.At(t.Context(), l, builtin.Catalog(), last+1); !errors.Is(err, projections.ErrFuture) {
		t.Fatalf("as of the future: %v", err)
	}
}

func TestDamagedSnapshotFallsBack(t *testing.T) {
	l := eventlogtest.Open(t)
	live := projections.New(builtin.Catalog(), nil)
	follow(t, l, live)
	var last uint64
	history(t, l, 100, 4, func(seq uint64) { last = seq })
	if err := live.WaitFor(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	good, err := live.Snapshot(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	history(t, l, 50, 5, func(seq uint64) { last = seq })
	// A newer "snapshot" that is not one.
	if _, err := l.PutSnapshot(t.Context(), "objects", last, strings.NewReader("not a snapshot")); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	s := projections.New(builtin.Catalog(), slog.New(slog.NewTextHandler(&logs, nil)))
	info, err := s.Restore(t.Context(), l)
	if err != nil || info.Seq != good.Seq {
		t.Fatalf("restored %+v, %v; want the good snapshot at %d", info, err, good.Seq)
	}
	if !strings.Contains(logs.String(), "skipping a snapshot that cannot be read") || !strings.Contains(logs.String(), fmt.Sprintf("seq=%d", last)) {
		t.Fatalf("the damaged snapshot was not reported:\n%s", logs.String())
	}
	follow(t, l, s)
	if err := s.WaitFor(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	if err := live.WaitFor(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	if a, b := dump(live), dump(s); a != b {
		t.Fatalf("store from the older snapshot differs:\n%s", diffLines(a, b))
	}
}

func TestUnknownResourceKeptAndReportedOnce(t *testing.T) {
	l := eventlogtest.Open(t)
	var logs syncBuffer
	s := projections.New(builtin.Catalog(), slog.New(slog.NewTextHandler(&logs, nil)))
	follow(t, l, s)
	var last uint64
	history(t, l, 200, 6, func(seq uint64) { last = seq })
	if err := s.WaitFor(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	widgets, _ := s.List(projections.Query{Resource: schemaGR("example.com", "widgets")})
	if len(widgets) != 4 {
		t.Fatalf("%d widgets kept, want 4", len(widgets))
	}
	if widgets[0].Kind != nil || !bytes.Contains(widgets[0].Event.GetObject(), []byte(`"kind":"Widget"`)) {
		t.Fatalf("widget not kept as it was: %+v", widgets[0])
	}
	if _, err := widgets[0].Decode(); err == nil {
		t.Fatal("decoding an unknown kind succeeded")
	}
	if n := strings.Count(logs.String(), "does not know"); n != 1 {
		t.Fatalf("unknown resource reported %d times, want once:\n%s", n, logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// diffLines shows the first lines that differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 5; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d\n  want %.200s\n  got  %.200s\n", i, wl, gl)
			shown++
		}
	}
	return b.String()
}

func schemaGR(group, resource string) schema.GroupResource {
	return schema.GroupResource{Group: group, Resource: resource}
}

func TestRunSnapshotsByPolicy(t *testing.T) {
	l := eventlogtest.Open(t)
	s := projections.New(builtin.Catalog(), nil)
	follow(t, l, s)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- s.RunSnapshots(ctx, l, projections.SnapshotPolicy{Every: 20 * time.Millisecond, MinEvents: 40})
	}()
	var last uint64
	history(t, l, 30, 30, func(seq uint64) { last = seq })
	time.Sleep(100 * time.Millisecond)
	if snaps, err := l.Snapshots(t.Context(), "objects"); err != nil || len(snaps) != 0 {
		t.Fatalf("a snapshot after %d events, fewer than the policy's 40: %+v %v", last, snaps, err)
	}
	history(t, l, 30, 31, func(seq uint64) { last = seq })
	deadline := time.Now().Add(10 * time.Second)
	for {
		snaps, err := l.Snapshots(t.Context(), "objects")
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps) > 0 && snaps[0].Seq >= 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot after %d events: %+v", last, snaps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunSnapshots ended with %v", err)
	}
}

// TestScanSnapshot: ScanSnapshot hands over, in order, the objects that ReadSnapshot puts in a
// store (keys, sequences, events), and refuses what ReadSnapshot refuses: another projection's
// snapshot, a truncated one, one with bytes after its last object.
func TestScanSnapshot(t *testing.T) {
	l := eventlogtest.Open(t)
	history(t, l, 400, 3, nil)
	s := projections.New(builtin.Catalog(), slog.New(slog.DiscardHandler))
	if err := l.Replay(t.Context(), eventlog.Filter{}, 0, 0, func(r eventlog.Record) error { s.Apply(r); return nil }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	seq, err := s.WriteSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := projections.New(builtin.Catalog(), slog.New(slog.DiscardHandler))
	if err := want.ReadSnapshot(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	wantObjs := map[eventlog.Key]string{}
	for _, gr := range want.Resources() {
		objs, _ := want.List(projections.Query{Resource: gr})
		for _, o := range objs {
			wantObjs[o.Key] = fmt.Sprintf("%d %v %x", o.Seq, o.Event.GetType(), o.Event.GetObject())
		}
	}
	got := map[eventlog.Key]string{}
	gotSeq, err := projections.ScanSnapshot(bytes.NewReader(buf.Bytes()), "objects", func(o *projections.Object) error {
		if _, dup := got[o.Key]; dup {
			t.Errorf("%s twice", o.Key)
		}
		got[o.Key] = fmt.Sprintf("%d %v %x", o.Seq, o.Event.GetType(), o.Event.GetObject())
		return nil
	})
	if err != nil || gotSeq != seq {
		t.Fatalf("ScanSnapshot = %d, %v; want %d", gotSeq, err, seq)
	}
	if len(wantObjs) == 0 || !maps.Equal(got, wantObjs) {
		t.Errorf("ScanSnapshot found %d objects, ReadSnapshot %d, or they differ", len(got), len(wantObjs))
	}

	b := buf.Bytes()
	for name, c := range map[string]struct {
		data []byte
		proj string
	}{
		"another projection": {b, "other"},
		"truncated":          {b[:len(b)/2], "objects"},
		"bytes after":        {append(slices.Clone(b), 0, 1, 2), "objects"},
	} {
		_, scanErr := projections.ScanSnapshot(bytes.NewReader(c.data), c.proj, func(*projections.Object) error { return nil })
		readErr := projections.New(builtin.Catalog(), slog.New(slog.DiscardHandler), projections.WithName(c.proj)).ReadSnapshot(bytes.NewReader(c.data))
		if scanErr == nil || readErr == nil {
			t.Errorf("%s: ScanSnapshot: %v, ReadSnapshot: %v; want both to fail", name, scanErr, readErr)
		}
	}
}
