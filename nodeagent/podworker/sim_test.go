package podworker_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/nodeagent/podworker"
)

func simConfig(t *testing.T, rt *sim.Runtime, rec *recorder) podworker.Config {
	return podworker.Config{
		NodeName: "n1", NodeIP: "192.0.2.10", Runtime: rt, Prober: rt, Status: rec, Events: rec,
		VolumeDir: t.TempDir(), RuntimeName: "sim", OnError: rec.onError,
		BackOff: 50 * time.Millisecond, MaxBackOff: 200 * time.Millisecond,
	}
}

func TestSimLifecycleAndAdoption(t *testing.T) {
	rt, err := sim.New(sim.Config{Subnet: "10.244.7.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	m := startManager(t, simConfig(t, rt, rec))
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}, PeriodSeconds: 1}
	pod := newPod("web", corev1.Container{Name: "web", Image: "logplane/hello:1", ReadinessProbe: probe})
	m.Sync(pod)
	st := rec.waitFor(t, pod, 5*time.Second, "Running and Ready", func(st corev1.PodStatus) bool {
		return st.Phase == corev1.PodRunning && ready(st)
	})
	if st.PodIP != "10.244.7.2" || st.HostIP != "192.0.2.10" || st.StartTime == nil {
		t.Fatalf("status: %s", describe(st))
	}
	for _, r := range []string{"Pulling", "Pulled", "Created", "Started"} {
		if rec.countEvents(pod, r) != 1 {
			t.Errorf("want one %s event; events:\n%s", r, rec.eventList(pod))
		}
	}
	// The kubelet's metrics.
	metric := metrics(t, m)
	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"kubelet_running_pods", nil, 1},
		{"kubelet_running_containers", []string{"container_state", "running"}, 1},
		{"kubelet_started_pods_total", nil, 1},
		{"kubelet_started_containers_total", []string{"container_type", "container"}, 1},
		{"kubelet_started_containers_errors_total", nil, 0},
		{"kubelet_pod_start_duration_seconds", nil, 1},
		{"kubelet_runtime_operations_total", []string{"operation_type", "run_podsandbox"}, 1},
		{"kubelet_runtime_operations_total", []string{"operation_type", "image_status"}, 1},
		{"kubelet_runtime_operations_total", []string{"operation_type", "pull_image"}, 1},
		{"kubelet_runtime_operations_total", []string{"operation_type", "create_container"}, 1},
		{"kubelet_runtime_operations_total", []string{"operation_type", "start_container"}, 1},
		{"kubelet_runtime_operations_duration_seconds", []string{"operation_type", "start_container"}, 1},
		{"kubelet_runtime_operations_errors_total", nil, 0},
	} {
		if got := metric(want.name, want.labels...); got != want.value {
			t.Errorf("%s%v = %v, want %v", want.name, want.labels, got, want.value)
		}
	}

	// A new Manager on the same runtime adopts the pod: no restart.
	rec2 := newRecorder()
	m2 := startManager(t, simConfig(t, rt, rec2))
	m2.Sync(withStatus(pod, st))
	st2 := rec2.waitFor(t, pod, 5*time.Second, "adopted", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning && ready(st) })
	if c1, c2 := container(st, "web"), container(st2, "web"); c1.ContainerID != c2.ContainerID || c2.RestartCount != 0 {
		t.Fatalf("adoption restarted the container: %+v -> %+v", c1, c2)
	}
	if rec2.countEvents(pod, "Started") != 0 {
		t.Fatalf("adoption started containers:\n%s", rec2.eventList(pod))
	}
	// The adopted pod runs, and was neither started nor timed by this manager.
	metric2 := metrics(t, m2)
	if r, s, d := metric2("kubelet_running_pods"), metric2("kubelet_started_containers_total"), metric2("kubelet_pod_start_duration_seconds"); r != 1 || s != 0 || d != 0 {
		t.Errorf("after adoption: running pods %v, started containers %v, pod starts timed %v; want 1, 0, 0", r, s, d)
	}

	m2.Sync(deleted(pod))
	rec2.waitTerminated(t, pod, 5*time.Second)
	if sbs, _ := rt.ListSandboxes(t.Context()); len(sbs) != 0 {
		t.Fatalf("sandboxes left: %+v", sbs)
	}
}

func TestSimPullErrors(t *testing.T) {
	rt, err := sim.New(sim.Config{PullError: func(ref string) error {
		if ref == "missing:1" {
			return runtimeapi.ErrNotFound
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	m := startManager(t, simConfig(t, rt, rec))
	pod := newPod("pull", corev1.Container{Name: "c", Image: "missing:1"})
	m.Sync(pod)
	rec.waitEver(t, pod, 5*time.Second, "ErrImagePull", func(st corev1.PodStatus) bool {
		w := container(st, "c").State.Waiting
		return st.Phase == corev1.PodPending && w != nil && w.Reason == podworker.ReasonErrImagePull
	})
	rec.waitFor(t, pod, 5*time.Second, "ImagePullBackOff", func(st corev1.PodStatus) bool {
		w := container(st, "c").State.Waiting
		return w != nil && w.Reason == podworker.ReasonImagePullBackOff
	})
	never := newPod("never", corev1.Container{Name: "c", Image: "absent:1", ImagePullPolicy: corev1.PullNever})
	m.Sync(never)
	rec.waitFor(t, never, 5*time.Second, "ErrImageNeverPull", func(st corev1.PodStatus) bool {
		w := container(st, "c").State.Waiting
		return w != nil && w.Reason == podworker.ReasonErrImageNeverPull
	})
	metric := metrics(t, m)
	for _, code := range []string{podworker.ReasonErrImagePull, podworker.ReasonErrImageNeverPull} {
		if n := metric("kubelet_started_containers_errors_total", "container_type", "container", "code", code); n < 1 {
			t.Errorf("kubelet_started_containers_errors_total{code=%q} = %v", code, n)
		}
	}
	if n := metric("kubelet_runtime_operations_errors_total", "operation_type", "pull_image"); n < 1 {
		t.Errorf("kubelet_runtime_operations_errors_total{operation_type=pull_image} = %v", n)
	}
	if n := metric("kubelet_started_containers_total"); n != 0 {
		t.Errorf("kubelet_started_containers_total = %v with no image", n)
	}
}

// TestSimCrashLoopBackOff drives the back-off with a fake clock: 10s, 20s,
// 40s (the maximum here) between restarts, as the kubelet does.
func TestSimCrashLoopBackOff(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rt, err := sim.New(sim.Config{Clock: clk, Exit: func(runtimeapi.ContainerConfig) (time.Duration, int32, bool) { return 0, 3, true }})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := simConfig(t, rt, rec)
	cfg.Clock, cfg.BackOff, cfg.MaxBackOff = clk, 10*time.Second, 40*time.Second
	m := startManager(t, cfg)
	pod := newPod("crash", corev1.Container{Name: "c", Image: "crash:1"})
	m.Sync(pod)
	backingOff := func(restarts int32, delay string) func(corev1.PodStatus) bool {
		return func(st corev1.PodStatus) bool {
			c := container(st, "c")
			w := c.State.Waiting
			return st.Phase == corev1.PodRunning && c.RestartCount == restarts && w != nil && w.Reason == podworker.ReasonCrashLoopBackOff &&
				len(w.Message) > 0 && c.LastTerminationState.Terminated != nil && c.LastTerminationState.Terminated.ExitCode == 3 &&
				containsStr(w.Message, "back-off "+delay+" ")
		}
	}
	// The first exit restarts at once; the second backs off 10s.
	rec.waitFor(t, pod, 5*time.Second, "back-off 10s", backingOff(1, "10s"))
	step := func(d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !clk.HasWaiters() {
			if time.Now().After(deadline) {
				t.Fatal("worker set no timer")
			}
			time.Sleep(time.Millisecond)
		}
		clk.Step(d)
	}
	step(10 * time.Second)
	rec.waitFor(t, pod, 5*time.Second, "back-off 20s", backingOff(2, "20s"))
	step(10 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if c := container(rec.last(pod), "c"); c.RestartCount != 2 {
		t.Fatalf("restarted after 10s of a 20s back-off: %d", c.RestartCount)
	}
	step(10 * time.Second)
	rec.waitFor(t, pod, 5*time.Second, "back-off 40s", backingOff(3, "40s"))
	if n := rec.countEvents(pod, "BackOff"); n < 3 {
		t.Fatalf("want BackOff events, got %d:\n%s", n, rec.eventList(pod))
	}

	never := newPod("once", corev1.Container{Name: "c", Image: "crash:1"})
	never.Spec.RestartPolicy = corev1.RestartPolicyNever
	m.Sync(never)
	st := rec.waitFor(t, never, 5*time.Second, "Failed", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodFailed })
	if c := container(st, "c"); c.State.Terminated == nil || c.State.Terminated.ExitCode != 3 || c.RestartCount != 0 {
		t.Fatalf("never: %s", describe(st))
	}
}

func containsStr(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
