package placement

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
