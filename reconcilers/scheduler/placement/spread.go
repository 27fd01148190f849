package placement

import (
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Topology spreading, as kube-scheduler's PodTopologySpread plugin does it
// (pkg/scheduler/framework/plugins/podtopologyspread): a pod's DoNotSchedule constraints
// filter, its ScheduleAnyway constraints score, and a pod without constraints is scored by the
// system default ones (by hostname with maxSkew 3, by zone with maxSkew 5).

// The reasons of PodTopologySpread, as kube-scheduler words them.
const (
	ReasonSpread             = "node(s) didn't match pod topology spread constraints"
	ReasonSpreadMissingLabel = ReasonSpread + " (missing required label)"
)

// spreadConstraint is a topology spread constraint ready to count pods.
type spreadConstraint struct {
	maxSkew    int32
	key        string
	selector   labels.Selector
	minDomains int32
	// Whether nodes the pod's node affinity (or nodeSelector) excludes, or whose taints it does
	// not tolerate, are left out of the count (nodeAffinityPolicy, nodeTaintsPolicy: Honor).
	honorAffinity, honorTaints bool
}

// podSpread is a pod's topology spread constraints, by whenUnsatisfiable.
type podSpread struct {
	hard, soft []spreadConstraint // DoNotSchedule, ScheduleAnyway
}

// newPodSpread reads p's topologySpreadConstraints; nil when it has none. matchLabelKeys add
// "key = value" for each key the pod has to a selector that is not null, as kube-scheduler does.
func newPodSpread(p *corev1.Pod) (*podSpread, error) {
	if len(p.Spec.TopologySpreadConstraints) == 0 {
		return nil, nil
	}
	out := &podSpread{}
	for _, c := range p.Spec.TopologySpreadConstraints {
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("topology spread constraint %s: %w", c.TopologyKey, err)
		}
		if c.LabelSelector != nil && len(c.MatchLabelKeys) > 0 {
			set := labels.Set{}
			for _, k := range c.MatchLabelKeys {
				if v, ok := p.Labels[k]; ok {
					set[k] = v
				}
			}
			if reqs, ok := sel.Requirements(); ok && len(set) > 0 {
				merged := labels.SelectorFromSet(set)
				sel = merged.Add(reqs...)
			}
		}
		sc := spreadConstraint{
			maxSkew: c.MaxSkew, key: c.TopologyKey, selector: sel, minDomains: 1,
			honorAffinity: c.NodeAffinityPolicy == nil || *c.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor,
			honorTaints:   c.NodeTaintsPolicy != nil && *c.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor,
		}
		if c.MinDomains != nil {
			sc.minDomains = *c.MinDomains
		}
		switch c.WhenUnsatisfiable {
		case corev1.DoNotSchedule:
			out.hard = append(out.hard, sc)
		case corev1.ScheduleAnyway:
			out.soft = append(out.soft, sc)
		}
	}
	return out, nil
}

// includes reports whether node nd counts for c when placing p (the node inclusion policies).
func (c *spreadConstraint) includes(nd *Node, p *Pod) bool {
	if c.honorAffinity {
		if ok, _ := p.required.Match(nd.Node); !ok { // an invalid term matches nothing; validation keeps them out
			return false
		}
	}
	if c.honorTaints {
		for i := range nd.noSchedule {
			if !tolerates(p.Pod.Spec.Tolerations, &nd.noSchedule[i]) {
				return false
			}
		}
	}
	return true
}

// hasKeys reports whether a node has every topology key of cs.
func hasKeys(n *corev1.Node, cs []spreadConstraint) bool {
	for i := range cs {
		if _, ok := n.Labels[cs[i].key]; !ok {
			return false
		}
	}
	return true
}

// countMatching counts the pods on nd in namespace ns that sel selects, leaving out those
// being deleted. An empty selector counts nothing, as in kube-scheduler.
func countMatching(nd *Node, sel labels.Selector, ns string) int {
	if sel.Empty() {
		return 0
	}
	n := 0
	for _, s := range nd.sets {
		if s.live > 0 && s.namespace == ns && sel.Matches(s.labels) {
			n += s.live
		}
	}
	return n
}

// spreadState is what PodTopologySpread's PreFilter works out once per pod, over every node:
// for each DoNotSchedule constraint, the pods it selects in each topology domain, counted on
// the nodes that have every constraint's key and that the inclusion policies keep, and the
// smallest of those counts.
type spreadState struct {
	constraints []spreadConstraint
	counts      []map[string]int
	min         []int
}

// newSpreadState returns the state for placing p on nodes; nil when p has no DoNotSchedule
// constraint.
func newSpreadState(nodes []*Node, p *Pod) *spreadState {
	if p.spread == nil || len(p.spread.hard) == 0 {
		return nil
	}
	cs := p.spread.hard
	s := &spreadState{constraints: cs, counts: make([]map[string]int, len(cs)), min: make([]int, len(cs))}
	for i := range cs {
		size := 0
		if cs[i].key == corev1.LabelHostname {
			size = len(nodes)
		}
		s.counts[i] = make(map[string]int, size)
	}
	for _, nd := range nodes {
		if nd.Node == nil || !hasKeys(nd.Node, cs) {
			continue
		}
		for i := range cs {
			if !cs[i].includes(nd, p) {
				continue
			}
			s.counts[i][nd.Node.Labels[cs[i].key]] += countMatching(nd, cs[i].selector, p.Pod.Namespace)
		}
	}
	for i := range cs {
		s.setMin(i)
	}
	return s
}

func (s *spreadState) setMin(i int) {
	m := math.MaxInt32
	for _, n := range s.counts[i] {
		m = min(m, n)
	}
	s.min[i] = m
}

// update counts q, placed on nd, once more (d = 1) or once less (d = -1), as kube-scheduler's
// AddPod and RemovePod do for preemption.
func (s *spreadState) update(nd *Node, p, q *Pod, d int) {
	if q.Pod.Namespace != p.Pod.Namespace || q.Pod.DeletionTimestamp != nil || nd.Node == nil || !hasKeys(nd.Node, s.constraints) {
		return
	}
	for i := range s.constraints {
		c := &s.constraints[i]
		if c.selector.Empty() || !c.selector.Matches(labels.Set(q.Pod.Labels)) || !c.includes(nd, p) {
			continue
		}
		s.counts[i][nd.Node.Labels[c.key]] += d
		s.setMin(i)
	}
}

// filter returns why p may not go to nd for its DoNotSchedule constraints, or nil: the node
// lacks a topology key, or placing p there would make a domain's count exceed the smallest by
// more than maxSkew (the smallest is 0 while there are fewer domains than minDomains).
func (s *spreadState) filter(nd *Node, p *Pod) *Status {
	podLabels := labels.Set(p.Pod.Labels)
	for i := range s.constraints {
		c := &s.constraints[i]
		v, ok := nd.Node.Labels[c.key]
		if !ok {
			return &Status{UnschedulableAndUnresolvable, []string{ReasonSpreadMissingLabel}}
		}
		least := s.min[i]
		if len(s.counts[i]) < int(c.minDomains) {
			least = 0
		}
		self := 0
		if c.selector.Matches(podLabels) {
			self = 1
		}
		if s.counts[i][v]+self-least > int(c.maxSkew) {
			return &Status{Unschedulable, []string{ReasonSpread}}
		}
	}
	return nil
}

// spreadScores writes into out, for each of the feasible nodes, PodTopologySpread's normalised
// score (0-100, fewer matching pods in the node's domains scoring higher), for the pod's
// ScheduleAnyway constraints, or for the system default ones when it has no constraint at all
// (defaultSpreadScores). It reports false when there is nothing to score by.
func spreadScores(feasible, all []*Node, p *Pod, out []int64) bool {
	if p.spread == nil {
		return defaultSpreadScores(feasible, all, p, out)
	}
	cs := p.spread.soft
	if len(cs) == 0 {
		return false
	}
	count := func(nd *Node, c *spreadConstraint) int { return countMatching(nd, c.selector, p.Pod.Namespace) }
	// The domains of the feasible nodes (kube-scheduler's PreScore), counted below over every
	// node; per-node counts (the hostname key) are taken when scoring.
	ignored := make([]bool, len(feasible))
	nIgnored := 0
	for i, nd := range feasible {
		if !hasKeys(nd.Node, cs) {
			ignored[i] = true
			nIgnored++
		}
	}
	domains := make([]map[string]int64, len(cs))
	weights := make([]float64, len(cs))
	anyDomain := false
	for j := range cs {
		key := cs[j].key
		if key == corev1.LabelHostname {
			weights[j] = math.Log(float64(len(feasible) - nIgnored + 2))
			continue
		}
		if nIgnored == len(feasible) {
			continue // no node scores
		}
		domains[j] = map[string]int64{}
		for i, nd := range feasible {
			if !ignored[i] {
				domains[j][nd.Node.Labels[key]] = 0
			}
		}
		weights[j] = math.Log(float64(len(domains[j]) + 2))
		anyDomain = true
	}
	for _, nd := range all {
		if !anyDomain {
			break
		}
		if nd.Node == nil || !hasKeys(nd.Node, cs) {
			continue
		}
		for j := range cs {
			c := &cs[j]
			if domains[j] == nil {
				continue
			}
			v := nd.Node.Labels[c.key]
			cur, ok := domains[j][v]
			if !ok || !c.includes(nd, p) {
				continue
			}
			domains[j][v] = cur + int64(count(nd, c))
		}
	}
	minS, maxS := int64(math.MaxInt64), int64(0)
	for i, nd := range feasible {
		if ignored[i] {
			continue
		}
		var s float64
		for j := range cs {
			c := &cs[j]
			v, ok := nd.Node.Labels[c.key]
			if !ok {
				continue
			}
			var n int64
			if c.key == corev1.LabelHostname {
				n = int64(count(nd, c))
			} else {
				n = domains[j][v]
			}
			s += float64(n)*weights[j] + float64(c.maxSkew-1)
		}
		out[i] = int64(math.Round(s))
		minS, maxS = min(minS, out[i]), max(maxS, out[i])
	}
	for i := range feasible {
		switch {
		case ignored[i]:
			out[i] = 0
		case maxS == 0:
			out[i] = maxScore
		default:
			out[i] = maxScore * (maxS + minS - out[i]) / maxS
		}
	}
	return true
}

// The system default constraints kube-scheduler scores a pod by when it has none of its own
// (PodTopologySpread's system defaulting): ScheduleAnyway, by hostname with maxSkew 3 and by
// zone with maxSkew 5.
const (
	defaultHostnameSkew = 3
	defaultZoneSkew     = 5
)

// defaultSpreadScores is spreadScores for the system default constraints. They select the
// pods of the same spreading group (Pod.Group), where kube-scheduler selects with the
// selectors of the pod's controller and services. A node without a zone is still scored by
// its hostname; the nodes without a zone make one domain (the empty value) that none is
// scored by. It is what every pod without constraints pays, so it reads the keys the Node
// keeps rather than its labels.
func defaultSpreadScores(feasible, all []*Node, p *Pod, out []int64) bool {
	if p.Group == "" {
		return false
	}
	zoned := false
	for _, nd := range feasible {
		if nd.hasZone {
			zoned = true
			break
		}
	}
	hostWeight := math.Log(float64(len(feasible) + 2))
	minS, maxS := int64(math.MaxInt64), int64(0)
	if !zoned { // the common case, in one pass
		for i, nd := range feasible {
			out[i] = 0
			if nd.hasHostname {
				out[i] = round(float64(nd.groups[p.Group])*hostWeight + defaultHostnameSkew - 1)
			}
			minS, maxS = min(minS, out[i]), max(maxS, out[i])
		}
		normalizeSpread(out, minS, maxS)
		return true
	}
	for i, nd := range feasible {
		out[i] = int64(nd.groups[p.Group]) // the node's count, scored below
	}
	// The zones of the feasible nodes; the pods of the group in each, on every node the pod's
	// node affinity allows (nodeAffinityPolicy: Honor).
	var zones zoneCounts
	zoneOf := make([]int, len(feasible))
	for i, nd := range feasible {
		zoneOf[i] = zones.index(nd, true)
	}
	for _, nd := range all {
		if nd.Node == nil {
			continue
		}
		z := zones.index(nd, false)
		if z < 0 {
			continue
		}
		if ok, _ := p.required.Match(nd.Node); !ok {
			continue
		}
		zones.counts[z] += int64(nd.groups[p.Group])
	}
	zoneWeight := math.Log(float64(len(zones.names) + 2))
	for i, nd := range feasible {
		var s float64
		if nd.hasHostname {
			s += float64(out[i])*hostWeight + defaultHostnameSkew - 1
		}
		if nd.hasZone {
			s += float64(zones.counts[zoneOf[i]])*zoneWeight + defaultZoneSkew - 1
		}
		out[i] = round(s)
		minS, maxS = min(minS, out[i]), max(maxS, out[i])
	}
	normalizeSpread(out, minS, maxS)
	return true
}

// normalizeSpread turns raw spreading scores, the least minS and the greatest maxS, into
// 0-100, fewer pods scoring higher, as kube-scheduler's PodTopologySpread normalises them.
func normalizeSpread(out []int64, minS, maxS int64) {
	for i := range out {
		if maxS == minS { // every node the same: maxScore, without dividing
			out[i] = maxScore
		} else {
			out[i] = maxScore * (maxS + minS - out[i]) / maxS
		}
	}
}

// zoneCounts counts pods by zone, in a short list (clusters have few zones); the nodes without
// a zone are the empty one.
type zoneCounts struct {
	names  []string
	hashes []uint64
	counts []int64
}

// index returns the index of nd's zone, adding it if add is set, or -1.
func (z *zoneCounts) index(nd *Node, add bool) int {
	for i, h := range z.hashes {
		if h == nd.zoneHash && z.names[i] == nd.zone {
			return i
		}
	}
	if !add {
		return -1
	}
	z.names, z.hashes, z.counts = append(z.names, nd.zone), append(z.hashes, nd.zoneHash), append(z.counts, 0)
	return len(z.names) - 1
}

// round is math.Round for the scores, which are never negative.
func round(s float64) int64 { return int64(s + 0.5) }
