package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
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
	e := engine.New(projections.New(builtin.Catalog(), nil), engine.Options{Clock: clk})
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

// A pod being bound wakes the pods that fit nowhere only while one of them waits for other
// pods (required pod affinity, topology spread); a bound pod's labels changing wakes them
// always (anti-affinity and spreading select on labels).
func TestWakesOnPodsPlaced(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1000, 0))
	e := engine.New(projections.New(builtin.Catalog(), nil), engine.Options{Clock: clk})
	s, err := New(e, Config{Writer: nopWriter{}, Events: nopEvents{}})
	if err != nil {
		t.Fatal(err)
	}
	obj := func(name, node string, lbls labels.Set) *projections.Object {
		return &projections.Object{Key: eventlog.Key{Resource: "pods", Namespace: "default", Name: name},
			Fields: fields.Set{"spec.nodeName": node}, Labels: lbls, Event: &eventv1.ObjectChanged{}}
	}
	bind := projections.Change{Old: obj("other", "", labels.Set{"app": "a"}), New: obj("other", "node-1", labels.Set{"app": "a"})}
	relabel := projections.Change{Old: obj("other", "node-1", labels.Set{"app": "a"}), New: obj("other", "node-1", labels.Set{"app": "b"})}
	status := projections.Change{Old: obj("other", "node-1", labels.Set{"app": "a"}), New: obj("other", "node-1", labels.Set{"app": "a"})}
	pending := func(name string, podConstraints bool) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(name)}}
		if _, err := s.unschedulable(t.Context(), eventlog.Key{Resource: "pods", Namespace: "default", Name: name}, p, podConstraints, "no", 0); err != nil {
			t.Fatal(err)
		}
	}
	step := func(what string, c projections.Change, want int) {
		t.Helper()
		clk.Step(time.Second) // past the wake interval
		if got := len(s.wakes(engine.Event{Change: c})); got != want {
			t.Fatalf("%s: %d keys, want %d", what, got, want)
		}
	}
	pending("plain", false)
	step("bind, no pod waits for others", bind, 0)
	step("relabel", relabel, 1)
	step("status", status, 0)
	pending("affine", true)
	step("bind, a pod waits for others", bind, 2)
	s.dropPending("default/affine")
	step("bind, the waiting pod gone", bind, 0)
	pending("affine", true)
	pending("affine", false) // it no longer waits for others
	step("bind, it no longer waits", bind, 0)
}
