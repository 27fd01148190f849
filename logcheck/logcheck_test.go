package logcheck_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/kinds/kindstest"
	"github.com/logplane/logplane/logcheck"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// TestCheckFindsAndRepairAppends damages a log as the issue found logs damaged: an unreadable
// message on a live pod's subject, a subject holding only an unreadable message, an object that
// does not decode inside a good envelope, a revision that does not follow (modified, never
// added), and a subject purged after a snapshot (the projection restarted from that snapshot
// serves the pod, stale, with no tombstone). Check must report each with its sequence and key;
// Repair must append, as system/log-repair, what answers the unreadable and purged ones; a
// second Check finds only what history keeps (the object and the chain, which no append can
// undo) and a projection rebuilt from the snapshot agrees with the log.
func TestCheckFindsAndRepairAppends(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Listening)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	pods := make([]eventlog.Key, 6)
	for i := range pods {
		p := kindstest.RealisticPod(i, rng)
		if _, err := l.Create(ctx, kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, p, eventv1.Encoding_ENCODING_PROTOBUF)); err != nil {
			t.Fatal(err)
		}
		pods[i] = eventlog.Key{Resource: "pods", Namespace: p.Namespace, Name: p.Name}
	}
	// A snapshot, then pod 5's subject is purged behind the log's back.
	store := projections.New(builtin.Catalog(), slog.Default())
	if err := l.Replay(ctx, eventlog.Filter{}, 0, 0, func(r eventlog.Record) error { store.Apply(r); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Snapshot(ctx, l); err != nil {
		t.Fatal(err)
	}
	purge(t, l, l.Subject(pods[5]))

	badTail := eventlogtest.PublishRaw(t, l, l.Subject(pods[0]), []byte("\x00garbage"))
	onlyBad := eventlog.Key{Resource: "configmaps", Namespace: "default", Name: "only-garbage"}
	badOnly := eventlogtest.PublishRaw(t, l, l.Subject(onlyBad), []byte("not an event"))
	// A good envelope around an object that does not decode.
	broken := kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_MODIFIED, kindstest.RealisticPod(1, rng), eventv1.Encoding_ENCODING_PROTOBUF)
	broken.Ref.Name, broken.Object = pods[1].Name, []byte("\xff\xff\xff")
	broken.Ref.Namespace = pods[1].Namespace
	brokenSeq, err := l.Append(ctx, broken, eventlog.AnyRevision)
	if err != nil {
		t.Fatal(err)
	}
	ghost := kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_MODIFIED, kindstest.RealisticPod(99, rng), eventv1.Encoding_ENCODING_PROTOBUF)
	ghostSeq, err := l.Append(ctx, ghost, eventlog.AnyRevision)
	if err != nil {
		t.Fatal(err)
	}

	opts := logcheck.Options{Catalog: builtin.Catalog()}
	rep, err := logcheck.Check(ctx, l, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Findings {
		t.Logf("found: seq %d %s %s: %s (repair: %s)", f.Seq, f.Problem, f.Key, f.Detail, f.Repair)
	}
	want := []struct {
		problem logcheck.Problem
		seq     uint64
		key     eventlog.Key
	}{
		{logcheck.Undecodable, badTail, pods[0]},
		{logcheck.UnreadableTail, badTail, pods[0]},
		{logcheck.Undecodable, badOnly, onlyBad},
		{logcheck.UnreadableTail, badOnly, onlyBad},
		{logcheck.UndecodableObject, brokenSeq, pods[1]},
		{logcheck.Chain, ghostSeq, eventlog.KeyOf(ghost)},
		{logcheck.Purged, 6, pods[5]},
		{logcheck.Missing, 6, eventlog.Key{}},
	}
	for _, w := range want {
		if !has(rep.Findings, w.problem, w.seq, w.key) {
			t.Errorf("check did not report %s at %d on %s", w.problem, w.seq, w.key)
		}
	}
	if rep.Events != ghostSeq-1 || rep.OK() {
		t.Errorf("read %d events (want %d), OK %v", rep.Events, ghostSeq-1, rep.OK())
	}

	done, err := logcheck.Repair(ctx, l, rep, opts, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 3 {
		t.Fatalf("repair appended %d events, want 3 (pod 0, only-garbage, pod 5): %+v", len(done), done)
	}
	for _, d := range done {
		h, err := l.History(ctx, d.Finding.Key)
		if err != nil || len(h) == 0 || h[len(h)-1].Seq != d.Seq {
			t.Fatalf("the history of %s does not end with the repair at %d: %v", d.Finding.Key, d.Seq, err)
		}
		r := h[len(h)-1]
		if r.Event.GetActor().GetName() != "log-repair" || r.Event.GetReason() != "repair" {
			t.Errorf("the repair of %s is by %v for %q", d.Finding.Key, r.Event.GetActor(), r.Event.GetReason())
		}
	}
	if r, err := l.Get(ctx, pods[0]); err != nil || r.Stale != nil || r.Event.GetReason() != "repair" {
		t.Errorf("pod 0 after repair: %+v, %v", r, err)
	}
	if r, err := l.Get(ctx, pods[5]); err != nil || r.Event.GetReason() != "repair" {
		t.Errorf("purged pod 5 after repair: %+v, %v", r, err)
	}
	if _, err := l.Get(ctx, onlyBad); err == nil {
		t.Error("the subject holding only garbage is live after repair; want a tombstone")
	}

	again, err := logcheck.Check(ctx, l, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range again.Findings {
		if f.Problem != logcheck.UndecodableObject && f.Problem != logcheck.Chain {
			t.Errorf("after repair, check still finds %s at %d on %s: %s", f.Problem, f.Seq, f.Key, f.Detail)
		}
	}
	if len(again.Repaired) < 3 {
		t.Errorf("after repair, check reports %d findings as repaired, want the unreadable messages and the purge", len(again.Repaired))
	}
	// A restart from the snapshot plus the tail serves what the log says.
	restarted := projections.New(builtin.Catalog(), slog.Default())
	if _, err := restarted.Restore(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := l.Replay(ctx, eventlog.Filter{}, restarted.Applied(), 0, func(r eventlog.Record) error { restarted.Apply(r); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range pods {
		o, ok := restarted.Get(k)
		r, err := l.Get(ctx, k)
		if !ok || err != nil || o.Seq != r.Seq {
			t.Errorf("%s: the restarted projection has %v (%v), the log %d (%v)", k, o, ok, r.Seq, err)
		}
	}
}

func has(fs []logcheck.Finding, p logcheck.Problem, seq uint64, key eventlog.Key) bool {
	for _, f := range fs {
		if f.Problem == p && f.Seq == seq && f.Key == key && (p == logcheck.Missing || strings.TrimSpace(f.Detail) != "") {
			return true
		}
	}
	return false
}

// purge removes every message of subject from the stream, as `nats stream purge --subject` does.
func purge(t *testing.T, l *eventlog.Log, subject string) {
	t.Helper()
	nc := eventlogtest.Connect(t, l, eventlog.Identity{Role: eventlog.RoleAdmin}) // only the admin may purge
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := js.Stream(ctx, "LOGPLANE")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		t.Fatal(err)
	}
}

// TestCheckComparesSnapshots: a snapshot written by a projection that missed events (one pod's
// creation, another pod's update) differs from a replay up to its sequence: Check reports the
// object it lacks and the revision it holds instead of the replay's, each with the snapshot's
// sequence and the key, and nothing else.
func TestCheckComparesSnapshots(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(3, 4))
	var keys []eventlog.Key
	var seqs []uint64
	var first *corev1.Pod
	for i := range 4 {
		p := kindstest.RealisticPod(i, rng)
		if i == 0 {
			first = p.DeepCopy()
		}
		seq, err := l.Create(ctx, kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, p, eventv1.Encoding_ENCODING_PROTOBUF))
		if err != nil {
			t.Fatal(err)
		}
		keys, seqs = append(keys, eventlog.Key{Resource: "pods", Namespace: p.Namespace, Name: p.Name}), append(seqs, seq)
	}
	first.Labels["revision"] = "2"
	updated, err := l.Append(ctx, kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_MODIFIED, first, eventv1.Encoding_ENCODING_PROTOBUF), seqs[0])
	if err != nil {
		t.Fatal(err)
	}
	// Another pod after it, which the projection applies: the snapshot is stamped with its sequence.
	if _, err := l.Create(ctx, kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, kindstest.RealisticPod(4, rng), eventv1.Encoding_ENCODING_PROTOBUF)); err != nil {
		t.Fatal(err)
	}
	store := projections.New(builtin.Catalog(), slog.Default())
	if err := l.Replay(ctx, eventlog.Filter{}, 0, 0, func(r eventlog.Record) error {
		if r.Seq != seqs[2] && r.Seq != updated { // misses pod 2's creation and pod 0's update
			store.Apply(r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	snap, err := store.Snapshot(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := logcheck.Check(ctx, l, logcheck.Options{Catalog: builtin.Catalog()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, string(f.Problem)+" "+f.Key.String()+" "+f.Detail)
		if f.Seq != snap.Seq {
			t.Errorf("finding at %d, want the snapshot's sequence %d: %+v", f.Seq, snap.Seq, f)
		}
	}
	want := []string{"lacks the object", "holds revision"}
	if len(got) != 2 || rep.Snapshots != 1 {
		t.Fatalf("findings:\n%s\nwant 2 (snapshot lacks %s, holds an older revision of %s)", strings.Join(got, "\n"), keys[2], keys[0])
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.Contains(g, w)
		}
		if !found {
			t.Errorf("no finding saying %q:\n%s", w, strings.Join(got, "\n"))
		}
	}
}
