package projections_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/kinds/kindstest"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// WaitDelivered returns once every subscriber has returned from every change up to the
// sequence, not when the store has merely applied it; an event the store cannot read counts as
// delivered.
func TestWaitDelivered(t *testing.T) {
	s := projections.New(builtin.Catalog(), nil)
	release := make(chan struct{})
	s.Subscribe(func(c projections.Change) {
		if c.Seq == 2 {
			<-release
		}
	})
	rng := rand.New(rand.NewPCG(1, 1))
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for i := range 2 {
			ev := kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, kindstest.RealisticPod(i, rng), eventv1.Encoding_ENCODING_PROTOBUF)
			s.Apply(eventlog.Record{Seq: uint64(i + 1), Event: ev})
		}
		s.Apply(eventlog.Record{Seq: 3, Err: errors.New("unreadable")})
	}()
	if err := s.WaitFor(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitDelivered(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := s.WaitDelivered(short, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDelivered(2) while a subscriber still handles 2: %v", err)
	}
	close(release)
	<-applied
	if err := s.WaitDelivered(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
}
