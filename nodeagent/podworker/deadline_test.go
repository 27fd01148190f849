package podworker_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/nodeagent/podworker"
)

// TestSimActiveDeadline steps a fake clock past pods' activeDeadlineSeconds,
// one set at creation and one set by an update of the running pod, as the
// conformance test "Pods should allow activeDeadlineSeconds to be updated"
// does: they fail with DeadlineExceeded and their containers are killed.
func TestSimActiveDeadline(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rt, err := sim.New(sim.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := simConfig(t, rt, rec)
	cfg.Clock = clk
	m := startManager(t, cfg)
	isRunning := func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning }
	failed := func(st corev1.PodStatus) bool {
		return st.Phase == corev1.PodFailed && st.Reason == podworker.ReasonDeadlineExceeded &&
			st.Message == "Pod was active on the node longer than the specified deadline" &&
			container(st, "c").State.Terminated != nil
	}

	thirty, five := int64(30), int64(5)
	fixed := newPod("fixed", corev1.Container{Name: "c", Image: "busybox:1"})
	fixed.Spec.ActiveDeadlineSeconds = &thirty
	updated := newPod("updated", corev1.Container{Name: "c", Image: "busybox:1"})
	m.Sync(fixed)
	m.Sync(updated)
	rec.waitFor(t, fixed, 5*time.Second, "Running", isRunning)
	rec.waitFor(t, updated, 5*time.Second, "Running", isRunning)

	// The running pod gets a deadline of 5s.
	u := updated.DeepCopy()
	u.Spec.ActiveDeadlineSeconds = &five
	m.Sync(u)
	stepWhenWaiting(t, clk, 5*time.Second)
	st := rec.waitFor(t, updated, 5*time.Second, "Failed with DeadlineExceeded", failed)
	if rec.countEvents(updated, podworker.ReasonDeadlineExceeded) != 1 || rec.countEvents(updated, "Killing") != 1 {
		t.Errorf("events:\n%s", rec.eventList(updated))
	}
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady && (c.Status != corev1.ConditionFalse || c.Reason != "PodCompleted") {
			t.Errorf("Ready condition of the failed pod: %+v", c)
		}
	}
	if st := rec.last(fixed); st.Phase != corev1.PodRunning {
		t.Fatalf("pod with 30s failed after 5s: %s", describe(st))
	}

	stepWhenWaiting(t, clk, 25*time.Second)
	rec.waitFor(t, fixed, 5*time.Second, "Failed with DeadlineExceeded", failed)

	// A new Manager given the failed pod keeps it Failed and starts nothing.
	rec2 := newRecorder()
	cfg2 := simConfig(t, rt, rec2)
	cfg2.Clock = clk
	m2 := startManager(t, cfg2)
	m2.Sync(withStatus(u, rec.last(updated)))
	rec2.waitFor(t, updated, 5*time.Second, "still Failed", failed)
	if n := rec2.countEvents(updated, "Started"); n != 0 {
		t.Errorf("adoption started the failed pod's containers:\n%s", rec2.eventList(updated))
	}
}

// stepWhenWaiting steps clk by d once something waits on it.
func stepWhenWaiting(t *testing.T, clk *testingclock.FakeClock, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("nothing waits on the clock")
		}
		time.Sleep(time.Millisecond)
	}
	clk.Step(d)
}
