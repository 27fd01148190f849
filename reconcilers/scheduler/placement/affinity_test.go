package placement_test

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

// The cases of kube-scheduler's InterPodAffinity filter tests (interpodaffinity/filtering_test.go,
// TestRequiredAffinitySingleNode), with Place's whole filter chain: one node, region r1 and
// zone z11, holding a pod labelled service=securityscan.
func TestRequiredPodAffinitySingleNode(t *testing.T) {
	n := []*corev1.Node{lnode("node1", "region", "r1", "zone", "z11")}
	scan := lpod("default", "scan", kv("service", "securityscan"))
	scanIn := func(ns string) *corev1.Pod { return lpod(ns, "scan", kv("service", "securityscan")) }
	s1 := kv("security", "S1")
	serviceIn := func(values ...string) *metav1.LabelSelector { return sel("service", in, values...) }
	nsTeam1 := sel("team", in, "team1")
	tests := []struct {
		name   string
		pod    *corev1.Pod
		placed []*corev1.Pod
		want   *placement.Status
	}{
		{name: "no required affinity, empty node", pod: lpod("default", "p", nil), want: fits},
		{
			name:   "affinity In matching the existing pod",
			pod:    lpod("default", "p", s1, withAffinity(term("region", serviceIn("securityscan", "value2")))),
			placed: []*corev1.Pod{scan}, want: fits,
		},
		{
			name:   "affinity NotIn matching the existing pod",
			pod:    lpod("default", "p", s1, withAffinity(term("region", sel("service", notIn, "securityscan3", "value3")))),
			placed: []*corev1.Pod{scan}, want: fits,
		},
		{
			name: "affinity in another namespace does not match",
			pod: lpod("default", "p", s1, withAffinity(corev1.PodAffinityTerm{
				LabelSelector: serviceIn("securityscan", "value2"), Namespaces: []string{"DiffNameSpace"}, TopologyKey: "region"})),
			placed: []*corev1.Pod{scanIn("ns")}, want: affinityMismatch,
		},
		{
			name:   "affinity selector not matching the existing pod",
			pod:    lpod("default", "p", kv("service", "securityscan"), withAffinity(term("", serviceIn("antivirusscan", "value2")))),
			placed: []*corev1.Pod{scan}, want: affinityMismatch,
		},
		{
			name: "several terms with different operators, all matching",
			pod: lpod("default", "p", s1, withAffinity(
				term("region", and(sel("service", exists), "wrongkey", notExists)),
				term("region", and(sel("service", in, "securityscan"), "service", notIn, "WrongValue")))),
			placed: []*corev1.Pod{scan}, want: fits,
		},
		{
			name: "the requirements of a selector are ANDed: one does not match",
			pod: lpod("default", "p", s1, withAffinity(
				term("region", and(sel("service", exists), "wrongkey", notExists)),
				term("region", and(sel("service", in, "securityscan2"), "service", notIn, "WrongValue")))),
			placed: []*corev1.Pod{scan}, want: affinityMismatch,
		},
		{
			name: "affinity and anti-affinity both satisfied",
			pod: lpod("default", "p", s1, withAffinity(term("region", serviceIn("securityscan", "value2"))),
				withAnti(term("node", serviceIn("antivirusscan", "value2")))),
			placed: []*corev1.Pod{scan}, want: fits,
		},
		{
			name: "affinity, anti-affinity and the existing pod's anti-affinity satisfied",
			pod: lpod("default", "p", s1, withAffinity(term("region", serviceIn("securityscan", "value2"))),
				withAnti(term("node", serviceIn("antivirusscan", "value2")))),
			placed: []*corev1.Pod{lpod("default", "scan", kv("service", "securityscan"), withAnti(term("node", serviceIn("antivirusscan", "value2"))))},
			want:   fits,
		},
		{
			name: "affinity satisfied, anti-affinity not",
			pod: lpod("default", "p", s1, withAffinity(term("region", serviceIn("securityscan", "value2"))),
				withAnti(term("zone", serviceIn("securityscan", "value2")))),
			placed: []*corev1.Pod{scan}, want: antiMismatch,
		},
		{
			name: "the existing pod's anti-affinity is not satisfied",
			pod: lpod("default", "p", kv("service", "securityscan"), withAffinity(term("region", serviceIn("securityscan", "value2"))),
				withAnti(term("node", serviceIn("antivirusscan", "value2")))),
			placed: []*corev1.Pod{lpod("default", "scan", kv("service", "securityscan"), withAnti(term("zone", serviceIn("securityscan", "value2"))))},
			want:   existingAnti,
		},
		{
			name:   "a pod without anti-affinity still respects the existing pod's",
			pod:    lpod("default", "p", kv("service", "securityscan")),
			placed: []*corev1.Pod{lpod("default", "scan", kv("service", "securityscan"), withAnti(term("zone", serviceIn("securityscan", "value2"))))},
			want:   existingAnti,
		},
		{
			name:   "the existing pod's anti-affinity does not select the pod",
			pod:    lpod("default", "p", kv("service", "securityscan")),
			placed: []*corev1.Pod{lpod("default", "scan", kv("service", "securityscan"), withAnti(term("zone", sel("service", notIn, "securityscan", "value2"))))},
			want:   fits,
		},
		{
			name: "symmetry: the pod's anti-affinity goes first",
			pod: lpod("default", "p", kv("service", "securityscan"),
				withAnti(term("region", sel("service", exists)), term("region", sel("security", exists)))),
			placed: []*corev1.Pod{lpod("default", "other", s1, withAnti(term("zone", sel("security", exists))))},
			want:   antiMismatch,
		},
		{
			name:   "symmetry: existing and incoming pods partially match each other",
			pod:    lpod("default", "p", s1, withAnti(term("zone", sel("security", exists)))),
			placed: []*corev1.Pod{lpod("default", "other", kv("service", "securityscan"), withAnti(term("zone", sel("service", exists)), term("zone", sel("security", exists))))},
			want:   existingAnti,
		},
		{
			name: "namespaceSelector selects the existing pod's namespace",
			pod: lpod("default", "p", s1, withAffinity(corev1.PodAffinityTerm{
				LabelSelector: serviceIn("securityscan", "value2"), NamespaceSelector: nsTeam1, TopologyKey: "region"})),
			placed: []*corev1.Pod{scanIn("subteam1.team1")}, want: fits,
		},
		{
			name: "namespaceSelector does not select the existing pod's namespace",
			pod: lpod("default", "p", s1, withAffinity(corev1.PodAffinityTerm{
				LabelSelector: serviceIn("securityscan", "value2"), NamespaceSelector: nsTeam1, TopologyKey: "region"})),
			placed: []*corev1.Pod{scanIn("subteam1.team2")}, want: affinityMismatch,
		},
		{
			name: "anti-affinity with a matching namespaceSelector",
			pod: lpod("subteam1.team1", "p", s1, withAnti(corev1.PodAffinityTerm{
				LabelSelector: serviceIn("securityscan", "value2"), NamespaceSelector: nsTeam1, TopologyKey: "zone"})),
			placed: []*corev1.Pod{scanIn("subteam2.team1")}, want: antiMismatch,
		},
		{
			name: "anti-affinity with an empty namespaceSelector: every namespace",
			pod: lpod("subteam1.team1", "p", s1, withAnti(corev1.PodAffinityTerm{
				LabelSelector: serviceIn("securityscan", "value2"), NamespaceSelector: &metav1.LabelSelector{}, TopologyKey: "zone"})),
			placed: []*corev1.Pod{scanIn("subteam2.team1")}, want: antiMismatch,
		},
		{
			name: "anti-affinity with a namespaceSelector that does not match",
			pod: lpod("subteam1.team1", "p", s1, withAnti(corev1.PodAffinityTerm{
				LabelSelector: serviceIn("securityscan", "value2"), NamespaceSelector: nsTeam1, TopologyKey: "zone"})),
			placed: []*corev1.Pod{scanIn("subteam1.team2")}, want: fits,
		},
		{
			name: "an existing pod's anti-affinity selects the incoming pod's namespace by its labels",
			pod:  lpod("subteam2.team1", "p", kv("service", "securityscan")),
			placed: []*corev1.Pod{lpod("subteam1.team2", "guard", nil, withAnti(corev1.PodAffinityTerm{
				LabelSelector: serviceIn("securityscan"), NamespaceSelector: nsTeam1, TopologyKey: "zone"}))},
			want: existingAnti,
		},
		{
			name: "matchLabelKeys narrow the selector to the pod's own value",
			pod: lpod("default", "p", kv("app", "web", "version", "v2"), withAnti(corev1.PodAffinityTerm{
				LabelSelector: sel("app", in, "web"), MatchLabelKeys: []string{"version"}, TopologyKey: "zone"})),
			placed: []*corev1.Pod{lpod("default", "old", kv("app", "web", "version", "v1"))},
			want:   fits,
		},
		{
			name: "matchLabelKeys: a pod of the same version conflicts",
			pod: lpod("default", "p", kv("app", "web", "version", "v2"), withAnti(corev1.PodAffinityTerm{
				LabelSelector: sel("app", in, "web"), MatchLabelKeys: []string{"version"}, TopologyKey: "zone"})),
			placed: []*corev1.Pod{lpod("default", "new", kv("app", "web", "version", "v2"))},
			want:   antiMismatch,
		},
		{
			name: "mismatchLabelKeys: affinity to pods of another tenant only",
			pod: lpod("default", "p", kv("app", "web", "tenant", "a"), withAffinity(corev1.PodAffinityTerm{
				LabelSelector: sel("app", in, "web"), MismatchLabelKeys: []string{"tenant"}, TopologyKey: "zone"})),
			placed: []*corev1.Pod{lpod("default", "same", kv("app", "web", "tenant", "a"))},
			want:   affinityMismatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkStatuses(t, n, map[string][]*corev1.Pod{"node1": tt.placed}, teamNamespaces, tt.pod, []*placement.Status{tt.want})
		})
	}
}

// kube-scheduler's TestRequiredAffinityMultipleNodes, with Place's filters.
func TestRequiredPodAffinityMultipleNodes(t *testing.T) {
	china, chinaAz1, india := kv("region", "China"), kv("region", "China", "az", "az1"), kv("region", "India")
	hosts := func(zone1, zone2 string) []*corev1.Node {
		return []*corev1.Node{
			lnode("nodeA", "region", "r1", "zone", zone1, "hostname", "nodeA"),
			lnode("nodeB", "region", "r1", "zone", zone2, "hostname", "nodeB"),
		}
	}
	tests := []struct {
		name   string
		pod    *corev1.Pod
		placed map[string][]*corev1.Pod
		nodes  []*corev1.Node
		want   []*placement.Status
	}{
		{
			name:   "every node of the matching pod's region fits",
			pod:    lpod("default", "p", nil, withAffinity(term("region", sel("foo", in, "bar")))),
			placed: on("node1", lpod("default", "p1", kv("foo", "bar"))),
			nodes:  []*corev1.Node{lnode("node1", china...), lnode("node2", chinaAz1...), lnode("node3", india...)},
			want:   []*placement.Status{fits, fits, affinityMismatch},
		},
		{
			name: "the first pod of a group whose affinity selects itself may start it anywhere",
			pod: lpod("default", "p", kv("foo", "bar", "service", "securityscan"),
				withAffinity(term("zone", sel("foo", in, "bar")), term("zone", sel("service", in, "securityscan")))),
			placed: on("nodeA", lpod("default", "p1", kv("foo", "bar"))),
			nodes:  []*corev1.Node{lnode("nodeA", "zone", "az1", "hostname", "h1"), lnode("nodeB", "zone", "az2", "hostname", "h2")},
			want:   []*placement.Status{fits, fits},
		},
		{
			name: "the first pod of a group still needs the topology key",
			pod: lpod("default", "p", kv("foo", "bar", "service", "securityscan"),
				withAffinity(term("zone", sel("foo", in, "bar")), term("zone", sel("service", in, "securityscan")))),
			placed: on("nodeA", lpod("default", "p1", kv("foo", "bar"))),
			nodes:  []*corev1.Node{lnode("nodeA", "zoneLabel", "az1", "hostname", "h1"), lnode("nodeB", "zoneLabel", "az2", "hostname", "h2")},
			want:   []*placement.Status{affinityMismatch, affinityMismatch},
		},
		{
			name:   "anti-affinity covers every node of the region",
			pod:    lpod("default", "p", nil, withAnti(term("region", sel("foo", in, "abc")))),
			placed: on("nodeA", lpod("default", "p1", kv("foo", "abc"))),
			nodes:  hosts("z1", "z1"),
			want:   []*placement.Status{antiMismatch, antiMismatch},
		},
		{
			name:   "anti-affinity: any one term matching is enough",
			pod:    lpod("default", "p", nil, withAnti(term("region", sel("foo", in, "abc")), term("zone", sel("service", in, "securityscan")))),
			placed: on("nodeA", lpod("default", "p1", kv("foo", "abc", "service", "securityscan"))),
			nodes:  hosts("z1", "z2"),
			want:   []*placement.Status{antiMismatch, antiMismatch},
		},
		{
			name:   "anti-affinity: another region fits",
			pod:    lpod("default", "p", nil, withAnti(term("region", sel("foo", in, "abc")))),
			placed: on("nodeA", lpod("default", "p1", kv("foo", "abc"))),
			nodes:  []*corev1.Node{lnode("nodeA", china...), lnode("nodeB", chinaAz1...), lnode("nodeC", india...)},
			want:   []*placement.Status{antiMismatch, antiMismatch, fits},
		},
		{
			name: "anti-affinity of a pod in another namespace does not select the incoming pod",
			pod:  lpod("NS1", "p", kv("foo", "123"), withAnti(term("region", sel("foo", in, "bar")))),
			placed: on("nodeA", lpod("NS1", "p1", kv("foo", "bar")),
				"nodeC", lpod("NS2", "p2", nil, withAnti(term("region", sel("foo", in, "123"))))),
			nodes: []*corev1.Node{lnode("nodeA", china...), lnode("nodeB", chinaAz1...), lnode("nodeC", india...)},
			want:  []*placement.Status{antiMismatch, antiMismatch, fits},
		},
		{
			name:   "an existing pod's term on a key no node has selects nothing",
			pod:    lpod("default", "p", kv("foo", "")),
			placed: on("nodeA", lpod("default", "p1", nil, withAnti(term("invalid-node-label", sel("foo", exists))))),
			nodes:  hosts("z1", "z1"),
			want:   []*placement.Status{fits, fits},
		},
		{
			name:   "the incoming pod's term on a key no node has excludes nothing",
			pod:    lpod("default", "p", nil, withAnti(term("invalid-node-label", sel("foo", exists)))),
			placed: on("nodeA", lpod("default", "p1", kv("foo", ""))),
			nodes:  hosts("z1", "z1"),
			want:   []*placement.Status{fits, fits},
		},
		{
			name: "existing pods' anti-affinity excludes every node",
			pod:  lpod("default", "p", kv("foo", "", "bar", "")),
			placed: on("nodeA", lpod("default", "p1", nil, withAnti(term("zone", sel("foo", exists)))),
				lpod("default", "p2", nil, withAnti(term("region", sel("bar", exists))))),
			nodes: hosts("z1", "z2"),
			want:  []*placement.Status{existingAnti, existingAnti},
		},
		{
			name:   "the incoming pod's anti-affinity excludes every node",
			pod:    lpod("default", "p", nil, withAnti(term("zone", sel("foo", exists)), term("region", sel("bar", exists)))),
			placed: on("nodeA", lpod("default", "p1", kv("foo", "")), "nodeB", lpod("default", "p2", kv("bar", ""))),
			nodes:  hosts("z1", "z2"),
			want:   []*placement.Status{antiMismatch, antiMismatch},
		},
		{
			name:   "existing pod: only a term whose selector and key both match counts",
			pod:    lpod("default", "p", kv("foo", "", "bar", "")),
			placed: on("nodeA", lpod("default", "p1", nil, withAnti(term("invalid-node-label", sel("foo", exists)), term("zone", sel("bar", exists))))),
			nodes:  hosts("z1", "z2"),
			want:   []*placement.Status{existingAnti, fits},
		},
		{
			name:   "incoming pod: only a term whose selector and key both match counts",
			pod:    lpod("default", "p", nil, withAnti(term("invalid-node-label", sel("foo", exists)), term("zone", sel("bar", exists)))),
			placed: on("nodeA", lpod("default", "podA", kv("foo", "", "bar", ""))),
			nodes:  hosts("z1", "z2"),
			want:   []*placement.Status{antiMismatch, fits},
		},
		{
			name: "existing pods' terms each select the incoming pod on their node's zone",
			pod:  lpod("default", "p", kv("foo", "", "bar", "")),
			placed: on("nodeA", lpod("default", "p1", nil, withAnti(term("zone", sel("foo", exists)), term("zone", sel("labelA", exists)))),
				"nodeB", lpod("default", "p2", nil, withAnti(term("zone", sel("bar", exists)), term("zone", sel("labelB", exists))))),
			nodes: []*corev1.Node{
				lnode("nodeA", "region", "r1", "zone", "z1", "hostname", "nodeA"),
				lnode("nodeB", "region", "r1", "zone", "z2", "hostname", "nodeB"),
				lnode("nodeC", "region", "r1", "zone", "z3", "hostname", "nodeC"),
			},
			want: []*placement.Status{existingAnti, existingAnti, fits},
		},
		{
			name:   "affinity: one pod matching every term, in the domains of every key",
			pod:    lpod("default", "p", nil, withAffinity(term("region", sel("foo", exists)), term("zone", sel("bar", exists)))),
			placed: on("nodeA", lpod("default", "pod1", kv("foo", "", "bar", ""))),
			nodes:  hosts("z1", "z1"),
			want:   []*placement.Status{fits, fits},
		},
		{
			name:   "affinity: the terms must be matched by the same pod",
			pod:    lpod("default", "p", nil, withAffinity(term("region", sel("foo", exists)), term("zone", sel("bar", exists)))),
			placed: on("nodeA", lpod("default", "pod1", kv("foo", "")), "nodeB", lpod("default", "pod2", kv("bar", ""))),
			nodes:  hosts("z1", "z2"),
			want:   []*placement.Status{affinityMismatch, affinityMismatch},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkStatuses(t, tt.nodes, tt.placed, placement.Namespaces{"NS1": nil}, tt.pod, tt.want)
		})
	}
}

// kube-scheduler's TestPreferredAffinity (interpodaffinity/scoring_test.go): the normalised
// InterPodAffinity scores.
func TestPreferredPodAffinityScores(t *testing.T) {
	s1, s2 := kv("security", "S1"), kv("security", "S2")
	china, india, az1, az2, chinaAz1 := kv("region", "China"), kv("region", "India"), kv("az", "az1"), kv("az", "az2"), kv("region", "China", "az", "az1")
	security := func(v string) *metav1.LabelSelector { return sel("security", in, v) }
	stayWithS1InRegion := preferring(5, term("region", security("S1")))
	stayWithS2InRegion := preferring(6, term("region", security("S2")))
	affinity3 := func(p *corev1.Pod) {
		preferring(8, term("region", and(sel("security", notIn, "S1"), "security", in, "S2")))(p)
		preferring(2, term("region", and(sel("security", exists), "wrongkey", notExists)))(p)
	}
	hard := withAffinity(term("region", sel("security", in, "S1", "value2")), term("region", and(sel("security", exists), "wrongkey", notExists)))
	awayFromS1InAz := avoiding(5, term("az", security("S1")))
	awayFromS2InAz := avoiding(5, term("az", security("S2")))
	stayS1AwayS2 := func(p *corev1.Pod) {
		preferring(8, term("region", security("S1")))(p)
		avoiding(5, term("az", security("S2")))(p)
	}
	nsTerm := corev1.PodAffinityTerm{LabelSelector: security("S1"), TopologyKey: "region",
		Namespaces: []string{"subteam2.team2"}, NamespaceSelector: sel("team", in, "team1")}
	affinityNS := func(p *corev1.Pod) { preferring(5, nsTerm)(p) }
	antiNS := func(p *corev1.Pod) { avoiding(5, nsTerm)(p) }
	nodes := func(labels ...[]string) []*corev1.Node {
		out := make([]*corev1.Node, len(labels))
		for i, l := range labels {
			out[i] = lnode("node"+string(rune('1'+i)), l...)
		}
		return out
	}
	p := func(name string, labels []string, opts ...func(*corev1.Pod)) *corev1.Pod {
		return lpod("default", name, labels, opts...)
	}
	pns := func(ns, name string, labels []string) *corev1.Pod { return lpod(ns, name, labels) }
	tests := []struct {
		name   string
		pod    *corev1.Pod
		placed map[string][]*corev1.Pod
		nodes  []*corev1.Node
		want   []int64 // nil: not scored
	}{
		{name: "no affinity anywhere", pod: p("p", s1), nodes: nodes(china, india, az1)},
		{
			name: "the node in the region of a matching pod scores highest", pod: p("p", s1, stayWithS1InRegion),
			placed: on("node1", p("a", s1), "node2", p("b", s2), "node3", p("c", s1)),
			nodes:  nodes(china, india, az1), want: []int64{100, 0, 0},
		},
		{
			name: "nodes of the same region score the same", pod: p("p", nil, stayWithS1InRegion),
			placed: on("node1", p("a", s1)),
			nodes:  nodes(china, chinaAz1, india), want: []int64{100, 100, 0},
		},
		{
			name: "the region with more matching pods scores higher", pod: p("p", s1, stayWithS2InRegion),
			placed: on("node1", p("a", s2), p("b", s2), "node2", p("c", s2), "node3", p("d", s2), "node4", p("e", s2), "node5", p("f", s2)),
			nodes:  nodes(china, india, china, china, india), want: []int64{100, 0, 100, 100, 0},
		},
		{
			name: "operators and weights", pod: p("p", s1, affinity3),
			placed: on("node1", p("a", s1), "node2", p("b", s2), "node3", p("c", s1)),
			nodes:  nodes(china, india, az1), want: []int64{20, 100, 0},
		},
		{
			name: "symmetry: placed pods' preferred affinity", pod: p("p", s2),
			placed: on("node1", p("a", s1, stayWithS1InRegion), "node2", p("b", s2, stayWithS2InRegion)),
			nodes:  nodes(china, india, az1), want: []int64{0, 100, 0},
		},
		{
			name: "symmetry with a namespaceSelector", pod: lpod("subteam1.team1", "p", s1),
			placed: on("node1", p("a", s1, affinityNS), "node2", p("b", s2, stayWithS2InRegion)),
			nodes:  nodes(china, india, az1), want: []int64{100, 0, 0},
		},
		{
			name: "anti-affinity symmetry with a namespaceSelector", pod: lpod("subteam1.team1", "p", s1),
			placed: on("node1", p("a", s1, antiNS), "node2", p("b", s2, stayWithS2InRegion)),
			nodes:  nodes(china, india, az1), want: []int64{0, 100, 100},
		},
		{
			name: "symmetry: placed pods' required affinity counts with weight 1", pod: p("p", s1),
			placed: on("node1", p("a", s1, hard), "node2", p("b", s2, hard)),
			nodes:  nodes(china, india, az1), want: []int64{100, 100, 0},
		},
		{
			name: "anti-affinity: away from the matching pod", pod: p("p", s1, awayFromS1InAz),
			placed: on("node1", p("a", s1), "node2", p("b", s2)),
			nodes:  nodes(az1, china), want: []int64{0, 100},
		},
		{
			name: "anti-affinity: a node without the key is not avoided", pod: p("p", s1, awayFromS1InAz),
			placed: on("node1", p("a", s1), "node2", p("b", s1)),
			nodes:  nodes(az1, china), want: []int64{0, 100},
		},
		{
			name: "anti-affinity: more matching pods, lower score", pod: p("p", s1, awayFromS1InAz),
			placed: on("node1", p("a", s1), p("b", s1), "node2", p("c", s2)),
			nodes:  nodes(az1, india), want: []int64{0, 100},
		},
		{
			name: "anti-affinity symmetry", pod: p("p", s2),
			placed: on("node1", p("a", s1, awayFromS2InAz), "node2", p("b", s2, awayFromS1InAz)),
			nodes:  nodes(az1, az2), want: []int64{0, 100},
		},
		{
			name: "affinity and anti-affinity", pod: p("p", s1, stayS1AwayS2),
			placed: on("node1", p("a", s1), "node2", p("b", s1)),
			nodes:  nodes(china, az1), want: []int64{100, 0},
		},
		{
			name: "together in a region, apart by node", pod: p("p", s1, stayS1AwayS2),
			placed: on("node1", p("a", s1), p("b", s1), "node2", p("c", s1), "node3", p("d", s1), p("e", s1), "node4", p("f", s1), "node5", p("g", s1)),
			nodes:  nodes(chinaAz1, india, china, china, india), want: []int64{100, 0, 100, 100, 0},
		},
		{
			name: "affinity, anti-affinity and their symmetry", pod: p("p", s1, stayS1AwayS2),
			placed: on("node1", p("a", s1), "node2", p("b", s2), "node3", p("c", nil, stayS1AwayS2), "node4", p("d", nil, awayFromS1InAz)),
			nodes:  nodes(china, az1, india, az2), want: []int64{100, 0, 100, 0},
		},
		{
			name: "some nodes of a domain without pods with affinity", pod: p("p", s1),
			placed: on("node1", p("a", s1), "node2", p("b", nil, stayS1AwayS2)),
			nodes:  nodes(china, china), want: []int64{0, 0},
		},
		{
			name: "affinity to pods of the namespaces a namespaceSelector selects", pod: lpod("subteam1.team1", "p", s1, affinityNS),
			placed: on("node1", pns("subteam1.team1", "a", s1), pns("subteam1.team1", "b", s1), pns("subteam1.team2", "c", s1), "node2", pns("subteam2.team1", "d", s1)),
			nodes:  nodes(china, india), want: []int64{100, 0},
		},
		{
			name: "affinity by namespaceSelector and namespaces", pod: lpod("subteam1.team1", "p", s1, affinityNS),
			placed: on("node1", pns("subteam1.team1", "a", s1), pns("subteam1.team1", "b", s1), pns("subteam2.team2", "c", s1), "node2", pns("subteam2.team1", "d", s1)),
			nodes:  nodes(china, india), want: []int64{100, 0},
		},
		{
			name: "anti-affinity to pods of the namespaces a namespaceSelector selects", pod: lpod("subteam1.team1", "p", s1, antiNS),
			placed: on("node1", pns("subteam1.team1", "a", s1), pns("subteam1.team1", "b", s1), pns("subteam1.team2", "c", s1), "node2", pns("subteam2.team1", "d", s1)),
			nodes:  nodes(china, india), want: []int64{0, 100},
		},
		{
			name: "placed pods' preferred terms count", pod: p("p", s2),
			placed: on("node1", p("a", s1, stayS1AwayS2), "node2", p("b", s2, stayWithS2InRegion)),
			nodes:  nodes(china, india), want: []int64{0, 100},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := nodesOf(tt.nodes, tt.placed)
			got := placement.InterPodScores(all, all, teamNamespaces, placement.NewPod(tt.pod))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("scores %v, want %v", got, tt.want)
			}
		})
	}
}

// What a user sees: the FailedScheduling message, with the preemption part as kube-scheduler
// writes it, and where the pod goes.
func TestPlacePodAffinity(t *testing.T) {
	web := kv("app", "web")
	oneApart := withAnti(term(corev1.LabelHostname, sel("app", in, "web")))
	three := []*corev1.Node{node("node-1", "4", "4Gi", 110), node("node-2", "4", "4Gi", 110), node("node-3", "4", "4Gi", 110)}
	tests := []struct {
		name    string
		nodes   []*corev1.Node
		placed  map[string][]*corev1.Pod
		pod     *corev1.Pod
		want    string
		wantMsg string
	}{
		{
			name:   "required anti-affinity on hostname: the node without a replica",
			nodes:  three,
			placed: on("node-1", lpod("default", "web-1", web, oneApart), "node-3", lpod("default", "web-2", web, oneApart)),
			pod:    lpod("default", "web-3", web, oneApart),
			want:   "node-2",
		},
		{
			name:   "required anti-affinity on hostname: one replica per node, the fourth fits nowhere",
			nodes:  three,
			placed: on("node-1", lpod("default", "web-1", web, oneApart), "node-2", lpod("default", "web-2", web, oneApart), "node-3", lpod("default", "web-3", web, oneApart)),
			pod:    lpod("default", "web-4", web, oneApart),
			wantMsg: "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. " +
				"preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
		},
		{
			name:   "anti-affinity, a cordoned node and a lack of cpu together",
			nodes:  []*corev1.Node{node("node-1", "4", "4Gi", 110), node("node-2", "4", "4Gi", 110, cordoned), node("node-3", "1", "4Gi", 110)},
			placed: on("node-1", lpod("default", "web-1", web, oneApart)),
			pod: func() *corev1.Pod {
				p := lpod("default", "web-2", web, oneApart)
				p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: *resourceQ("2")}
				return p
			}(),
			wantMsg: "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match pod anti-affinity rules, 1 node(s) were unschedulable. " +
				"preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.",
		},
		{
			name:    "a placed pod's anti-affinity keeps others off its node",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 110)},
			placed:  on("node-1", lpod("default", "loner", kv("app", "loner"), withAnti(term(corev1.LabelHostname, &metav1.LabelSelector{})))),
			pod:     lpod("default", "p", kv("app", "other")),
			wantMsg: "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
		},
		{
			name:    "required affinity to pods that do not exist",
			nodes:   []*corev1.Node{node("node-1", "4", "4Gi", 110), node("node-2", "4", "4Gi", 110)},
			pod:     lpod("default", "p", kv("app", "web"), withAffinity(term(corev1.LabelHostname, sel("app", in, "cache")))),
			wantMsg: "0/2 nodes are available: 2 node(s) didn't match pod affinity rules. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
		},
		{
			name:   "required affinity: next to the cache",
			nodes:  three,
			placed: on("node-2", lpod("default", "cache", kv("app", "cache"))),
			pod:    lpod("default", "p", kv("app", "web"), withAffinity(term(corev1.LabelHostname, sel("app", in, "cache")))),
			want:   "node-2",
		},
		{
			name:   "preemption: removing the lower-priority pod that repels would make room",
			nodes:  []*corev1.Node{node("node-1", "4", "4Gi", 110)},
			placed: on("node-1", lpod("default", "low", web, oneApart, priority(-1))),
			pod:    lpod("default", "web-2", web, oneApart),
			wantMsg: "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules. " +
				"preemption: 0/1 nodes are available: 1 Preemption of lower-priority pods is not supported.",
		},
		{
			name:  "preemption: the repelling pod in the zone is on another node",
			nodes: []*corev1.Node{node("node-1", "4", "4Gi", 110, withLabel("zone", "a")), node("node-2", "4", "4Gi", 110, withLabel("zone", "a"))},
			placed: on("node-1", lpod("default", "low", nil, priority(-1)),
				"node-2", lpod("default", "web-1", web)),
			pod: lpod("default", "web-2", web, withAnti(term("zone", sel("app", in, "web")))),
			wantMsg: "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. " +
				"preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 node(s) didn't match pod anti-affinity rules.",
		},
		{
			name:  "an invalid selector fits nowhere",
			nodes: []*corev1.Node{node("node-1", "4", "4Gi", 110)},
			pod:   lpod("default", "p", nil, withAnti(term(corev1.LabelHostname, sel("app", in, "{{bad}}")))),
			wantMsg: `0/1 nodes are available: parsing pod: requiredAntiAffinityTerms: values[0][app]: Invalid value: "{{bad}}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?'). ` +
				"preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
		},
		{
			name:   "preferred anti-affinity spreads from the matching pod",
			nodes:  []*corev1.Node{node("node-1", "4", "4Gi", 110), node("node-2", "4", "4Gi", 110)},
			placed: on("node-2", lpod("default", "web-1", web)),
			pod:    lpod("default", "web-2", web, avoiding(100, term(corev1.LabelHostname, sel("app", in, "web")))),
			want:   "node-1",
		},
		{
			name:  "preferred affinity outweighs least allocated",
			nodes: []*corev1.Node{node("node-1", "4", "4Gi", 110), node("node-2", "4", "4Gi", 110)},
			placed: on("node-2", func() *corev1.Pod {
				p := lpod("default", "cache", kv("app", "cache"))
				p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: *resourceQ("2")}
				return p
			}()),
			pod:  lpod("default", "web", web, preferring(1, term(corev1.LabelHostname, sel("app", in, "cache")))),
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
