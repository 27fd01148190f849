package nodelifecycle

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func node(ready corev1.ConditionStatus, unschedulable bool, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{Spec: corev1.NodeSpec{Unschedulable: unschedulable, Taints: taints},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
}

func taint(key string, effect corev1.TaintEffect, added *time.Time) corev1.Taint {
	t := corev1.Taint{Key: key, Effect: effect}
	if added != nil {
		at := metav1.NewTime(*added)
		t.TimeAdded = &at
	}
	return t
}

// The taints follow the Ready condition and the cordon; other taints and the time a kept
// NoExecute taint was added stay.
func TestTaintsFor(t *testing.T) {
	earlier := t0.Add(-time.Minute)
	custom := corev1.Taint{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}
	tests := []struct {
		name string
		node *corev1.Node
		want []corev1.Taint
	}{
		{"ready", node(corev1.ConditionTrue, false, custom), []corev1.Taint{custom}},
		{"unknown", node(corev1.ConditionUnknown, false), []corev1.Taint{
			taint(corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule, nil), taint(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute, &t0)}},
		{"not ready, kept", node(corev1.ConditionFalse, false, taint(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute, &earlier)), []corev1.Taint{
			taint(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute, &earlier), taint(corev1.TaintNodeNotReady, corev1.TaintEffectNoSchedule, nil)}},
		{"back", node(corev1.ConditionTrue, false, taint(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute, &earlier), custom), []corev1.Taint{custom}},
		{"cordoned", node(corev1.ConditionTrue, true), []corev1.Taint{taint(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule, nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := taintsFor(tt.node, t0)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Key != w.Key || g.Effect != w.Effect || g.Value != w.Value || (g.TimeAdded == nil) != (w.TimeAdded == nil) ||
					(g.TimeAdded != nil && !g.TimeAdded.Equal(w.TimeAdded)) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// A pod goes at once from a taint it does not tolerate, at the earliest end of its
// tolerations otherwise, never if it tolerates for ever.
func TestEvictionTime(t *testing.T) {
	secs := func(n int64) *int64 { return &n }
	unreachable := []corev1.Taint{taint(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute, &t0)}
	tol := func(key string, s *int64) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: s}
	}
	pod := func(ts ...corev1.Toleration) *corev1.Pod { return &corev1.Pod{Spec: corev1.PodSpec{Tolerations: ts}} }
	if at, ok := evictionTime(pod(), unreachable); !ok || !at.Equal(t0) {
		t.Errorf("no toleration: %v %v", at, ok)
	}
	if at, ok := evictionTime(pod(tol(corev1.TaintNodeUnreachable, secs(300))), unreachable); !ok || !at.Equal(t0.Add(300*time.Second)) {
		t.Errorf("300 s: %v %v", at, ok)
	}
	if _, ok := evictionTime(pod(tol(corev1.TaintNodeUnreachable, nil)), unreachable); ok {
		t.Error("a toleration without seconds tolerates for ever")
	}
	if at, ok := evictionTime(pod(tol(corev1.TaintNodeNotReady, secs(5))), unreachable); !ok || !at.Equal(t0) {
		t.Errorf("a toleration of another taint: %v %v", at, ok)
	}
}
