package podworker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/logplane/logplane/nodeagent/podworker"
)

// recorder is the StatusSink and EventRecorder of the tests.
type recorder struct {
	mu         sync.Mutex
	statuses   map[types.UID]corev1.PodStatus
	history    map[types.UID][]corev1.PodStatus
	terminated map[types.UID]time.Time
	events     []event
	errs       []error
	changed    chan struct{}
}

type event struct {
	ref                  corev1.ObjectReference
	typ, reason, message string
}

func newRecorder() *recorder {
	return &recorder{
		statuses:   map[types.UID]corev1.PodStatus{},
		history:    map[types.UID][]corev1.PodStatus{},
		terminated: map[types.UID]time.Time{},
		changed:    make(chan struct{}),
	}
}

func (r *recorder) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) PodStatus(pod *corev1.Pod, st corev1.PodStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses[pod.UID] = st
	r.history[pod.UID] = append(r.history[pod.UID], st)
	r.notify()
}

func (r *recorder) PodTerminated(pod *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.terminated[pod.UID] = time.Now()
	r.notify()
}

func (r *recorder) Event(ref corev1.ObjectReference, typ, reason, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{ref, typ, reason, msg})
	r.notify()
}

func (r *recorder) onError(_ types.UID, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

// last returns the pod's last reported status.
func (r *recorder) last(pod *corev1.Pod) corev1.PodStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.statuses[pod.UID]
}

// waitEver waits until cond has held for any status the pod has reported,
// for states that last only until the next sync (ErrImagePull).
func (r *recorder) waitEver(t *testing.T, pod *corev1.Pod, d time.Duration, what string, cond func(st corev1.PodStatus) bool) {
	t.Helper()
	r.waitFor(t, pod, d, what, func(corev1.PodStatus) bool {
		for _, st := range r.history[pod.UID] { // waitFor runs cond with r.mu held
			if cond(st) {
				return true
			}
		}
		return false
	})
}

// waitFor waits until cond holds for the pod's last status.
func (r *recorder) waitFor(t *testing.T, pod *corev1.Pod, d time.Duration, what string, cond func(st corev1.PodStatus) bool) corev1.PodStatus {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		st, ok := r.statuses[pod.UID]
		ch := r.changed
		met := ok && cond(st)
		r.mu.Unlock()
		if met {
			return st
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("pod %s: %s: not within %s; last status:\n%s\nevents:\n%s", pod.Name, what, d, describe(st), r.eventList(pod))
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

func (r *recorder) waitTerminated(t *testing.T, pod *corev1.Pod, d time.Duration) time.Time {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		at, ok := r.terminated[pod.UID]
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return at
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("pod %s not terminated within %s; events:\n%s", pod.Name, d, r.eventList(pod))
		}
	}
}

func (r *recorder) eventList(pod *corev1.Pod) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		if e.ref.UID == pod.UID {
			fmt.Fprintf(&b, "  %s %s %s: %s\n", e.typ, e.reason, e.ref.FieldPath, e.message)
		}
	}
	return b.String()
}

func (r *recorder) countEvents(pod *corev1.Pod, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.ref.UID == pod.UID && e.reason == reason {
			n++
		}
	}
	return n
}

func describe(st corev1.PodStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  phase=%s podIP=%s hostIP=%s message=%q\n", st.Phase, st.PodIP, st.HostIP, st.Message)
	for _, c := range st.Conditions {
		fmt.Fprintf(&b, "  condition %s=%s %s %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	for _, c := range append(st.InitContainerStatuses, st.ContainerStatuses...) {
		fmt.Fprintf(&b, "  container %s ready=%v restarts=%d state=%s last=%s\n", c.Name, c.Ready, c.RestartCount, state(c.State), state(c.LastTerminationState))
	}
	return b.String()
}

func state(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Waiting != nil:
		return "waiting(" + s.Waiting.Reason + ": " + s.Waiting.Message + ")"
	case s.Terminated != nil:
		return fmt.Sprintf("terminated(%s %d)", s.Terminated.Reason, s.Terminated.ExitCode)
	}
	return "-"
}

func ready(st corev1.PodStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func container(st corev1.PodStatus, name string) corev1.ContainerStatus {
	for _, c := range append(st.InitContainerStatuses, st.ContainerStatuses...) {
		if c.Name == name {
			return c
		}
	}
	return corev1.ContainerStatus{}
}

// resolver is the tests' Resolver.
type resolver struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func (r resolver) ConfigMap(_ context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if cm, ok := r.configMaps[ns+"/"+name]; ok {
		return cm, nil
	}
	return nil, fmt.Errorf("configmap %s/%s: %w", ns, name, podworker.ErrNotFound)
}

func (r resolver) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if s, ok := r.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("secret %s/%s: %w", ns, name, podworker.ErrNotFound)
}

// newPod returns a pod bound to node "n1" with the given containers.
func newPod(name string, containers ...corev1.Container) *corev1.Pod {
	grace := int64(5)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: uuid.NewUUID(), Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:                      "n1",
			Containers:                    containers,
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: &grace,
		},
	}
}

// startManager runs a Manager until the test ends.
func startManager(t *testing.T, cfg podworker.Config) *podworker.Manager {
	t.Helper()
	m, err := podworker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return m
}

// deleted returns a copy of pod marked for deletion.
func deleted(pod *corev1.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	now := metav1.Now()
	p.DeletionTimestamp = &now
	p.DeletionGracePeriodSeconds = p.Spec.TerminationGracePeriodSeconds
	return p
}

// withStatus returns a copy of pod carrying st, as the log would give it to
// a restarted node agent.
func withStatus(pod *corev1.Pod, st corev1.PodStatus) *corev1.Pod {
	p := pod.DeepCopy()
	p.Status = st
	return p
}

// metrics registers m's metrics with a registry of their own and returns a reader of their
// values.
func metrics(t *testing.T, m *podworker.Manager) func(name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := m.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return func(name string, labels ...string) float64 { return metricValue(t, reg, name, labels...) }
}

// metricValue sums the samples of name whose labels include labels (name, value, ...): their
// values, or for a histogram their counts. A metric with no sample is 0.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
					continue samples
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}
