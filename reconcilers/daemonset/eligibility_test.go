package daemonset

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeShouldRunDaemonPod(t *testing.T) {
	node := func(opts ...func(*corev1.Node)) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"tier": "edge"}}}
		for _, o := range opts {
			o(n)
		}
		return n
	}
	taint := func(key string, effect corev1.TaintEffect) func(*corev1.Node) {
		return func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: "x", Effect: effect})
		}
	}
	set := func(opts ...func(*corev1.PodSpec)) *appsv1.DaemonSet {
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "ds", Namespace: "default"}}
		for _, o := range opts {
			o(&ds.Spec.Template.Spec)
		}
		return ds
	}
	tests := []struct {
		name                 string
		node                 *corev1.Node
		ds                   *appsv1.DaemonSet
		run, continueRunning bool
	}{
		{"untainted node", node(), set(), true, true},
		{"nodeSelector matches", node(), set(func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"tier": "edge"} }), true, true},
		{"nodeSelector does not match", node(), set(func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"tier": "core"} }), false, false},
		{"another nodeName", node(), set(func(s *corev1.PodSpec) { s.NodeName = "node-2" }), false, false},
		{"required affinity does not match", node(), set(func(s *corev1.PodSpec) {
			s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "tier", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"edge"}}}}},
			}}}
		}), false, false},
		{"NoSchedule taint: not placed, kept", node(taint("dedicated", corev1.TaintEffectNoSchedule)), set(), false, true},
		{"NoExecute taint: not placed, not kept", node(taint("dedicated", corev1.TaintEffectNoExecute)), set(), false, false},
		{"PreferNoSchedule taint is no obstacle", node(taint("dedicated", corev1.TaintEffectPreferNoSchedule)), set(), true, true},
		{"tolerated taint", node(taint("dedicated", corev1.TaintEffectNoExecute)), set(func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "x"}}
		}), true, true},
		{"unreachable NoExecute: tolerated by every daemon pod", node(taint(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)), set(), true, true},
		{"not-ready NoExecute", node(taint(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute)), set(), true, true},
		{"cordoned", node(taint(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)), set(), true, true},
		{"memory pressure", node(taint(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule)), set(), true, true},
		{"network unavailable, not hostNetwork", node(taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), set(), false, true},
		{"network unavailable, hostNetwork", node(taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), set(func(s *corev1.PodSpec) { s.HostNetwork = true }), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run, cont := NodeShouldRunDaemonPod(tt.node, tt.ds)
			if run != tt.run || cont != tt.continueRunning {
				t.Errorf("shouldRun %v, shouldContinueRunning %v; want %v, %v", run, cont, tt.run, tt.continueRunning)
			}
		})
	}
}

func TestAddDaemonPodTolerationsKeepsTheTemplates(t *testing.T) {
	spec := corev1.PodSpec{Tolerations: []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(30))},
		{Key: "dedicated", Operator: corev1.TolerationOpExists},
	}}
	addDaemonPodTolerations(&spec)
	if len(spec.Tolerations) != 7 {
		t.Fatalf("tolerations %+v", spec.Tolerations)
	}
	// The template's own not-ready toleration is replaced by the unlimited one, as Kubernetes.
	if got := spec.Tolerations[0]; got.TolerationSeconds != nil {
		t.Errorf("not-ready toleration %+v", got)
	}
	addDaemonPodTolerations(&spec)
	if len(spec.Tolerations) != 7 {
		t.Errorf("added twice: %+v", spec.Tolerations)
	}
}

func ptr[T any](v T) *T { return &v }

func TestTargetNode(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	p.Spec.Affinity = nodeAffinityFor(nil, "node-7")
	if n, err := targetNode(p); err != nil || n != "node-7" {
		t.Fatalf("target %q, %v", n, err)
	}
	p.Spec.NodeName = "node-8"
	if n, err := targetNode(p); err != nil || n != "node-8" {
		t.Fatalf("bound: target %q, %v", n, err)
	}
	if _, err := targetNode(&corev1.Pod{}); err == nil {
		t.Fatal("a pod without affinity has a target node")
	}
}
