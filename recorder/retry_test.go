package recorder

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// flaky is the real registry behind writes that fail as told, by the Event's reason: the first
// fails[reason] writes (all of them if negative) return errs[reason].
type flaky struct {
	writer
	mu    sync.Mutex
	fails map[string]int
	errs  map[string]error
	calls map[string]int
	done  chan string // the reason of every write, once made
}

func (f *flaky) fail(reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[reason]++
	if n := f.fails[reason]; n != 0 {
		f.fails[reason] = n - 1
		return f.errs[reason]
	}
	return nil
}

func (f *flaky) Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error) {
	reason := obj.(*corev1.Event).Reason
	defer func() { f.done <- reason }()
	if err := f.fail(reason); err != nil {
		return nil, err
	}
	return f.writer.Create(ctx, k, obj, req)
}

func (f *flaky) count(reason string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[reason]
}

// TestRetries: as client-go's broadcaster, the recorder writes an Event again when the write
// failed for want of the log (503, 504, 507), RetrySleep apart on its clock, up to 12 tries, and
// never again when the registry rejected it (422). Before, one failed write lost the Event.
func TestRetries(t *testing.T) {
	ctx := t.Context()
	l := eventlogtest.Open(t)
	store := projections.New(builtin.Catalog(), nil)
	go store.Run(ctx, l)
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	nsKind, _ := reg.Catalog().ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
	if _, err := reg.Create(ctx, nsKind, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, registry.Request{Actor: registry.System("test")}); err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Now())
	const sleep = 10 * time.Second
	rec, err := New(Config{Registry: reg, Actor: registry.System("test"), Source: corev1.EventSource{Component: "test"},
		Workers: 1, Clock: clk, RetrySleep: sleep})
	if err != nil {
		t.Fatal(err)
	}
	f := &flaky{writer: rec.reg, done: make(chan string, 64), calls: map[string]int{},
		fails: map[string]int{"Transient": 3, "Rejected": 1, "Down": -1},
		errs: map[string]error{
			"Transient": apierrors.NewServiceUnavailable("eventlog: server unavailable"),
			"Rejected":  apierrors.NewInvalid(schema.GroupKind{Kind: "Event"}, "x", field.ErrorList{field.Required(field.NewPath("reason"), "")}),
			"Down":      apierrors.NewTimeoutError("eventlog: appending: context deadline exceeded", 1),
		}}
	rec.reg = f
	go rec.Run(ctx)

	node := corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: "n1", UID: "n1"}
	// Event names are the object's and the time's, in nanoseconds: time moves between two.
	event := func(typ, reason, message string) {
		clk.Step(time.Microsecond)
		rec.RefEvent(node, 0, typ, reason, message)
	}
	// writes waits for n writes of reason; between writes, the recorder waits on the clock:
	// step it by the longest wait once it does.
	writes := func(reason string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			select {
			case got := <-f.done:
				if got != reason {
					t.Fatalf("wrote %s, want %s", got, reason)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: %d writes, want %d", reason, f.count(reason), n)
			}
			if i < n-1 {
				waitUntil := time.Now().Add(10 * time.Second)
				for !clk.HasWaiters() { // the recorder is about to wait
					if time.Now().After(waitUntil) {
						t.Fatalf("%s: %d writes, and the recorder does not wait to try again", reason, f.count(reason))
					}
					time.Sleep(time.Millisecond)
				}
				clk.Step(sleep)
			}
		}
	}

	event(corev1.EventTypeWarning, "Transient", "fails three times")
	writes("Transient", 4)

	// A rejected Event is written once: the next one is written right after it.
	event(corev1.EventTypeWarning, "Rejected", "rejected")
	event(corev1.EventTypeNormal, "After", "after the rejected one")
	writes("Rejected", 1)
	writes("After", 1)

	// A log that stays down: 12 tries, then the recorder goes on with the next Event.
	event(corev1.EventTypeWarning, "Down", "never written")
	event(corev1.EventTypeNormal, "Next", "after the one given up")
	writes("Down", maxTriesPerEvent)
	writes("Next", 1)

	evKind, _ := reg.Catalog().ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Event"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		objs, _, err := reg.List(ctx, evKind, registry.Query{Namespace: "default"}, registry.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int32{}
		for _, o := range objs {
			obj, err := o.Decode()
			if err != nil {
				t.Fatal(err)
			}
			got[obj.(*corev1.Event).Reason] += obj.(*corev1.Event).Count
		}
		if len(got) == 3 && got["Transient"] == 1 && got["After"] == 1 && got["Next"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events by reason: %v; want Transient, After and Next once each", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for reason, want := range map[string]int{"Transient": 4, "Rejected": 1, "After": 1, "Down": maxTriesPerEvent, "Next": 1} {
		if got := f.count(reason); got != want {
			t.Errorf("%s written %d times, want %d", reason, got, want)
		}
	}
}
