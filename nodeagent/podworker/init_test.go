package podworker_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/nodeagent/podworker"
)

// initPod is the pod of Kubernetes' InitContainer conformance tests: init1
// and init2, then run1.
func initPod(name string, policy corev1.RestartPolicy) *corev1.Pod {
	pod := newPod(name, corev1.Container{Name: "run1", Image: "busybox:1"})
	pod.Spec.RestartPolicy = policy
	pod.Spec.InitContainers = []corev1.Container{{Name: "init1", Image: "busybox:1"}, {Name: "init2", Image: "busybox:1"}}
	return pod
}

// initInvariants is what Kubernetes' InitContainer conformance tests check
// on every revision of the pod: until the init containers have all
// completed, every app container waits with PodInitializing and has not
// restarted, and an init container not yet started waits with
// PodInitializing; a completed init container is ready; the Initialized
// condition follows the init containers.
func initInvariants(st corev1.PodStatus) error {
	allInit, failed := true, false
	started := true // every init container so far has an instance
	for _, s := range st.InitContainerStatuses {
		if !started && (s.State.Waiting == nil || s.State.Waiting.Reason != podworker.ReasonPodInitializing) {
			return fmt.Errorf("init container %s after one that has not completed: %s, want waiting PodInitializing", s.Name, state(s.State))
		}
		if s.State.Running != nil && s.Ready {
			return fmt.Errorf("init container %s is running and ready", s.Name)
		}
		switch {
		case s.State.Terminated != nil && s.State.Terminated.ExitCode == 0:
			if !s.Ready {
				return fmt.Errorf("init container %s completed but is not ready", s.Name)
			}
		case s.State.Terminated != nil:
			allInit, failed, started = false, true, false
		default:
			if allInit && s.State.Waiting != nil && s.LastTerminationState.Terminated == nil && s.ContainerID == "" &&
				s.State.Waiting.Reason != podworker.ReasonPodInitializing && s.State.Waiting.Reason != podworker.ReasonCrashLoopBackOff {
				return fmt.Errorf("init container %s waits with %s, want PodInitializing", s.Name, s.State.Waiting.Reason)
			}
			if s.State.Waiting != nil && s.LastTerminationState.Terminated != nil {
				failed = true
			}
			allInit, started = false, false
		}
	}
	if !allInit {
		for _, s := range st.ContainerStatuses {
			if s.State.Waiting == nil || s.State.Waiting.Reason != podworker.ReasonPodInitializing || s.RestartCount != 0 {
				return fmt.Errorf("app container %s: %s during initialization, want waiting PodInitializing", s.Name, state(s.State))
			}
		}
	}
	var init *corev1.PodCondition
	for i := range st.Conditions {
		if st.Conditions[i].Type == corev1.PodInitialized {
			init = &st.Conditions[i]
		}
	}
	switch {
	case init == nil || init.LastTransitionTime.IsZero():
		return fmt.Errorf("no Initialized condition with a transition time")
	case init.Status == corev1.ConditionTrue && (failed || !allInit):
		return fmt.Errorf("Initialized True before the init containers completed")
	case init.Status == corev1.ConditionFalse && allInit:
		return fmt.Errorf("Initialized False once the init containers completed")
	}
	return nil
}

func checkInitHistory(t *testing.T, rec *recorder, pod *corev1.Pod) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, st := range rec.history[pod.UID] {
		if err := initInvariants(st); err != nil {
			t.Errorf("status %d: %v:\n%s", i, err, describe(st))
		}
	}
}

// TestSimInitContainers checks, as the InitContainer conformance tests do,
// what the pod reports while its init containers run, once they completed,
// and when one fails.
func TestSimInitContainers(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rt, err := sim.New(sim.Config{Clock: clk, Exit: func(cfg runtimeapi.ContainerConfig) (time.Duration, int32, bool) {
		switch cfg.Name {
		case "init1":
			return 5 * time.Second, 0, true // runs until the test steps the clock
		case "init2", "ok":
			return 0, 0, true
		case "fail":
			return 0, 1, true
		}
		return 0, 0, false
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := simConfig(t, rt, rec)
	cfg.Clock = clk
	m := startManager(t, cfg)

	t.Run("RestartAlways", func(t *testing.T) {
		pod := initPod("init-always", corev1.RestartPolicyAlways)
		m.Sync(pod)
		st := rec.waitFor(t, pod, 5*time.Second, "init1 running", func(st corev1.PodStatus) bool {
			return container(st, "init1").State.Running != nil
		})
		if w := container(st, "init2").State.Waiting; w == nil || w.Reason != podworker.ReasonPodInitializing {
			t.Errorf("init2 while init1 runs: %s, want waiting PodInitializing", state(container(st, "init2").State))
		}
		if w := container(st, "run1").State.Waiting; w == nil || w.Reason != podworker.ReasonPodInitializing {
			t.Errorf("run1 while init1 runs: %s, want waiting PodInitializing", state(container(st, "run1").State))
		}
		if st.Phase != corev1.PodPending {
			t.Errorf("phase %s while initializing", st.Phase)
		}
		for !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		clk.Step(5 * time.Second)
		st = rec.waitFor(t, pod, 5*time.Second, "Running", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning })
		for _, name := range []string{"init1", "init2"} {
			c := container(st, name)
			if c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 || c.State.Terminated.Reason != "Completed" || !c.Ready {
				t.Errorf("%s: %s ready=%v, want terminated Completed and ready", name, state(c.State), c.Ready)
			}
		}
		checkInitHistory(t, rec, pod)
	})

	t.Run("init container fails, RestartAlways", func(t *testing.T) {
		pod := initPod("init-fail-always", corev1.RestartPolicyAlways)
		pod.Spec.InitContainers[0].Name = "fail"
		// The first restart is immediate, the second waits for a back-off the fake clock
		// never reaches.
		m.Sync(pod)
		st := rec.waitFor(t, pod, 5*time.Second, "fail restarted", func(st corev1.PodStatus) bool {
			c := container(st, "fail")
			return c.LastTerminationState.Terminated != nil && c.State.Waiting != nil && c.State.Waiting.Reason == podworker.ReasonCrashLoopBackOff
		})
		var init corev1.PodCondition
		for _, c := range st.Conditions {
			if c.Type == corev1.PodInitialized {
				init = c
			}
		}
		if st.Phase != corev1.PodPending || init.Status != corev1.ConditionFalse || init.Reason != "ContainersNotInitialized" ||
			init.Message != "containers with incomplete status: [fail init2]" {
			t.Errorf("phase %s, Initialized %+v", st.Phase, init)
		}
		checkInitHistory(t, rec, pod)
	})

	t.Run("init container fails, RestartNever", func(t *testing.T) {
		pod := initPod("init-fail-never", corev1.RestartPolicyNever)
		pod.Spec.InitContainers[0].Name, pod.Spec.InitContainers[1].Name = "ok", "fail"
		m.Sync(pod)
		st := rec.waitFor(t, pod, 5*time.Second, "Failed", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodFailed })
		if c := container(st, "run1"); c.State.Waiting == nil || c.State.Waiting.Reason != podworker.ReasonPodInitializing {
			t.Errorf("run1 of the failed pod: %s, want waiting PodInitializing", state(c.State))
		}
		for _, c := range st.Conditions {
			if c.Type == corev1.PodInitialized && (c.Status != corev1.ConditionFalse || c.Message != "containers with incomplete status: [fail]") {
				t.Errorf("Initialized: %+v", c)
			}
		}
		checkInitHistory(t, rec, pod)
	})
}
