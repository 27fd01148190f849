package placement_test

import (
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

var (
	fooSelector = sel("foo", exists)
	barSelector = sel("bar", exists)
	foo         = kv("foo", "")
	dns         = corev1.DoNotSchedule
	anyway      = corev1.ScheduleAnyway
)

// abxy are kube-scheduler's test nodes: node-a and node-b in zone1, node-x and node-y in zone2,
// each labelled node=<name>.
func abxy() []*corev1.Node {
	return []*corev1.Node{
		lnode("node-a", "zone", "zone1", "node", "node-a"),
		lnode("node-b", "zone", "zone1", "node", "node-b"),
		lnode("node-x", "zone", "zone2", "node", "node-x"),
		lnode("node-y", "zone", "zone2", "node", "node-y"),
	}
}

// spread places, on each node named, that many pods with labels in namespace default:
// spread(labels, "node-a", 2, "node-b", 1, ...); options (func(*corev1.Pod)) apply to all.
func spread(labels []string, counts ...any) map[string][]*corev1.Pod {
	var opts []func(*corev1.Pod)
	for _, c := range counts {
		if o, ok := c.(func(*corev1.Pod)); ok {
			opts = append(opts, o)
		}
	}
	out := map[string][]*corev1.Pod{}
	for i := 0; i+1 < len(counts); i += 2 {
		n, ok := counts[i].(string)
		if !ok {
			continue
		}
		for j := range counts[i+1].(int) {
			out[n] = append(out[n], lpod("default", fmt.Sprintf("p-%s-%d", n, j), labels, opts...))
		}
	}
	return out
}

func merge(ms ...map[string][]*corev1.Pod) map[string][]*corev1.Pod {
	out := map[string][]*corev1.Pod{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = append(out[k], v...)
		}
	}
	return out
}

func withNodeSelector(k, v string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{k: v} }
}

// kube-scheduler's PodTopologySpread filter tests (podtopologyspread/filtering_test.go,
// TestSingleConstraint and TestMultipleConstraints), with Place's whole filter chain: where
// upstream's unit test notes "in real case" (the node affinity or taint filter would reject the
// node), the real case is expected.
func TestSpreadFilter(t *testing.T) {
	untolerated := &placement.Status{Code: placement.UnschedulableAndUnresolvable, Reasons: []string{placement.UntoleratedTaint(corev1.Taint{Key: "dedicated"})}}
	abc := []*corev1.Node{lnode("node-a", "node", "node-a"), lnode("node-b", "node", "node-b"), lnode("node-c", "node", "node-c")}
	fooed := func(names ...string) []*corev1.Node {
		out := make([]*corev1.Node, len(names))
		for i, n := range names {
			out[i] = lnode(n, "node", n, "foo", "")
		}
		return out
	}
	tainted := func(n *corev1.Node) *corev1.Node {
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Effect: corev1.TaintEffectNoSchedule}}
		return n
	}
	tests := []struct {
		name   string
		pod    *corev1.Pod
		nodes  []*corev1.Node
		placed map[string][]*corev1.Pod
		want   []*placement.Status
	}{
		{
			name:  "no existing pods",
			pod:   lpod("default", "p", foo, spreading(1, "zone", dns, fooSelector)),
			nodes: abxy(), want: []*placement.Status{fits, fits, fits, fits},
		},
		{
			name:  "no existing pods, the pod does not match itself",
			pod:   lpod("default", "p", foo, spreading(1, "zone", dns, barSelector)),
			nodes: abxy(), want: []*placement.Status{fits, fits, fits, fits},
		},
		{
			name:  "pods of other namespaces do not count",
			pod:   lpod("default", "p", foo, spreading(1, "zone", dns, fooSelector)),
			nodes: abxy(),
			placed: merge(on("node-a", lpod("ns1", "p-a1", foo), lpod("ns2", "p-b1", foo)),
				spread(foo, "node-x", 1, "node-y", 1)),
			want: []*placement.Status{fits, fits, skewed, skewed},
		},
		{
			name:   "a null selector matches nothing",
			pod:    lpod("default", "p", foo, spreading(1, "zone", dns, nil)),
			nodes:  abxy(),
			placed: spread(foo, "node-x", 1, "node-y", 1),
			want:   []*placement.Status{fits, fits, fits, fits},
		},
		{
			name:   "zones 3/3: every node fits",
			pod:    lpod("default", "p", foo, spreading(1, "zone", dns, fooSelector)),
			nodes:  abxy(),
			placed: spread(foo, "node-a", 2, "node-b", 1, "node-y", 3),
			want:   []*placement.Status{fits, fits, fits, fits},
		},
		{
			name: "zones 1/2 since node-b lacks the zone label",
			pod:  lpod("default", "p", foo, spreading(1, "zone", dns, fooSelector)),
			nodes: []*corev1.Node{
				lnode("node-a", "zone", "zone1", "node", "node-a"), lnode("node-b", "zon", "zone1", "node", "node-b"),
				lnode("node-x", "zone", "zone2", "node", "node-x"), lnode("node-y", "zone", "zone2", "node", "node-y"),
			},
			placed: spread(foo, "node-a", 1, "node-b", 1, "node-x", 1, "node-y", 1),
			want:   []*placement.Status{fits, missingLabel, skewed, skewed},
		},
		{
			name:  "no node has the key",
			pod:   lpod("default", "p", foo, spreading(1, "rack", dns, fooSelector)),
			nodes: abxy()[:3],
			want:  []*placement.Status{missingLabel, missingLabel, missingLabel},
		},
		{
			name:   "nodes 2/1/0/3: only node-x",
			pod:    lpod("default", "p", foo, spreading(1, "node", dns, fooSelector)),
			nodes:  abxy(),
			placed: spread(foo, "node-a", 2, "node-b", 1, "node-y", 3),
			want:   []*placement.Status{skewed, skewed, fits, skewed},
		},
		{
			name:   "nodes 2/1/0/3, maxSkew 2: node-b and node-x",
			pod:    lpod("default", "p", foo, spreading(2, "node", dns, fooSelector)),
			nodes:  abxy(),
			placed: spread(foo, "node-a", 2, "node-b", 1, "node-y", 3),
			want:   []*placement.Status{skewed, fits, fits, skewed},
		},
		{
			name:   "nodes 2/1/0/3, the pod does not match itself",
			pod:    lpod("default", "p", kv("bar", ""), spreading(1, "node", dns, fooSelector)),
			nodes:  abxy(),
			placed: spread(foo, "node-a", 2, "node-b", 1, "node-y", 3),
			want:   []*placement.Status{skewed, fits, fits, skewed},
		},
		{
			name: "node affinity leaves out node-b and node-x: 2/~1~/~0~/3",
			pod: lpod("default", "p", foo, spreading(1, "node", dns, fooSelector), func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "node", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-a", "node-y"}}}}}}}}
			}),
			nodes:  abxy(),
			placed: spread(foo, "node-a", 2, "node-b", 1, "node-y", 3),
			want:   []*placement.Status{fits, nodeAffinity, nodeAffinity, skewed},
		},
		{
			name:   "pods being deleted do not count",
			pod:    lpod("default", "p", foo, spreading(1, "node", dns, fooSelector)),
			nodes:  []*corev1.Node{lnode("node-a", "node", "node-a"), lnode("node-b", "node", "node-b")},
			placed: on("node-a", lpod("default", "p-a", foo, terminating), "node-b", lpod("default", "p-b", foo)),
			want:   []*placement.Status{fits, skewed},
		},
		{
			name:   "nodes 2/2/1, maxSkew 2, fewer domains than minDomains: the global minimum is 0",
			pod:    lpod("default", "p", foo, spreading(2, "node", dns, fooSelector, minDomains(4))),
			nodes:  abc,
			placed: spread(foo, "node-a", 2, "node-b", 2, "node-c", 1),
			want:   []*placement.Status{skewed, skewed, fits},
		},
		{
			name:   "nodes 2/2/1, maxSkew 2, more domains than minDomains",
			pod:    lpod("default", "p", foo, spreading(2, "node", dns, fooSelector, minDomains(2))),
			nodes:  abc,
			placed: spread(foo, "node-a", 2, "node-b", 2, "node-c", 1),
			want:   []*placement.Status{fits, fits, fits},
		},
		{
			name:   "zones 2/1, maxSkew 2, fewer domains than minDomains",
			pod:    lpod("default", "p", foo, spreading(2, "zone", dns, fooSelector, minDomains(3))),
			nodes:  abxy(),
			placed: spread(foo, "node-a", 1, "node-b", 1, "node-y", 1),
			want:   []*placement.Status{skewed, skewed, fits, fits},
		},
		{
			name:   "nodeAffinityPolicy Honor (the default) leaves out the node the pod may not go to",
			pod:    lpod("default", "p", foo, withNodeSelector("foo", ""), spreading(1, "node", dns, fooSelector)),
			nodes:  append(fooed("node-a", "node-b", "node-x"), lnode("node-y", "node", "node-y")),
			placed: spread(foo, "node-a", 1, "node-b", 1, "node-y", 1),
			want:   []*placement.Status{skewed, skewed, fits, nodeAffinity},
		},
		{
			name:   "nodeAffinityPolicy Ignore counts it",
			pod:    lpod("default", "p", foo, withNodeSelector("foo", ""), spreading(1, "node", dns, fooSelector, affinityPolicy(corev1.NodeInclusionPolicyIgnore))),
			nodes:  append(fooed("node-a", "node-b", "node-x"), lnode("node-y", "node", "node-y")),
			placed: spread(foo, "node-a", 1, "node-b", 1, "node-y", 1),
			want:   []*placement.Status{skewed, skewed, fits, nodeAffinity},
		},
		{
			name:   "nodeTaintsPolicy Honor leaves out the node whose taint the pod does not tolerate",
			pod:    lpod("default", "p", foo, spreading(1, "node", dns, fooSelector, taintsPolicy(corev1.NodeInclusionPolicyHonor))),
			nodes:  append(fooed("node-a", "node-b", "node-x"), tainted(lnode("node-y", "node", "node-y"))),
			placed: spread(foo, "node-a", 1, "node-b", 1, "node-y", 1),
			want:   []*placement.Status{skewed, skewed, fits, untolerated},
		},
		{
			name:   "two constraints on zone and node, [3/3, 2/1/0/3]: node-x",
			pod:    lpod("default", "p", foo, spreading(1, "zone", dns, fooSelector), spreading(1, "node", dns, fooSelector)),
			nodes:  abxy(),
			placed: spread(foo, "node-a", 2, "node-b", 1, "node-y", 3),
			want:   []*placement.Status{skewed, skewed, fits, skewed},
		},
		{
			name:   "two constraints on zone and node, [3/4, 2/1/0/4]: nowhere",
			pod:    lpod("default", "p", foo, spreading(1, "zone", dns, fooSelector), spreading(1, "node", dns, fooSelector)),
			nodes:  abxy(),
			placed: spread(foo, "node-a", 2, "node-b", 1, "node-y", 4),
			want:   []*placement.Status{skewed, skewed, skewed, skewed},
		},
		{
			name:   "different selectors, [1/0, 1/0/0/1]: node-x",
			pod:    lpod("default", "p", kv("foo", "", "bar", ""), spreading(1, "zone", dns, fooSelector), spreading(1, "node", dns, barSelector)),
			nodes:  abxy(),
			placed: merge(spread(foo, "node-a", 1), spread(kv("bar", ""), "node-y", 1)),
			want:   []*placement.Status{skewed, skewed, fits, skewed},
		},
		{
			name:  "different selectors, [2/3, 1/0/0/1]: node-b",
			pod:   lpod("default", "p", kv("foo", "", "bar", ""), spreading(1, "zone", dns, fooSelector), spreading(1, "node", dns, barSelector)),
			nodes: abxy(),
			placed: on("node-a", lpod("default", "p-a1", foo), lpod("default", "p-a2", kv("foo", "", "bar", "")),
				"node-y", lpod("default", "p-y1", foo), lpod("default", "p-y2", kv("foo", "", "bar", "")), lpod("default", "p-y3", foo)),
			want: []*placement.Status{skewed, fits, skewed, skewed},
		},
		{
			name:  "the zone constraint does not select the pod: only the node one binds",
			pod:   lpod("default", "p", kv("bar", ""), spreading(1, "zone", dns, fooSelector), spreading(1, "node", dns, barSelector)),
			nodes: abxy(),
			placed: on("node-a", lpod("default", "p-a1", foo),
				"node-x", lpod("default", "p-x1", kv("bar", "")), "node-y", lpod("default", "p-y1", kv("bar", ""))),
			want: []*placement.Status{fits, fits, skewed, skewed},
		},
		{
			name: "two constraints, node-x without the node label",
			pod:  lpod("default", "p", foo, spreading(1, "zone", dns, fooSelector), spreading(1, "node", dns, fooSelector)),
			nodes: []*corev1.Node{
				lnode("node-a", "zone", "zone1", "node", "node-a"), lnode("node-b", "zone", "zone1", "node", "node-b"),
				lnode("node-x", "zone", "zone2"), lnode("node-y", "zone", "zone2", "node", "node-y"),
			},
			placed: spread(foo, "node-a", 1, "node-y", 1),
			want:   []*placement.Status{skewed, fits, missingLabel, skewed},
		},
		{
			name:  "two constraints on zone, [3/3, 2/1]: zone2",
			pod:   lpod("default", "p", kv("foo", "", "bar", ""), spreading(1, "zone", dns, barSelector), spreading(1, "zone", dns, fooSelector)),
			nodes: abxy(),
			placed: on("node-a", lpod("default", "p-a1", kv("foo", "", "bar", "")), lpod("default", "p-a2", foo),
				"node-b", lpod("default", "p-b1", kv("foo", "", "bar", "")),
				"node-y", lpod("default", "p-y1", foo), lpod("default", "p-y2", kv("foo", "", "bar", "")), lpod("default", "p-y3", foo)),
			want: []*placement.Status{skewed, skewed, fits, fits},
		},
		{
			name:   "matchLabelKeys: only the pods of the same revision count",
			pod:    lpod("default", "p", kv("foo", "", "rev", "2"), spreading(1, "node", dns, fooSelector, matchLabelKeys("rev"))),
			nodes:  abxy()[:2],
			placed: merge(spread(kv("foo", "", "rev", "1"), "node-a", 3), spread(kv("foo", "", "rev", "2"), "node-b", 1)),
			want:   []*placement.Status{fits, skewed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkStatuses(t, tt.nodes, tt.placed, nil, tt.pod, tt.want)
		})
	}
}

// kube-scheduler's TestPodTopologySpreadScore (podtopologyspread/scoring_test.go): the
// normalised scores, feasible nodes first, then those that failed a filter.
func TestSpreadScores(t *testing.T) {
	hosts := func(names ...string) []*corev1.Node {
		out := make([]*corev1.Node, len(names))
		for i, n := range names {
			out[i] = lnode(n, corev1.LabelHostname, n)
		}
		return out
	}
	zoned := func(specs ...string) []*corev1.Node { // name, zone, name, zone...
		var out []*corev1.Node
		for i := 0; i+1 < len(specs); i += 2 {
			out = append(out, lnode(specs[i], "zone", specs[i+1], corev1.LabelHostname, specs[i]))
		}
		return out
	}
	fooBar := kv("foo", "", "bar", "")
	bar := kv("bar", "")
	tests := []struct {
		name     string
		pod      *corev1.Pod
		feasible []*corev1.Node
		failed   []*corev1.Node
		placed   map[string][]*corev1.Pod
		want     []int64
	}{
		{
			name:     "one constraint on node, no existing pods",
			pod:      lpod("default", "p", foo, spreading(1, corev1.LabelHostname, anyway, fooSelector)),
			feasible: hosts("node-a", "node-b"), want: []int64{100, 100},
		},
		{
			name:     "one constraint on node, one candidate",
			pod:      lpod("default", "p", foo, spreading(1, corev1.LabelHostname, anyway, fooSelector)),
			feasible: hosts("node-a"), failed: hosts("node-b"),
			placed: spread(foo, "node-a", 2, "node-b", 1), want: []int64{100},
		},
		{
			name:     "one constraint on node, the same count everywhere",
			pod:      lpod("default", "p", foo, spreading(1, corev1.LabelHostname, anyway, fooSelector)),
			feasible: hosts("node-a", "node-b"),
			placed:   spread(foo, "node-a", 1, "node-b", 1), want: []int64{100, 100},
		},
		{
			name:     "one constraint on node, 2/1/0/3",
			pod:      lpod("default", "p", foo, spreading(1, corev1.LabelHostname, anyway, fooSelector)),
			feasible: hosts("node-a", "node-b", "node-c", "node-d"),
			placed:   spread(foo, "node-a", 2, "node-b", 1, "node-d", 3), want: []int64{20, 60, 100, 0},
		},
		{
			name:     "one constraint on node, a null selector",
			pod:      lpod("default", "p", foo, spreading(1, corev1.LabelHostname, anyway, nil)),
			feasible: hosts("node-a", "node-b", "node-c", "node-d"),
			placed:   spread(foo, "node-a", 2, "node-b", 1, "node-d", 3), want: []int64{100, 100, 100, 100},
		},
		{
			name:     "one constraint on node, 2/1/0/3, maxSkew 2",
			pod:      lpod("default", "p", foo, spreading(2, corev1.LabelHostname, anyway, fooSelector)),
			feasible: hosts("node-a", "node-b", "node-c", "node-d"),
			placed:   spread(foo, "node-a", 2, "node-b", 1, "node-d", 3), want: []int64{33, 66, 100, 16},
		},
		{
			name:     "one constraint on node, 4/3/2/1, maxSkew 3",
			pod:      lpod("default", "p", foo, spreading(3, corev1.LabelHostname, anyway, fooSelector)),
			feasible: hosts("node-a", "node-b", "node-c", "node-d"),
			placed:   spread(foo, "node-a", 4, "node-b", 3, "node-c", 2, "node-d", 1), want: []int64{44, 66, 77, 100},
		},
		{
			// kube-scheduler selects by the pods' Service; logplane by their controller.
			name:     "system defaults, nodes without zones: as hostname with maxSkew 3",
			pod:      lpod("default", "p", foo, ownedBy("rs-1")),
			feasible: hosts("node-a", "node-b", "node-c", "node-d"),
			placed:   spread(foo, "node-a", 4, "node-b", 3, "node-c", 2, "node-d", 1, ownedBy("rs-1")),
			want:     []int64{44, 66, 77, 100},
		},
		{
			name:     "one constraint on node, 4/2/1/~3~",
			pod:      lpod("default", "p", foo, spreading(1, corev1.LabelHostname, anyway, fooSelector)),
			feasible: hosts("node-a", "node-b", "node-x"), failed: hosts("node-y"),
			placed: spread(foo, "node-a", 4, "node-b", 2, "node-x", 1, "node-y", 3), want: []int64{33, 83, 100},
		},
		{
			name:     "one constraint on node, 4/?2?/1/~3~: node-b lacks the key",
			pod:      lpod("default", "p", foo, spreading(1, corev1.LabelHostname, anyway, fooSelector)),
			feasible: []*corev1.Node{lnode("node-a", corev1.LabelHostname, "node-a"), lnode("node-b", "n", "node-b"), lnode("node-x", corev1.LabelHostname, "node-x")},
			failed:   hosts("node-y"),
			placed:   spread(foo, "node-a", 4, "node-b", 2, "node-x", 1, "node-y", 3), want: []int64{16, 0, 100},
		},
		{
			name:     "one constraint on zone, 4/2/1/~3~",
			pod:      lpod("default", "p", foo, spreading(1, "zone", anyway, fooSelector)),
			feasible: zoned("node-a", "zone1", "node-b", "zone1", "node-x", "zone2"), failed: zoned("node-y", "zone2"),
			placed: spread(foo, "node-a", 4, "node-b", 2, "node-x", 1, "node-y", 3), want: []int64{75, 75, 100},
		},
		{
			name: "two constraints on zone and node, 2/~1~/2/~4~",
			pod: lpod("default", "p", foo, spreading(1, "zone", anyway, fooSelector),
				spreading(1, corev1.LabelHostname, anyway, fooSelector)),
			feasible: zoned("node-a", "zone1", "node-x", "zone2"), failed: zoned("node-b", "zone1", "node-y", "zone2"),
			placed: spread(foo, "node-a", 2, "node-b", 1, "node-x", 2, "node-y", 4), want: []int64{100, 63},
		},
		{
			name: "two constraints on zone with different selectors",
			pod: lpod("default", "p", fooBar, spreading(1, "zone", anyway, fooSelector),
				spreading(1, "zone", anyway, barSelector)),
			feasible: []*corev1.Node{lnode("node-a", "zone", "zone1"), lnode("node-x", "zone", "zone2")},
			failed:   []*corev1.Node{lnode("node-b", "zone", "zone1"), lnode("node-y", "zone", "zone2")},
			placed: on("node-a", lpod("default", "p-a1", fooBar), lpod("default", "p-a2", foo),
				"node-b", lpod("default", "p-b1", fooBar),
				"node-y", lpod("default", "p-y1", foo), lpod("default", "p-y2", fooBar), lpod("default", "p-y3", foo)),
			want: []int64{85, 100},
		},
		{
			name: "zone and node constraints with different selectors",
			pod: lpod("default", "p", fooBar, spreading(1, "zone", anyway, fooSelector),
				spreading(1, corev1.LabelHostname, anyway, barSelector)),
			feasible: zoned("node-a", "zone1", "node-b", "zone1", "node-x", "zone2", "node-y", "zone2"),
			placed: on("node-a", lpod("default", "p-a1", foo), "node-b", lpod("default", "p-b1", fooBar),
				"node-y", lpod("default", "p-y1", foo), lpod("default", "p-y2", bar)),
			want: []int64{60, 20, 100, 60},
		},
		{
			name: "zone and node constraints with different selectors, some nodes without pods",
			pod: lpod("default", "p", fooBar, spreading(1, "zone", anyway, fooSelector),
				spreading(1, corev1.LabelHostname, anyway, barSelector)),
			feasible: zoned("node-a", "zone1", "node-b", "zone1", "node-x", "zone2", "node-y", "zone2"),
			placed: on("node-b", lpod("default", "p-b1", bar), "node-x", lpod("default", "p-x1", foo),
				"node-y", lpod("default", "p-y1", fooBar)),
			want: []int64{100, 60, 40, 0},
		},
		{
			name:     "pods of other namespaces do not count",
			pod:      lpod("default", "p", foo, spreading(1, corev1.LabelHostname, anyway, fooSelector)),
			feasible: hosts("node-a", "node-b"),
			placed: on("node-a", lpod("ns1", "p-a1", foo), lpod("default", "p-a2", foo),
				"node-b", lpod("default", "p-b1", foo), lpod("default", "p-b2", foo)),
			want: []int64{100, 33},
		},
		{
			name:     "pods being deleted do not count",
			pod:      lpod("default", "p", foo, spreading(1, corev1.LabelHostname, anyway, fooSelector)),
			feasible: hosts("node-a", "node-b"),
			placed:   on("node-a", lpod("default", "p-a1", foo, terminating), "node-b", lpod("default", "p-b1", foo)),
			want:     []int64{100, 0},
		},
		{
			name:     "minDomains means nothing to ScheduleAnyway",
			pod:      lpod("default", "p", foo, spreading(2, "node", anyway, fooSelector, minDomains(10))),
			feasible: []*corev1.Node{lnode("node-a", "node", "node-a"), lnode("node-b", "node", "node-b"), lnode("node-c", "node", "node-c")},
			placed:   spread(foo, "node-a", 2, "node-b", 2, "node-c", 1),
			want:     []int64{75, 75, 100},
		},
		{
			// As upstream's unit test, node-c is scored though the node affinity filter
			// would have rejected it.
			name:     "nodeAffinityPolicy Honor: the pods of a node the pod may not go to do not count",
			pod:      lpod("default", "p", foo, withNodeSelector("foo", ""), spreading(1, "node", anyway, fooSelector)),
			feasible: []*corev1.Node{lnode("node-a", "node", "node-a", "foo", ""), lnode("node-b", "node", "node-b", "foo", ""), lnode("node-c", "node", "node-c")},
			placed:   spread(foo, "node-a", 2, "node-b", 1, "node-c", 1),
			want:     []int64{0, 33, 100},
		},
		{
			name: "matchLabelKeys ANDed with an empty selector",
			pod: lpod("default", "p", fooBar,
				spreading(1, "zone", anyway, &metav1.LabelSelector{}, matchLabelKeys("foo")),
				spreading(1, corev1.LabelHostname, anyway, &metav1.LabelSelector{}, matchLabelKeys("bar"))),
			feasible: zoned("node-a", "zone1", "node-b", "zone1", "node-c", "zone2", "node-d", "zone2"),
			placed: on("node-a", lpod("default", "p-a1", foo), "node-b", lpod("default", "p-b1", fooBar),
				"node-c", lpod("default", "p-c1", foo), lpod("default", "p-c2", bar)),
			want: []int64{60, 20, 60, 100},
		},
		{
			name:     "a pod with only DoNotSchedule constraints is not scored by the defaults",
			pod:      lpod("default", "p", foo, ownedBy("rs-1"), spreading(1, "zone", dns, fooSelector)),
			feasible: hosts("node-a", "node-b"),
			placed:   spread(foo, "node-a", 2),
		},
		{
			name:     "a pod without a group is not scored by the defaults",
			pod:      lpod("default", "p", nil),
			feasible: hosts("node-a", "node-b"),
			placed:   spread(foo, "node-a", 2),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := append(append([]*corev1.Node{}, tt.feasible...), tt.failed...)
			all := nodesOf(ns, tt.placed)
			got := placement.SpreadScores(all[:len(tt.feasible)], all, placement.NewPod(tt.pod))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("scores %v, want %v", got, tt.want)
			}
		})
	}
}

// kube-scheduler's system default spreading by zone (maxSkew 5) beside hostname (maxSkew 3):
// with zones labelled, a pod of a group goes to the zone with fewer of its siblings even when a
// node of the crowded zone holds fewer.
func TestDefaultSpreadByZone(t *testing.T) {
	ns := []*corev1.Node{
		lnode("a-1", corev1.LabelHostname, "a-1", corev1.LabelTopologyZone, "a"),
		lnode("a-2", corev1.LabelHostname, "a-2", corev1.LabelTopologyZone, "a"),
		lnode("b-1", corev1.LabelHostname, "b-1", corev1.LabelTopologyZone, "b"),
	}
	web := func(name string) *corev1.Pod { return lpod("default", name, kv("app", "web"), ownedBy("rs-web")) }
	placed := on("a-1", web("w-1"), web("w-2"), web("w-3"), web("w-4"), web("w-5"), web("w-6"), "a-2", web("w-7"), "b-1", web("w-8"), web("w-9"))
	all := nodesOf(ns, placed)
	got := placement.SpreadScores(all, all, placement.NewPod(web("new")))
	// Each node scores round(count on it × ln 5 + 2 + count in its zone × ln 4 + 4): 25, 17
	// and 12; normalised 100 × (25 + 12 − score) / 25.
	if want := []int64{48, 80, 100}; !reflect.DeepEqual(got, want) {
		t.Fatalf("scores %v, want %v", got, want)
	}
	if d := placement.Place(all, nil, placement.NewPod(web("new"))); d.Node != "b-1" {
		t.Fatalf("placed on %s, want b-1 (the emptier zone)", d.Node)
	}
}

// What a user sees of DoNotSchedule spreading: the message, and a Deployment's pods spread
// over zones.
func TestPlaceSpread(t *testing.T) {
	zoneSpread := spreading(1, corev1.LabelTopologyZone, dns, sel("app", in, "web"))
	web := func(name string) *corev1.Pod {
		return lpod("default", name, kv("app", "web"), zoneSpread, ownedBy("rs-web"))
	}
	zones := []*corev1.Node{
		node("node-1", "4", "4Gi", 110, withLabel(corev1.LabelTopologyZone, "a")),
		node("node-2", "4", "4Gi", 110, withLabel(corev1.LabelTopologyZone, "a")),
		node("node-3", "4", "4Gi", 110, withLabel(corev1.LabelTopologyZone, "b")),
	}
	t.Run("skew", func(t *testing.T) {
		// Zone b is cordoned; zone a holds one more than b already.
		ns := []*corev1.Node{zones[0], zones[1], node("node-3", "4", "4Gi", 110, withLabel(corev1.LabelTopologyZone, "b"), cordoned)}
		d := placement.Place(nodesOf(ns, on("node-1", web("w-1"))), nil, placement.NewPod(web("w-2")))
		want := "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match pod topology spread constraints. " +
			"preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
		if d.Err == nil || d.Err.Error() != want {
			t.Fatalf("got %v (node %q)\nwant %q", d.Err, d.Node, want)
		}
	})
	t.Run("missing label", func(t *testing.T) {
		ns := []*corev1.Node{node("node-1", "4", "4Gi", 110)}
		d := placement.Place(nodesOf(ns, nil), nil, placement.NewPod(web("w-1")))
		want := "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label). " +
			"preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
		if d.Err == nil || d.Err.Error() != want {
			t.Fatalf("got %v (node %q)\nwant %q", d.Err, d.Node, want)
		}
	})
	t.Run("plan", func(t *testing.T) {
		var pods []*placement.Pod
		for i := range 9 {
			pods = append(pods, placement.NewPod(web(fmt.Sprintf("w-%d", i))))
		}
		per := map[string]int{}
		for _, d := range placement.Plan(nodesOf(zones, nil), nil, pods) {
			if d.Err != nil {
				t.Fatal(d.Err)
			}
			per[d.Node]++
		}
		if a, b := per["node-1"]+per["node-2"], per["node-3"]; a-b > 1 || b-a > 1 {
			t.Fatalf("zones a and b hold %d and %d (%v), want a skew of at most 1", a, b, per)
		}
	})
}
