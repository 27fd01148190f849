// Package placement decides where pods go: which nodes can take a pod (filters), which of those
// is best (scores), and, when none can, the FailedScheduling message as Kubernetes' scheduler
// words it. It is pure: no log, no clock, no I/O; the scheduler reconciler feeds it the nodes
// with what is placed on them and the namespaces' labels, and binds what it decides.
//
// The filters and their order are those of kube-scheduler's default profile (NodeUnschedulable,
// NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, PodTopologySpread,
// InterPodAffinity), using the same helpers (k8s.io/component-helpers); the scores are
// TaintToleration's PreferNoSchedule count, preferred node affinity, topology spreading (the
// pod's ScheduleAnyway constraints, or kube-scheduler's default ones by hostname and zone),
// preferred inter-pod affinity, and least allocated, weighted and normalised as kube-scheduler
// does. Ties break on a hash of the pod and node names, which is deterministic yet spreads
// pods that tie over the tied nodes. Preemption is not done: the message says what
// kube-scheduler's preemption would have found when it finds no victims.
package placement

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Decision is where one pod goes.
type Decision struct {
	// Node is the name of the chosen node; empty when no node fits.
	Node string
	// Err says why no node fits, when none does.
	Err *FitError
}

// Weights of the scores, as in kube-scheduler's default profile.
const (
	weightTaint    = 3 // TaintToleration
	weightAffinity = 2 // NodeAffinity
	weightSpread   = 2 // PodTopologySpread (the pod's ScheduleAnyway constraints, or the defaults)
	weightInterPod = 2 // InterPodAffinity
	weightLeast    = 1 // NodeResourcesFit, LeastAllocated
	maxScore       = 100
)

// Place chooses the node for pod p among nodes, the namespaces' labels given by ns (for the
// namespaceSelectors of pod affinity terms). It changes nothing: to place the pod, the caller
// adds it to the chosen node (Node.Add).
func Place(nodes []*Node, ns Namespaces, p *Pod) Decision {
	if len(nodes) == 0 {
		return Decision{Err: &FitError{}}
	}
	if p.invalid != nil {
		statuses := make(map[string]*Status, len(nodes))
		for _, nd := range nodes {
			statuses[nd.Name] = &Status{UnschedulableAndUnresolvable, []string{p.invalid.Error()}}
		}
		return Decision{Err: &FitError{NumAllNodes: len(nodes), PreFilterMsg: p.invalid.Error(), Statuses: statuses,
			PostFilter: preemption(p, nil, nodes, statuses)}}
	}
	c := newCycle(nodes, ns, p)
	feasible := make([]*Node, 0, len(nodes))
	var statuses map[string]*Status
	for _, nd := range nodes {
		// c.filter, spelled out: most pods have neither spread nor inter-pod state.
		st := filterNode(nd, p)
		if st == nil && c.spread != nil {
			st = c.spread.filter(nd, p)
		}
		if st == nil && c.interPod != nil {
			st = c.interPod.filter(nd, p)
		}
		if st != nil {
			if statuses == nil {
				statuses = make(map[string]*Status, len(nodes))
			}
			statuses[nd.Name] = st
			continue
		}
		feasible = append(feasible, nd)
	}
	if len(feasible) == 0 {
		return Decision{Err: &FitError{NumAllNodes: len(nodes), Statuses: statuses, PostFilter: preemption(p, &c, nodes, statuses)}}
	}
	if len(feasible) == 1 {
		return Decision{Node: feasible[0].Name}
	}
	return Decision{Node: feasible[c.best(feasible)].Name}
}

// cycle is the placement of one pod: what kube-scheduler's PreFilter plugins work out once
// over every node before filtering each. Most pods need none of it: interPod and spread are
// nil unless the pod has inter-pod affinity or spread constraints, or a placed pod's
// anti-affinity selects it.
type cycle struct {
	p     *Pod
	ns    Namespaces
	nodes []*Node
	// anyAffinity: some node holds pods with inter-pod affinity terms.
	anyAffinity bool
	interPod    *interPodState
	spread      *spreadState
}

func newCycle(nodes []*Node, ns Namespaces, p *Pod) cycle {
	c := cycle{p: p, ns: ns, nodes: nodes}
	anyAnti := false
	for _, nd := range nodes {
		if len(nd.affinityPods) > 0 {
			c.anyAffinity = true
			anyAnti = anyAnti || nd.nAnti > 0
		}
	}
	c.interPod = newInterPodState(nodes, p, ns, anyAnti)
	c.spread = newSpreadState(nodes, p)
	return c
}

// filter returns why the pod does not fit on nd, or nil if it does: the node's own filters
// (filterNode), then PodTopologySpread's, then InterPodAffinity's, kube-scheduler's order.
func (c *cycle) filter(nd *Node) *Status {
	if st := filterNode(nd, c.p); st != nil {
		return st
	}
	if c.spread != nil {
		if st := c.spread.filter(nd, c.p); st != nil {
			return st
		}
	}
	if c.interPod != nil {
		if st := c.interPod.filter(nd, c.p); st != nil {
			return st
		}
	}
	return nil
}

// filterWithout is filter on nd as if the pods victims (placed on nd) were gone.
func (c *cycle) filterWithout(nd *Node, victims []*Pod) *Status {
	without := nd.Clone()
	for _, q := range victims {
		without.Remove(q.Key)
	}
	c.account(nd, victims, -1)
	defer c.account(nd, victims, 1)
	return c.filter(without)
}

// account counts pods, placed on nd, d more times in the cycle's state (d = 1 or -1).
func (c *cycle) account(nd *Node, pods []*Pod, d int) {
	for _, q := range pods {
		if c.spread != nil {
			c.spread.update(nd, c.p, q, d)
		}
		if c.interPod != nil {
			c.interPod.update(nd.Node, c.p, q, c.ns, int64(d))
		}
	}
}

// best returns the index of the feasible node with the highest score.
func (c *cycle) best(feasible []*Node) int {
	p := c.p
	n := len(feasible)
	taints := make([]int64, n)
	affinity := make([]int64, n)
	var maxTaints, maxAffinity int64
	for i, nd := range feasible {
		for j := range nd.preferNoSchedule {
			if !tolerates(p.preferTolerations, &nd.preferNoSchedule[j]) {
				taints[i]++
			}
		}
		maxTaints = max(maxTaints, taints[i])
		if p.preferred != nil {
			affinity[i] = p.preferred.Score(nd.Node)
			maxAffinity = max(maxAffinity, affinity[i])
		}
	}
	spread := make([]int64, n)
	hasSpread := spreadScores(feasible, c.nodes, p, spread)
	var interPod []int64
	if c.anyAffinity || p.affinity != nil {
		interPod = make([]int64, n)
		if !interPodScores(feasible, c.nodes, p, c.ns, c.anyAffinity, interPod) {
			interPod = nil
		}
	}
	bestIdx, bestScore, bestHash := -1, int64(-1), uint64(0)
	podHash := fnv(fnvOffset, p.Key)
	for i, nd := range feasible {
		score := weightLeast * leastAllocated(nd, p)
		if maxTaints > 0 {
			score += weightTaint * (maxScore - maxScore*taints[i]/maxTaints)
		} else {
			score += weightTaint * maxScore
		}
		if maxAffinity > 0 {
			score += weightAffinity * maxScore * affinity[i] / maxAffinity
		}
		if hasSpread {
			score += weightSpread * spread[i]
		}
		if interPod != nil {
			score += weightInterPod * interPod[i]
		}
		h := mix(fnv(fnv(podHash, "\x00"), nd.Name))
		if score > bestScore || (score == bestScore && h < bestHash) {
			bestIdx, bestScore, bestHash = i, score, h
		}
	}
	return bestIdx
}

// leastAllocated scores a node by the share of its cpu and memory left free once p is on it,
// counting containers without requests as kube-scheduler does (100m, 200Mi).
func leastAllocated(nd *Node, p *Pod) int64 {
	free := func(alloc, used int64) int64 {
		if alloc <= 0 || used >= alloc {
			return 0
		}
		return (alloc - used) * maxScore / alloc
	}
	return (free(nd.Allocatable.MilliCPU, nd.nonZeroCPU+p.nonZeroCPU) + free(nd.Allocatable.Memory, nd.nonZeroMem+p.nonZeroMem)) / 2
}

func tolerates(ts []corev1.Toleration, t *corev1.Taint) bool {
	for i := range ts {
		if ts[i].ToleratesTaint(toleratesLog, t, false) {
			return true
		}
	}
	return false
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv continues an FNV-1a hash h with s.
func fnv(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix finishes a hash so that names differing in their last byte land far apart (splitmix64).
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Plan places pods one after the other, each seeing those placed before it, on copies of
// nodes; nodes are left as they were. It is Place for a batch.
func Plan(nodes []*Node, ns Namespaces, pods []*Pod) []Decision {
	cp := make([]*Node, len(nodes))
	byName := make(map[string]*Node, len(nodes))
	for i, nd := range nodes {
		cp[i] = nd.Clone()
		byName[nd.Name] = cp[i]
	}
	out := make([]Decision, len(pods))
	for i, p := range pods {
		out[i] = Place(cp, ns, p)
		if out[i].Node != "" {
			byName[out[i].Node].Add(p)
		}
	}
	return out
}

// FitError says why a pod fits on no node.
type FitError struct {
	// NumAllNodes is how many nodes were considered; 0 means there are none at all.
	NumAllNodes int
	// PreFilterMsg says why the pod fits nowhere before any node was looked at (its
	// constraints cannot be read); the statuses then repeat it and are not counted.
	PreFilterMsg string
	// Statuses says, for each node by name, why the pod does not fit there.
	Statuses map[string]*Status
	// PostFilter is what preemption had to say ("preemption: ...").
	PostFilter string
}

// ErrNoNodes is the message when there is no node at all.
const ErrNoNodes = "no nodes available to schedule pods"

// Error returns the message kube-scheduler writes into the FailedScheduling event and the
// PodScheduled condition: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated
// taint {node.kubernetes.io/unreachable: }. preemption: 0/3 nodes are available: 1 No preemption
// victims found for incoming pod, 2 Preemption is not helpful for scheduling." Reasons are
// counted over nodes, written "<count> <reason>", sorted as strings and joined with ", ".
func (e *FitError) Error() string {
	if e.NumAllNodes == 0 {
		return ErrNoNodes
	}
	counts := map[string]int{}
	for _, st := range e.Statuses {
		for _, r := range st.Reasons {
			counts[r]++
		}
	}
	msg := fmt.Sprintf("0/%d nodes are available:", e.NumAllNodes)
	if e.PreFilterMsg != "" {
		msg += " " + e.PreFilterMsg + "."
	} else if len(counts) > 0 {
		histogram := make([]string, 0, len(counts))
		for r, n := range counts {
			histogram = append(histogram, fmt.Sprintf("%d %s", n, r))
		}
		sort.Strings(histogram)
		msg += " " + strings.Join(histogram, ", ") + "."
	}
	if e.PostFilter != "" {
		msg += " " + e.PostFilter
	}
	return msg
}

// Reasons of kube-scheduler's default preemption, and logplane's own when preemption would
// have helped: logplane does not preempt.
const (
	ReasonPreemptionNotHelpful = "Preemption is not helpful for scheduling"
	ReasonNoVictims            = "No preemption victims found for incoming pod"
	ReasonNotPreempting        = "Preemption of lower-priority pods is not supported"
	preemptionNever            = "preemption: not eligible due to preemptionPolicy=Never."
)

// preemption returns the message kube-scheduler's default preemption gives when it finds no
// candidate: nodes whose failure removing pods cannot fix are "not helpful"; on the others it
// removes every pod of lower priority and filters again, seeing the rest of the cluster as
// cycle c saw it. c may be nil when every status is unresolvable.
func preemption(p *Pod, c *cycle, nodes []*Node, statuses map[string]*Status) string {
	if pp := p.Pod.Spec.PreemptionPolicy; pp != nil && *pp == corev1.PreemptNever {
		return preemptionNever
	}
	inner := &FitError{NumAllNodes: len(nodes), Statuses: make(map[string]*Status, len(nodes))}
	for _, nd := range nodes {
		st := statuses[nd.Name]
		if c == nil || st == nil || st.Code != Unschedulable {
			inner.Statuses[nd.Name] = &Status{UnschedulableAndUnresolvable, []string{ReasonPreemptionNotHelpful}}
			continue
		}
		var victims []*Pod
		for _, q := range nd.pods {
			if q.Priority < p.Priority {
				victims = append(victims, q)
			}
		}
		if len(victims) == 0 {
			inner.Statuses[nd.Name] = &Status{UnschedulableAndUnresolvable, []string{ReasonNoVictims}}
			continue
		}
		if st := c.filterWithout(nd, victims); st != nil {
			inner.Statuses[nd.Name] = st
			continue
		}
		inner.Statuses[nd.Name] = &Status{Unschedulable, []string{ReasonNotPreempting}}
	}
	return "preemption: " + inner.Error()
}
