package projections_test

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/kinds/kindstest"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// TestUndecodableEventIsReportedAndSkipped: a message in the stream that is no event is logged
// with its sequence and skipped (its object keeps its last readable state, at that sequence);
// the store goes on with the events after it, and a snapshot and
// an as-of view pass over it the same way.
func TestUndecodableEventIsReportedAndSkipped(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Listening)
	var logs syncBuffer
	s := projections.New(builtin.Catalog(), slog.New(slog.NewTextHandler(&logs, nil)))
	follow(t, l, s)
	rng := rand.New(rand.NewPCG(3, 3))
	ctx := t.Context()
	a := kindstest.RealisticPod(1, rng)
	if _, err := l.Create(ctx, kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, a, eventv1.Encoding_ENCODING_PROTOBUF)); err != nil {
		t.Fatal(err)
	}
	key := eventlog.Key{Resource: "pods", Namespace: a.Namespace, Name: a.Name}
	bad := eventlogtest.PublishRaw(t, l, l.Subject(key), []byte("garbage, not an event"))
	b := kindstest.RealisticPod(2, rng)
	last, err := l.Create(ctx, kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, b, eventv1.Encoding_ENCODING_PROTOBUF))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	if s.Skipped() != 1 || s.Len() != 2 {
		t.Fatalf("skipped %d, holds %d objects; want 1 and 2", s.Skipped(), s.Len())
	}
	// Pod a keeps its last readable state, at the bad message's sequence: a write expecting it
	// supersedes the bad message (which must never block writes to its object).
	if o, ok := s.Get(key); !ok || o.Seq != bad || o.Event.GetRef().GetName() != a.Name {
		t.Fatalf("pod a after the bad message: %+v, want its state before at %d", o, bad)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("seq=%d", bad)) {
		t.Fatalf("the bad message at %d was not reported with its sequence:\n%s", bad, logs.String())
	}
	if _, err := s.Snapshot(ctx, l); err != nil {
		t.Fatal(err)
	}
	view, err := projections.At(ctx, l, builtin.Catalog(), bad)
	if err != nil || view.Len() != 1 || view.Skipped() != 1 {
		t.Fatalf("as of the bad message: %v, %d objects, %d skipped", err, view.Len(), view.Skipped())
	}
}

// TestRetentionNeedsASnapshot: once retention has dropped the first events, a store cannot be
// built from the log alone and says so (ErrGone) rather than serve an incomplete state; with a
// snapshot taken before the drop it restarts.
func TestRetentionNeedsASnapshot(t *testing.T) {
	l := eventlogtest.Open(t, func(c *eventlog.Config) { c.MaxBytes = 256 << 10 })
	live := projections.New(builtin.Catalog(), nil)
	follow(t, l, live)
	var last uint64
	history(t, l, 60, 40, func(seq uint64) { last = seq })
	if err := live.WaitFor(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	snap, err := live.Snapshot(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	history(t, l, 60, 41, func(seq uint64) { last = seq })
	if first, _, _ := l.Bounds(t.Context()); first <= 1 || first > snap.Seq+1 {
		t.Fatalf("the test needs retention to have dropped events before the snapshot only: first %d, snapshot %d", first, snap.Seq)
	}
	if err := projections.New(builtin.Catalog(), nil).Run(t.Context(), l); !errors.Is(err, eventlog.ErrGone) {
		t.Fatalf("run from nothing: %v, want ErrGone", err)
	}
	if _, err := projections.At(t.Context(), l, builtin.Catalog(), snap.Seq-1); !errors.Is(err, eventlog.ErrGone) {
		t.Fatalf("as of before the snapshot: %v, want ErrGone", err)
	}
	s := projections.New(builtin.Catalog(), nil)
	if _, err := s.Restore(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	follow(t, l, s)
	if err := s.WaitFor(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	if err := live.WaitFor(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	if a, b := dump(live), dump(s); a != b {
		t.Fatalf("restored store differs:\n%s", diffLines(a, b))
	}
}
