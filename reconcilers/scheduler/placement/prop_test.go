package placement_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"pgregory.net/rapid"

	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

var (
	taintKeys = []string{"dedicated", "gpu", corev1.TaintNodeUnreachable}
	effects   = []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute, corev1.TaintEffectPreferNoSchedule}
	zones     = []string{"a", "b", "c"}
	ports     = []int32{0, 0, 0, 80, 443}
)

func genNode(i int) *rapid.Generator[*corev1.Node] {
	return rapid.Custom(func(t *rapid.T) *corev1.Node {
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i), Labels: map[string]string{
				"zone": rapid.SampledFrom(zones).Draw(t, "zone"),
			}},
			Spec: corev1.NodeSpec{Unschedulable: rapid.Float64Range(0, 1).Draw(t, "cordon") < 0.15},
			Status: corev1.NodeStatus{
				Allocatable: corev1.ResourceList{
					corev1.ResourceCPU:    *resource.NewMilliQuantity(rapid.Int64Range(0, 4000).Draw(t, "cpu"), resource.DecimalSI),
					corev1.ResourceMemory: *resource.NewQuantity(rapid.Int64Range(0, 8<<30).Draw(t, "mem"), resource.BinarySI),
					corev1.ResourcePods:   *resource.NewQuantity(rapid.Int64Range(0, 12).Draw(t, "pods"), resource.DecimalSI),
				},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: rapid.SampledFrom(
					[]corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionTrue, corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown}).Draw(t, "ready")}},
			},
		}
		for range rapid.IntRange(0, 2).Draw(t, "taints") {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: rapid.SampledFrom(taintKeys).Draw(t, "taintKey"), Effect: rapid.SampledFrom(effects).Draw(t, "effect")})
		}
		return n
	})
}

func genPod(i int) *rapid.Generator[*corev1.Pod] {
	return rapid.Custom(func(t *rapid.T) *corev1.Pod {
		req := corev1.ResourceList{}
		if rapid.Bool().Draw(t, "hasCPU") {
			req[corev1.ResourceCPU] = *resource.NewMilliQuantity(rapid.Int64Range(1, 2000).Draw(t, "cpu"), resource.DecimalSI)
		}
		if rapid.Bool().Draw(t, "hasMem") {
			req[corev1.ResourceMemory] = *resource.NewQuantity(rapid.Int64Range(1, 4<<30).Draw(t, "mem"), resource.BinarySI)
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("pod-%d", i), UID: types.UID(fmt.Sprint(i))},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req}}}},
		}
		if port := rapid.SampledFrom(ports).Draw(t, "port"); port != 0 {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: port, HostPort: port, Protocol: corev1.ProtocolTCP}}
		}
		if rapid.Float64Range(0, 1).Draw(t, "select") < 0.3 {
			p.Spec.NodeSelector = map[string]string{"zone": rapid.SampledFrom(zones).Draw(t, "zone")}
		}
		for range rapid.IntRange(0, 2).Draw(t, "tolerations") {
			tol := corev1.Toleration{Key: rapid.SampledFrom(append(taintKeys, corev1.TaintNodeUnschedulable, corev1.TaintNodeNotReady)).Draw(t, "tolKey"), Operator: corev1.TolerationOpExists}
			if rapid.Bool().Draw(t, "tolEffect") {
				tol.Effect = rapid.SampledFrom(effects).Draw(t, "effect")
			}
			p.Spec.Tolerations = append(p.Spec.Tolerations, tol)
		}
		return p
	})
}

// Whatever the nodes and pods, a plan never overcommits a node and every placement satisfies
// the pod's constraints; a pod left out has a reason for every node. The checks below are
// written from the API's meaning, not with placement's own filters.
func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nn := rapid.IntRange(0, 6).Draw(t, "nodes")
		np := rapid.IntRange(1, 40).Draw(t, "pods")
		ns := make([]*corev1.Node, nn)
		for i := range ns {
			ns[i] = genNode(i).Draw(t, "node")
		}
		ps := make([]*corev1.Pod, np)
		pis := make([]*placement.Pod, np)
		for i := range ps {
			ps[i] = genPod(i).Draw(t, "pod")
			pis[i] = placement.NewPod(ps[i])
		}
		decisions := placement.Plan(nodesOf(ns, nil), nil, pis)

		byName := map[string]*corev1.Node{}
		for _, n := range ns {
			byName[n.Name] = n
		}
		type usage struct {
			cpu, mem, pods int64
			ports          map[int32]bool
		}
		used := map[string]*usage{}
		for i, d := range decisions {
			p := ps[i]
			if d.Node == "" {
				if d.Err == nil {
					t.Fatalf("%s: neither placed nor explained", p.Name)
				}
				if d.Err.NumAllNodes != nn || len(d.Err.Statuses) != nn {
					t.Fatalf("%s: %d nodes, %d statuses, want %d: %v", p.Name, d.Err.NumAllNodes, len(d.Err.Statuses), nn, d.Err)
				}
				continue
			}
			n := byName[d.Node]
			if n == nil {
				t.Fatalf("%s placed on unknown node %q", p.Name, d.Node)
			}
			u := used[n.Name]
			if u == nil {
				u = &usage{ports: map[int32]bool{}}
				used[n.Name] = u
			}
			u.cpu += p.Spec.Containers[0].Resources.Requests.Cpu().MilliValue()
			u.mem += p.Spec.Containers[0].Resources.Requests.Memory().Value()
			u.pods++
			alloc := n.Status.Allocatable
			if u.cpu > alloc.Cpu().MilliValue() || u.mem > alloc.Memory().Value() || u.pods > alloc.Pods().Value() {
				t.Fatalf("%s overcommitted after %s: cpu %d/%d mem %d/%d pods %d/%d", n.Name, p.Name,
					u.cpu, alloc.Cpu().MilliValue(), u.mem, alloc.Memory().Value(), u.pods, alloc.Pods().Value())
			}
			for _, cp := range p.Spec.Containers[0].Ports {
				if u.ports[cp.HostPort] {
					t.Fatalf("%s: host port %d taken twice on %s", p.Name, cp.HostPort, n.Name)
				}
				u.ports[cp.HostPort] = true
			}
			if v, ok := p.Spec.NodeSelector["zone"]; ok && n.Labels["zone"] != v {
				t.Fatalf("%s wants zone %s, placed in %s", p.Name, v, n.Labels["zone"])
			}
			tolerated := func(key string, effect corev1.TaintEffect) bool {
				for _, tol := range p.Spec.Tolerations {
					if tol.Key == key && (tol.Effect == "" || tol.Effect == effect) {
						return true
					}
				}
				return false
			}
			if n.Spec.Unschedulable && !tolerated(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule) {
				t.Fatalf("%s placed on cordoned %s", p.Name, n.Name)
			}
			for _, taint := range n.Spec.Taints {
				if taint.Effect != corev1.TaintEffectPreferNoSchedule && !tolerated(taint.Key, taint.Effect) {
					t.Fatalf("%s placed on %s with untolerated taint %v", p.Name, n.Name, taint)
				}
			}
			lifecycleTainted := hasTaint(n, corev1.TaintNodeNotReady, corev1.TaintEffectNoSchedule) || hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule)
			switch n.Status.Conditions[0].Status {
			case corev1.ConditionFalse:
				if !lifecycleTainted && !tolerated(corev1.TaintNodeNotReady, corev1.TaintEffectNoSchedule) {
					t.Fatalf("%s placed on NotReady %s", p.Name, n.Name)
				}
			case corev1.ConditionUnknown:
				if !lifecycleTainted && !tolerated(corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule) {
					t.Fatalf("%s placed on unreachable %s", p.Name, n.Name)
				}
			}
		}
	})
}

// hasTaint reports whether n has a taint with key and effect.
func hasTaint(n *corev1.Node, key string, effect corev1.TaintEffect) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}
