package placement

import (
	"fmt"
	"sort"
	"strings"
)

// Statuses returns why p does not fit on each of nodes, nil where it fits: every filter Place
// runs, over the cluster nodes is.
func Statuses(nodes []*Node, ns Namespaces, p *Pod) map[string]*Status {
	c := newCycle(nodes, ns, p)
	out := make(map[string]*Status, len(nodes))
	for _, nd := range nodes {
		out[nd.Name] = c.filter(nd)
	}
	return out
}

// SpreadScores returns PodTopologySpread's normalised scores of the feasible nodes among all,
// or nil when it does not score.
func SpreadScores(feasible, all []*Node, p *Pod) []int64 {
	out := make([]int64, len(feasible))
	if !spreadScores(feasible, all, p, out) {
		return nil
	}
	return out
}

// InterPodScores returns InterPodAffinity's normalised scores of the feasible nodes among all,
// or nil when it does not score.
func InterPodScores(feasible, all []*Node, ns Namespaces, p *Pod) []int64 {
	c := newCycle(all, ns, p)
	out := make([]int64, len(feasible))
	if !interPodScores(feasible, all, p, ns, c.anyAffinity, out) {
		return nil
	}
	return out
}

// Summary describes what the node counts of its pods, canonically: two nodes holding the same
// pods have the same summary.
func (nd *Node) Summary() string {
	var parts []string
	for k, s := range nd.sets {
		parts = append(parts, fmt.Sprintf("set %q %s %v %d/%d", k, s.namespace, s.labels, s.live, s.pods))
	}
	for g, n := range nd.groups {
		parts = append(parts, fmt.Sprintf("group %s %d", g, n))
	}
	for _, p := range nd.affinityPods {
		parts = append(parts, "affinity "+p.Key)
	}
	parts = append(parts, fmt.Sprintf("anti %d, pods %d, requested %+v", nd.nAnti, len(nd.pods), nd.Requested))
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}
