package placement_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

func TestPlace(t *testing.T) {
	never := corev1.PreemptNever
	tests := []struct {
		name   string
		nodes  []*corev1.Node
		placed map[string][]*corev1.Pod
		pod    *corev1.Pod
		// want is the node the pod goes to, or, when wantMsg is set, "".
		want    string
		wantMsg string
	}{
		{
			name:  "fits the only node",
			nodes: []*corev1.Node{node("node-1", "2", "4Gi", 110)},
			pod:   pod("nginx", "500m", "128Mi"),
			want:  "node-1",
		},
		{
			name:    "no nodes at all",
			pod:     pod("nginx", "", ""),
			wantMsg: "no nodes available to schedule pods",
		},
		{
			name: "insufficient cpu on one, unreachable taint on two",
			nodes: []*corev1.Node{
				node("node-1", "1", "4Gi", 110),
				node("node-2", "4", "4Gi", 110, withTaint(corev1.TaintNodeUnreachable, "", corev1.TaintEffectNoSchedule), withReady(corev1.ConditionUnknown)),
				node("node-3", "4", "4Gi", 110, withTaint(corev1.TaintNodeUnreachable, "", corev1.TaintEffectNoExecute), withReady(corev1.ConditionUnknown)),
			},
			pod: pod("nginx", "2", ""),
			wantMsg: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. " +
				"preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
		},
		{
			name: "a node that is not Ready counts as tainted, even before the taint is set",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, withReady(corev1.ConditionFalse)),
				node("node-2", "4", "4Gi", 110, withReady(corev1.ConditionUnknown)),
			},
			pod: pod("nginx", "", ""),
			wantMsg: "0/2 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. " +
				"preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
		},
		{
			name: "the default NoExecute tolerations do not let a pod onto an unreachable node",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, withTaint(corev1.TaintNodeUnreachable, "", corev1.TaintEffectNoExecute), withReady(corev1.ConditionUnknown)),
			},
			pod: pod("nginx", "", "",
				tolerating(corev1.TaintNodeNotReady, corev1.TolerationOpExists, corev1.TaintEffectNoExecute),
				tolerating(corev1.TaintNodeUnreachable, corev1.TolerationOpExists, corev1.TaintEffectNoExecute)),
			wantMsg: "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. " +
				"preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
		},
		{
			name:  "a pod tolerating not-ready goes to a node that is not Ready",
			nodes: []*corev1.Node{node("node-1", "4", "4Gi", 110, withReady(corev1.ConditionFalse))},
			pod:   pod("ds", "", "", tolerating(corev1.TaintNodeNotReady, corev1.TolerationOpExists, "")),
			want:  "node-1",
		},
		{
			name:    "cordoned",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 110, cordoned)},
			pod:     pod("nginx", "", ""),
			wantMsg: "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
		},
		{
			name:  "cordoned, tolerated by the unschedulable toleration",
			nodes: []*corev1.Node{node("node-1", "4", "4Gi", 110, cordoned)},
			pod:   pod("nginx", "", "", tolerating(corev1.TaintNodeUnschedulable, corev1.TolerationOpExists, corev1.TaintEffectNoSchedule)),
			want:  "node-1",
		},
		{
			name: "cordon goes first, then taints",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, cordoned, withTaint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
				node("node-2", "4", "4Gi", 110, withTaint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
			},
			pod: pod("nginx", "", ""),
			wantMsg: "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable. " +
				"preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
		},
		{
			name: "taint tolerated by key and value",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, withTaint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
			},
			pod: pod("nginx", "", "", func(p *corev1.Pod) {
				p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
			}),
			want: "node-1",
		},
		{
			name: "a NoSchedule toleration does not tolerate NoExecute",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, withTaint("dedicated", "gpu", corev1.TaintEffectNoExecute)),
			},
			pod:     pod("nginx", "", "", tolerating("dedicated", corev1.TolerationOpExists, corev1.TaintEffectNoSchedule)),
			wantMsg: "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
		},
		{
			name: "PreferNoSchedule does not filter, it scores",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, withTaint("soft", "", corev1.TaintEffectPreferNoSchedule)),
				node("node-2", "4", "4Gi", 110),
			},
			pod:  pod("nginx", "", ""),
			want: "node-2",
		},
		{
			name: "PreferNoSchedule is the only place left",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, withTaint("soft", "", corev1.TaintEffectPreferNoSchedule)),
				node("node-2", "4", "4Gi", 110, cordoned),
			},
			pod:  pod("nginx", "", ""),
			want: "node-1",
		},
		{
			name: "nodeSelector",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, withLabel("disktype", "hdd")),
				node("node-2", "4", "4Gi", 110, withLabel("disktype", "ssd")),
				node("node-3", "4", "4Gi", 110),
			},
			pod:  pod("nginx", "", "", selecting("disktype", "ssd")),
			want: "node-2",
		},
		{
			name:    "nodeSelector matching nothing",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 110), node("node-2", "4", "4Gi", 110)},
			pod:     pod("nginx", "", "", selecting("disktype", "ssd")),
			wantMsg: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
		},
		{
			name: "required node affinity",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, withLabel("zone", "a")),
				node("node-2", "4", "4Gi", 110, withLabel("zone", "b")),
			},
			pod: pod("nginx", "", "", func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
						MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"a"}}},
					}}},
				}}
			}),
			want: "node-2",
		},
		{
			name: "preferred node affinity",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110, withLabel("zone", "a")),
				node("node-2", "4", "4Gi", 110, withLabel("zone", "b")),
				node("node-3", "4", "4Gi", 110, withLabel("zone", "c")),
			},
			pod: pod("nginx", "", "", func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
					PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 10, Preference: corev1.NodeSelectorTerm{
						MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}},
					}}},
				}}
			}),
			want: "node-2",
		},
		{
			name: "a daemon pod's matchFields metadata.name picks its node",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110), node("node-2", "4", "4Gi", 110), node("node-3", "4", "4Gi", 110),
			},
			pod:  pod("ds-abcde", "", "", onNode("node-2")),
			want: "node-2",
		},
		{
			name:    "a daemon pod's matchFields naming a node that is not there",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 110), node("node-2", "4", "4Gi", 110)},
			pod:     pod("ds-abcde", "", "", onNode("node-9")),
			wantMsg: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
		},
		{
			name:    "spec.nodeName of another node",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 110)},
			pod:     pod("nginx", "", "", func(p *corev1.Pod) { p.Spec.NodeName = "node-9" }),
			wantMsg: "0/1 nodes are available: 1 node(s) didn't match the requested node name. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
		},
		{
			name:    "too many pods",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 1)},
			placed:  map[string][]*corev1.Pod{"node-1": {pod("a", "", "")}},
			pod:     pod("nginx", "", ""),
			wantMsg: "0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
		},
		{
			name:    "cpu and memory both short: one reason each",
			nodes:   []*corev1.Node{node("node-1", "1", "1Gi", 110)},
			placed:  map[string][]*corev1.Pod{"node-1": {pod("a", "600m", "600Mi")}},
			pod:     pod("nginx", "500m", "500Mi"),
			wantMsg: "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
		},
		{
			name:   "exactly full fits",
			nodes:  []*corev1.Node{node("node-1", "1", "1Gi", 110)},
			placed: map[string][]*corev1.Pod{"node-1": {pod("a", "500m", "512Mi")}},
			pod:    pod("nginx", "500m", "512Mi"),
			want:   "node-1",
		},
		{
			name:    "ephemeral storage",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 110, withAllocatable(corev1.ResourceEphemeralStorage, "1Gi"))},
			pod:     pod("nginx", "", "", requesting(corev1.ResourceEphemeralStorage, "2Gi")),
			wantMsg: "0/1 nodes are available: 1 Insufficient ephemeral-storage. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
		},
		{
			name: "extended resource",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110),
				node("node-2", "4", "4Gi", 110, withAllocatable("example.com/gpu", "2")),
			},
			pod:  pod("cuda", "", "", requesting("example.com/gpu", "1")),
			want: "node-2",
		},
		{
			name:    "extended resource nowhere",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 110)},
			pod:     pod("cuda", "", "", requesting("example.com/gpu", "1")),
			wantMsg: "0/1 nodes are available: 1 Insufficient example.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
		},
		{
			name:  "init containers count by their largest, not their sum",
			nodes: []*corev1.Node{node("node-1", "1", "4Gi", 110)},
			pod: pod("nginx", "500m", "", func(p *corev1.Pod) {
				for _, n := range []string{"init-1", "init-2"} {
					p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n, Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: *resourceQ("1")}}})
				}
			}),
			want: "node-1",
		},
		{
			name:    "host port taken",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 110)},
			placed:  map[string][]*corev1.Pod{"node-1": {pod("a", "", "", hostPort(8080))}},
			pod:     pod("nginx", "", "", hostPort(8080)),
			wantMsg: "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
		},
		{
			name: "host port taken on one node goes to the other",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110),
				node("node-2", "1", "1Gi", 110),
			},
			placed: map[string][]*corev1.Pod{"node-1": {pod("a", "", "", hostPort(8080))}},
			pod:    pod("nginx", "", "", hostPort(8080)),
			want:   "node-2",
		},
		{
			name:   "host port on another protocol is free",
			nodes:  []*corev1.Node{node("node-1", "4", "4Gi", 110)},
			placed: map[string][]*corev1.Pod{"node-1": {pod("a", "", "", hostPort(53))}},
			pod: pod("dns", "", "", hostPort(53), func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports[0].Protocol = corev1.ProtocolUDP
			}),
			want: "node-1",
		},
		{
			name:    "preemptionPolicy Never",
			nodes:   []*corev1.Node{node("node-1", "1", "4Gi", 110)},
			pod:     pod("nginx", "2", "", func(p *corev1.Pod) { p.Spec.PreemptionPolicy = &never }),
			wantMsg: "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.",
		},
		{
			name:  "lower-priority pods whose removal would not help",
			nodes: []*corev1.Node{node("node-1", "1", "4Gi", 110)},
			placed: map[string][]*corev1.Pod{"node-1": {
				pod("low", "500m", "", priority(-1)),
			}},
			pod:     pod("nginx", "2", ""),
			wantMsg: "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Insufficient cpu.",
		},
		{
			name:  "lower-priority pods whose removal would help: logplane does not preempt",
			nodes: []*corev1.Node{node("node-1", "1", "4Gi", 110)},
			placed: map[string][]*corev1.Pod{"node-1": {
				pod("low", "800m", "", priority(-1)),
			}},
			pod:     pod("nginx", "500m", ""),
			wantMsg: "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Preemption of lower-priority pods is not supported.",
		},
		{
			name: "least allocated",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110),
				node("node-2", "4", "4Gi", 110),
			},
			placed: map[string][]*corev1.Pod{"node-1": {pod("a", "2", "2Gi")}},
			pod:    pod("nginx", "100m", "100Mi"),
			want:   "node-2",
		},
		{
			name: "spreading the pods of one owner goes before least allocated",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110),
				node("node-2", "4", "4Gi", 110),
			},
			placed: map[string][]*corev1.Pod{
				"node-1": {pod("other", "1", "1Gi")},
				"node-2": {pod("web-1", "100m", "100Mi", ownedBy("rs-1"))},
			},
			pod:  pod("web-2", "100m", "100Mi", ownedBy("rs-1")),
			want: "node-1",
		},
		{
			// The default spreading (hostname, maxSkew 3) scores 2 for no pod of the group and
			// round(ln 4 + 2) = 3 for one: normalised 100 and 66, times 2. Least allocated gives
			// 22 to the node three quarters full and 95 to the other: 200+22 < 132+95, so the
			// pod joins its sibling, as kube-scheduler would place it.
			name: "a node three quarters full outweighs default spreading, which is mild",
			nodes: []*corev1.Node{
				node("node-1", "4", "4Gi", 110),
				node("node-2", "4", "4Gi", 110),
			},
			placed: map[string][]*corev1.Pod{
				"node-1": {pod("other", "3", "3Gi")},
				"node-2": {pod("web-1", "100m", "100Mi", ownedBy("rs-1"))},
			},
			pod:  pod("web-2", "100m", "100Mi", ownedBy("rs-1")),
			want: "node-2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := placement.Place(nodesOf(tt.nodes, tt.placed), nil, placement.NewPod(tt.pod))
			if tt.wantMsg != "" {
				if d.Node != "" {
					t.Fatalf("placed on %s, want no node: %s", d.Node, tt.wantMsg)
				}
				if got := d.Err.Error(); got != tt.wantMsg {
					t.Fatalf("message:\n got %q\nwant %q", got, tt.wantMsg)
				}
				return
			}
			if d.Err != nil {
				t.Fatalf("not placed: %v", d.Err)
			}
			if d.Node != tt.want {
				t.Fatalf("placed on %s, want %s", d.Node, tt.want)
			}
		})
	}
}

// Reasons are sorted as strings, the way kube-scheduler sorts them: "10 ..." before "2 ...".
func TestFitErrorSortsReasonsAsStrings(t *testing.T) {
	var ns []*corev1.Node
	for i := range 12 {
		if i < 10 {
			ns = append(ns, node(fmt.Sprintf("n%d", i), "4", "4Gi", 110, cordoned))
		} else {
			ns = append(ns, node(fmt.Sprintf("n%d", i), "100m", "4Gi", 110))
		}
	}
	d := placement.Place(nodesOf(ns, nil), nil, placement.NewPod(pod("p", "1", "")))
	want := "0/12 nodes are available: 10 node(s) were unschedulable, 2 Insufficient cpu. " +
		"preemption: 0/12 nodes are available: 10 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
	if d.Err == nil || d.Err.Error() != want {
		t.Fatalf("got %v\nwant %q", d.Err, want)
	}
}

// Pods of one owner spread evenly over identical nodes, and pods that tie do not all pick the
// same node.
func TestPlanSpreads(t *testing.T) {
	var ns []*corev1.Node
	for i := range 10 {
		ns = append(ns, node(fmt.Sprintf("node-%d", i), "64", "256Gi", 110))
	}
	var owned, loose []*placement.Pod
	for i := range 100 {
		owned = append(owned, placement.NewPod(pod(fmt.Sprintf("web-%d", i), "100m", "64Mi", ownedBy("rs-1"))))
		loose = append(loose, placement.NewPod(pod(fmt.Sprintf("bare-%d", i), "", "")))
	}
	for _, tc := range []struct {
		name     string
		pods     []*placement.Pod
		min, max int
	}{{"owned", owned, 10, 10}, {"no requests, no owner", loose, 7, 13}} {
		t.Run(tc.name, func(t *testing.T) {
			per := map[string]int{}
			for _, d := range placement.Plan(nodesOf(ns, nil), nil, tc.pods) {
				if d.Err != nil {
					t.Fatal(d.Err)
				}
				per[d.Node]++
			}
			for _, n := range ns {
				if c := per[n.Name]; c < tc.min || c > tc.max {
					t.Errorf("%s got %d pods, want %d to %d (all: %v)", n.Name, c, tc.min, tc.max, per)
				}
			}
		})
	}
}

// Place is deterministic: the same state gives the same node.
func TestPlaceDeterministic(t *testing.T) {
	ns := []*corev1.Node{node("a", "4", "4Gi", 110), node("b", "4", "4Gi", 110), node("c", "4", "4Gi", 110)}
	p := placement.NewPod(pod("nginx", "", ""))
	first := placement.Place(nodesOf(ns, nil), nil, p).Node
	for range 20 {
		if got := placement.Place(nodesOf(ns, nil), nil, p).Node; got != first {
			t.Fatalf("placed on %s, then on %s", first, got)
		}
	}
}
