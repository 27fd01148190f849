package podworker

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// metrics are what the pod workers count, under the kubelet's names, so that dashboards made
// for the kubelet read them. Manager.RegisterMetrics exposes them.
type metrics struct {
	podStart          prometheus.Histogram
	startedPods       prometheus.Counter
	startedContainers *prometheus.CounterVec // by container_type
	startErrors       *prometheus.CounterVec // by container_type and code (the waiting reason)
	runtimeOps        *prometheus.CounterVec // by operation_type
	runtimeErrors     *prometheus.CounterVec // by operation_type
	runtimeDuration   *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		podStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Subsystem: "kubelet", Name: "pod_start_duration_seconds",
			Help: "Duration in seconds from the node agent seeing a pod for the first time to the pod starting to run.",
			// The kubelet's buckets, with finer ones below a second, where pods start here.
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600},
		}),
		startedPods: prometheus.NewCounter(prometheus.CounterOpts{
			Subsystem: "kubelet", Name: "started_pods_total",
			Help: "Cumulative number of pods started (sandboxes created).",
		}),
		startedContainers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "kubelet", Name: "started_containers_total",
			Help: "Cumulative number of containers started.",
		}, []string{"container_type"}),
		startErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "kubelet", Name: "started_containers_errors_total",
			Help: "Cumulative number of errors when starting containers, by the reason the container then waits with.",
		}, []string{"container_type", "code"}),
		runtimeOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "kubelet", Name: "runtime_operations_total",
			Help: "Cumulative number of runtime operations by operation type.",
		}, []string{"operation_type"}),
		runtimeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "kubelet", Name: "runtime_operations_errors_total",
			Help: "Cumulative number of runtime operation errors by operation type.",
		}, []string{"operation_type"}),
		runtimeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: "kubelet", Name: "runtime_operations_duration_seconds",
			Help:    "Duration in seconds of runtime operations, by operation type.",
			Buckets: prometheus.ExponentialBuckets(.005, 2.5, 14),
		}, []string{"operation_type"}),
	}
}

func containerType(init bool) string {
	if init {
		return "init_container"
	}
	return "container"
}

// RegisterMetrics registers the pod workers' metrics with reg: the kubelet's
// kubelet_running_pods, kubelet_running_containers, kubelet_pod_start_duration_seconds,
// kubelet_started_pods_total, kubelet_started_containers_total,
// kubelet_started_containers_errors_total and kubelet_runtime_operations_{total,errors_total,
// duration_seconds}. Several managers in one process (simulated nodes) register each through a
// prometheus.WrapRegistererWith that tells them apart.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error {
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Subsystem: "kubelet", Name: "running_pods",
		Help: "Number of pods whose sandbox runs.",
	}, func() float64 { p, _ := m.running(); return float64(p) })
	containers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Subsystem: "kubelet", Name: "running_containers",
		Help:        "Number of containers by state.",
		ConstLabels: prometheus.Labels{"container_state": "running"},
	}, func() float64 { _, c := m.running(); return float64(c) })
	mt := m.metrics
	for _, c := range []prometheus.Collector{running, containers, mt.podStart, mt.startedPods, mt.startedContainers,
		mt.startErrors, mt.runtimeOps, mt.runtimeErrors, mt.runtimeDuration} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// running counts the pods with a sandbox and their running containers.
func (m *Manager) running() (pods, containers int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.workers {
		if w.hasSandbox.Load() {
			pods++
		}
		w.mu.Lock()
		for _, c := range w.ctrs {
			if c.cur != nil && c.cur.State == runtimeapi.StateRunning {
				containers++
			}
		}
		w.mu.Unlock()
	}
	return pods, containers
}

// instrumented counts and times the runtime's operations, as the kubelet's instrumented CRI
// client does, under the CRI's operation names. Waiting for a container to exit is not an
// operation: it lasts as long as the container.
type instrumented struct {
	Runtime
	m *metrics
}

func (r instrumented) observe(op string, start time.Time, err error) {
	r.m.runtimeOps.WithLabelValues(op).Inc()
	r.m.runtimeDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	// A caller that gave up is not a runtime error.
	if err != nil && !errors.Is(err, context.Canceled) {
		r.m.runtimeErrors.WithLabelValues(op).Inc()
	}
}

// timed calls call as the runtime's operation op.
func timed[T any](r instrumented, op string, call func() (T, error)) (T, error) {
	start := time.Now()
	v, err := call()
	r.observe(op, start, err)
	return v, err
}

func (r instrumented) timedErr(op string, call func() error) error {
	_, err := timed(r, op, func() (struct{}, error) { return struct{}{}, call() })
	return err
}

// EnsureImage with PullNever only looks: the CRI's image_status, for which an absent image is
// an answer, not an error.
func (r instrumented) EnsureImage(ctx context.Context, ref string, policy runtimeapi.PullPolicy) (runtimeapi.Image, error) {
	start := time.Now()
	img, err := r.Runtime.EnsureImage(ctx, ref, policy)
	if policy == runtimeapi.PullNever {
		opErr := err
		if errors.Is(err, runtimeapi.ErrImageNeverPull) {
			opErr = nil
		}
		r.observe("image_status", start, opErr)
		return img, err
	}
	r.observe("pull_image", start, err)
	return img, err
}

func (r instrumented) CreateSandbox(ctx context.Context, cfg runtimeapi.SandboxConfig) (runtimeapi.Sandbox, error) {
	return timed(r, "run_podsandbox", func() (runtimeapi.Sandbox, error) { return r.Runtime.CreateSandbox(ctx, cfg) })
}

func (r instrumented) ListSandboxes(ctx context.Context) ([]runtimeapi.Sandbox, error) {
	return timed(r, "list_podsandbox", func() ([]runtimeapi.Sandbox, error) { return r.Runtime.ListSandboxes(ctx) })
}

func (r instrumented) RemoveSandbox(ctx context.Context, id string) error {
	return r.timedErr("remove_podsandbox", func() error { return r.Runtime.RemoveSandbox(ctx, id) })
}

func (r instrumented) CreateContainer(ctx context.Context, sandboxID string, cfg runtimeapi.ContainerConfig) (string, error) {
	return timed(r, "create_container", func() (string, error) { return r.Runtime.CreateContainer(ctx, sandboxID, cfg) })
}

func (r instrumented) StartContainer(ctx context.Context, id string) error {
	return r.timedErr("start_container", func() error { return r.Runtime.StartContainer(ctx, id) })
}

func (r instrumented) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	return r.timedErr("stop_container", func() error { return r.Runtime.StopContainer(ctx, id, grace) })
}

func (r instrumented) RemoveContainer(ctx context.Context, id string) error {
	return r.timedErr("remove_container", func() error { return r.Runtime.RemoveContainer(ctx, id) })
}

func (r instrumented) ContainerStatus(ctx context.Context, id string) (runtimeapi.ContainerStatus, error) {
	return timed(r, "container_status", func() (runtimeapi.ContainerStatus, error) { return r.Runtime.ContainerStatus(ctx, id) })
}

func (r instrumented) ListContainers(ctx context.Context, podUID string) ([]runtimeapi.ContainerStatus, error) {
	return timed(r, "list_containers", func() ([]runtimeapi.ContainerStatus, error) { return r.Runtime.ListContainers(ctx, podUID) })
}

func (r instrumented) Exec(ctx context.Context, id string, opts runtimeapi.ExecOptions) (int, error) {
	return timed(r, "exec_sync", func() (int, error) { return r.Runtime.Exec(ctx, id, opts) })
}
