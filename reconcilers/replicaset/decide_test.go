package replicaset

import (
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type podOpt func(*corev1.Pod)

func mkPod(name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0), Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func unscheduled(p *corev1.Pod) { p.Spec.NodeName = "" }
func pending(p *corev1.Pod)     { p.Status.Phase = corev1.PodPending }
func onNode(n string) podOpt    { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func created(d time.Duration) podOpt {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t0.Add(d)) }
}
func restarts(n int32) podOpt {
	return func(p *corev1.Pod) { p.Status.ContainerStatuses = []corev1.ContainerStatus{{RestartCount: n}} }
}
func readySince(d time.Duration) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(d))})
	}
}

// podsToDelete picks pods in Kubernetes' order.
func TestPodsToDelete(t *testing.T) {
	tests := []struct {
		name    string
		pods    []*corev1.Pod
		related []*corev1.Pod
		n       int
		want    []string
	}{
		{"unscheduled first", []*corev1.Pod{mkPod("a", readySince(0)), mkPod("b", unscheduled, pending)}, nil, 1, []string{"b"}},
		{"pending before running", []*corev1.Pod{mkPod("a", readySince(0)), mkPod("b", pending)}, nil, 1, []string{"b"}},
		{"not ready before ready", []*corev1.Pod{mkPod("a", readySince(0)), mkPod("b")}, nil, 1, []string{"b"}},
		{"doubled up before alone", []*corev1.Pod{mkPod("a", readySince(0), onNode("n1")), mkPod("b", readySince(0), onNode("n2"))},
			[]*corev1.Pod{mkPod("r", onNode("n2"))}, 1, []string{"b"}},
		{"ready for less time first", []*corev1.Pod{mkPod("a", readySince(0)), mkPod("b", readySince(time.Minute)), mkPod("c", readySince(time.Second))}, nil, 2, []string{"b", "c"}},
		{"more restarts first", []*corev1.Pod{mkPod("a", readySince(0)), mkPod("b", readySince(0), restarts(3))}, nil, 1, []string{"b"}},
		{"newest first", []*corev1.Pod{mkPod("a", readySince(0)), mkPod("b", readySince(0), created(time.Hour)), mkPod("c", readySince(0), created(time.Minute))}, nil, 2, []string{"b", "c"}},
		{"all of them", []*corev1.Pod{mkPod("a"), mkPod("b")}, nil, 2, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := podsToDelete(tt.pods, tt.related, tt.n)
			var names []string
			for _, p := range got {
				names = append(names, p.Name)
			}
			if len(names) != len(tt.want) {
				t.Fatalf("got %v, want %v", names, tt.want)
			}
			for i := range names {
				if names[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", names, tt.want)
				}
			}
		})
	}
}

// Status counts ready pods as available only after minReadySeconds, fully labeled pods by the
// template's labels, and a failure to create as the ReplicaFailure condition.
func TestCalculateStatus(t *testing.T) {
	three := int32(3)
	rs := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Replicas: &three, MinReadySeconds: 30,
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x", "tier": "web"}}}}}
	web := func(p *corev1.Pod) { p.Labels["tier"] = "web" }
	pods := []*corev1.Pod{mkPod("a", web, readySince(0)), mkPod("b", web, readySince(50*time.Second)), mkPod("c")}
	st := calculateStatus(rs, pods, nil, t0.Add(time.Minute))
	if st.Replicas != 3 || st.FullyLabeledReplicas != 2 || st.ReadyReplicas != 2 || st.AvailableReplicas != 1 {
		t.Errorf("status %+v", st)
	}
	st = calculateStatus(rs, pods[:2], errors.New("pods \"x\" is forbidden"), t0)
	if c := condition(st.Conditions, appsv1.ReplicaSetReplicaFailure); c == nil || c.Reason != "FailedCreate" || c.Status != corev1.ConditionTrue {
		t.Errorf("conditions %+v", st.Conditions)
	}
	rs.Status = st
	if st := calculateStatus(rs, pods, nil, t0); len(st.Conditions) != 0 {
		t.Errorf("the failure condition stays once creating works: %+v", st.Conditions)
	}
}
