package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
)

type nopWriter struct{}

func (nopWriter) Bind(context.Context, *corev1.Pod, string, uint64) error { return nil }
func (nopWriter) SetPodCondition(context.Context, *corev1.Pod, corev1.PodCondition, uint64) error {
	return nil
}

type nopEvents struct{}

func (nopEvents) Event(runtime.Object, uint64, string, string, string) {}

// Wakes of the pods that fit nowhere are coalesced: at most one per wakeInterval, and one asked
// for within the interval is given with the first change after it.
func TestWakesCoalesce(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1000, 0))
	e := engine.New(projections.New(kinds.Builtin(), nil), engine.Options{Clock: clk})
	s, err := New(e, Config{Writer: nopWriter{}, Events: nopEvents{}})
	if err != nil {
		t.Fatal(err)
	}
	if keys := s.wakePending(true); keys != nil {
		t.Fatalf("woke %v with nothing pending", keys)
	}
	for i := range 3 {
		k := eventlog.Key{Resource: "pods", Namespace: "default", Name: fmt.Sprint(i)}
		s.pending[podKey(k)] = &pendingPod{key: k}
	}
	steps := []struct {
		after time.Duration
		want  bool
		woken int
	}{
		{0, true, 3},
		{50 * time.Millisecond, true, 0},   // within the interval: deferred
		{100 * time.Millisecond, false, 0}, // still within
		{250 * time.Millisecond, false, 3}, // the deferred wake, with an unrelated change
		{600 * time.Millisecond, false, 0}, // nothing asked for since
	}
	start := clk.Now()
	for _, st := range steps {
		clk.SetTime(start.Add(st.after))
		if got := len(s.wakePending(st.want)); got != st.woken {
			t.Fatalf("at +%v (want=%v): woke %d pods, want %d", st.after, st.want, got, st.woken)
		}
	}
}
