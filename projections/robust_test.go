package projections_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// TestUndecodableEventIsReportedAndSkipped: a message in the stream that is no event is logged
// with its sequence and skipped; the store goes on with the events after it, and a snapshot and
// an as-of view pass over it the same way.
func TestUndecodableEventIsReportedAndSkipped(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Listening)
	var logs syncBuffer
	s := projections.New(kinds.Builtin(), slog.New(slog.NewTextHandler(&logs, nil)))
	follow(t, l, s)
	rng := rand.New(rand.NewPCG(3, 3))
	ctx := t.Context()
	a := realisticPod(1, rng)
	if _, err := l.Create(ctx, podEventOf(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, a, eventv1.Encoding_ENCODING_PROTOBUF)); err != nil {
		t.Fatal(err)
	}
	key := eventlog.Key{Resource: "pods", Namespace: a.Namespace, Name: a.Name}
	bad := eventlogtest.PublishRaw(t, l, l.Subject(key), []byte("garbage, not an event"))
	b := realisticPod(2, rng)
	last, err := l.Create(ctx, podEventOf(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, b, eventv1.Encoding_ENCODING_PROTOBUF))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	if s.Skipped() != 1 || s.Len() != 2 {
		t.Fatalf("skipped %d, holds %d objects; want 1 and 2", s.Skipped(), s.Len())
	}
	if o, ok := s.Get(key); !ok || o.Seq >= bad {
		t.Fatalf("pod a after the bad message: %+v", o)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("seq=%d", bad)) {
		t.Fatalf("the bad message at %d was not reported with its sequence:\n%s", bad, logs.String())
	}
	if _, err := s.Snapshot(ctx, l); err != nil {
		t.Fatal(err)
	}
	view, err := projections.At(ctx, l, kinds.Builtin(), bad)
	if err != nil || view.Len() != 1 || view.Skipped() != 1 {
		t.Fatalf("as of the bad message: %v, %d objects, %d skipped", err, view.Len(), view.Skipped())
	}
}
