package placement

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Node is a node and what is placed on it: the pods bound to it (or assumed to be), what they
// request, the host ports they hold, how many of each spreading group they are (those being
// deleted left out), how many share each namespace and labels (what selectors tell apart), and
// which of them have inter-pod affinity terms. Node is not
// safe for concurrent use; the caller serialises.
type Node struct {
	Name string
	Node *corev1.Node // nil for a node that pods are bound to but that is not (or no longer) known

	// Allocatable is what the node offers to pods (status.allocatable, or status.capacity when
	// allocatable is not reported).
	Allocatable Resources
	AllowedPods int64
	// Requested is the sum of the requests of the pods placed on the node.
	Requested Resources

	nonZeroCPU, nonZeroMem int64
	pods                   map[string]*Pod
	ports                  map[protoPort]map[string]int // → address → pods holding it
	groups                 map[string]int
	sets                   map[string]*podSet // the pods by namespace and labels (podSetKey)
	affinityPods           []*Pod             // the pods with inter-pod (anti-)affinity terms
	nAnti                  int                // how many of them have required anti-affinity terms

	// The values of the labels the default topology spreading counts by, and whether the node
	// has them.
	hostname, zone       string
	hasHostname, hasZone bool
	zoneHash             uint64 // of zone, to tell zones apart quickly

	// noSchedule are the taints that keep pods off (NoSchedule and NoExecute), including those
	// the node lifecycle sets on a node that is not Ready; preferNoSchedule are the soft ones.
	noSchedule, preferNoSchedule []corev1.Taint
}

// NewNode returns the placement view of node n, with no pods on it. n may be nil for a node
// known only by name (pods bound to it before it registered, or after it was deleted): such a
// node keeps their accounting and never fits anything.
func NewNode(name string, n *corev1.Node) *Node {
	nd := &Node{Name: name, pods: map[string]*Pod{}, ports: map[protoPort]map[string]int{}, groups: map[string]int{}, sets: map[string]*podSet{}}
	nd.SetNode(n)
	return nd
}

// SetNode replaces the node object, keeping the pods placed on it.
func (nd *Node) SetNode(n *corev1.Node) {
	nd.Node = n
	nd.Allocatable, nd.AllowedPods = Resources{}, 0
	nd.noSchedule, nd.preferNoSchedule = nil, nil
	nd.hostname, nd.hasHostname, nd.zone, nd.hasZone = "", false, "", false
	nd.zoneHash = fnv(fnvOffset, "")
	if n == nil {
		return
	}
	nd.hostname, nd.hasHostname = n.Labels[corev1.LabelHostname]
	nd.zone, nd.hasZone = n.Labels[corev1.LabelTopologyZone]
	nd.zoneHash = fnv(fnvOffset, nd.zone)
	alloc := n.Status.Allocatable
	if len(alloc) == 0 {
		alloc = n.Status.Capacity
	}
	nd.Allocatable = ResourcesOf(alloc)
	nd.AllowedPods = alloc.Pods().Value()
	for _, t := range n.Spec.Taints {
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute:
			nd.noSchedule = append(nd.noSchedule, t)
		case corev1.TaintEffectPreferNoSchedule:
			nd.preferNoSchedule = append(nd.preferNoSchedule, t)
		}
	}
	if t, ok := readinessTaint(n); ok {
		nd.noSchedule = append(nd.noSchedule, t)
	}
}

// readinessTaint returns the NoSchedule taint the node lifecycle puts on a node that is not
// Ready (node.kubernetes.io/not-ready when Ready is False, node.kubernetes.io/unreachable when it
// is Unknown or missing), when the node carries no such NoSchedule taint already. (Pods tolerate
// the NoExecute ones for 300 s by default, so those alone would not keep new pods off.) Treating a node that is not
// Ready as tainted is what makes it unschedulable, and lets pods that tolerate it (as
// DaemonSet pods do) still go there, as on Kubernetes.
func readinessTaint(n *corev1.Node) (corev1.Taint, bool) {
	status := corev1.ConditionUnknown
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			status = c.Status
		}
	}
	if status == corev1.ConditionTrue {
		return corev1.Taint{}, false
	}
	key := corev1.TaintNodeUnreachable
	if status == corev1.ConditionFalse {
		key = corev1.TaintNodeNotReady
	}
	for _, t := range n.Spec.Taints {
		if (t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable) && t.Effect == corev1.TaintEffectNoSchedule {
			return corev1.Taint{}, false
		}
	}
	return corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule}, true
}

// Ready reports whether the node's Ready condition is True.
func (nd *Node) Ready() bool {
	if nd.Node == nil {
		return false
	}
	for _, c := range nd.Node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Add places p on the node. Adding a pod that is there already replaces it.
func (nd *Node) Add(p *Pod) {
	if _, ok := nd.pods[p.Key]; ok {
		nd.Remove(p.Key)
	}
	nd.pods[p.Key] = p
	nd.Requested.Add(p.Requests)
	nd.nonZeroCPU += p.nonZeroCPU
	nd.nonZeroMem += p.nonZeroMem
	for _, hp := range p.ports {
		pp := protoPort{hp.Protocol, hp.Port}
		byIP := nd.ports[pp]
		if byIP == nil {
			byIP = map[string]int{}
			nd.ports[pp] = byIP
		}
		byIP[hp.IP]++
	}
	if p.Group != "" && p.Pod.DeletionTimestamp == nil {
		nd.groups[p.Group]++
	}
	k := podSetKey(p.Pod)
	s := nd.sets[k]
	if s == nil {
		s = &podSet{namespace: p.Pod.Namespace, labels: labels.Set(p.Pod.Labels)}
		nd.sets[k] = s
	}
	s.pods++
	if p.Pod.DeletionTimestamp == nil {
		s.live++
	}
	if p.affinity != nil {
		nd.affinityPods = append(nd.affinityPods, p)
		if len(p.affinity.requiredAnti) > 0 {
			nd.nAnti++
		}
	}
}

// Remove takes the pod with key (namespace/name) off the node; it reports whether it was there.
func (nd *Node) Remove(key string) bool {
	p, ok := nd.pods[key]
	if !ok {
		return false
	}
	delete(nd.pods, key)
	nd.Requested.Sub(p.Requests)
	nd.nonZeroCPU -= p.nonZeroCPU
	nd.nonZeroMem -= p.nonZeroMem
	for _, hp := range p.ports {
		pp := protoPort{hp.Protocol, hp.Port}
		if byIP := nd.ports[pp]; byIP != nil {
			if byIP[hp.IP]--; byIP[hp.IP] <= 0 {
				delete(byIP, hp.IP)
			}
			if len(byIP) == 0 {
				delete(nd.ports, pp)
			}
		}
	}
	if p.Group != "" && p.Pod.DeletionTimestamp == nil {
		if nd.groups[p.Group]--; nd.groups[p.Group] <= 0 {
			delete(nd.groups, p.Group)
		}
	}
	k := podSetKey(p.Pod)
	if s := nd.sets[k]; s != nil {
		s.pods--
		if p.Pod.DeletionTimestamp == nil {
			s.live--
		}
		if s.pods <= 0 {
			delete(nd.sets, k)
		}
	}
	if p.affinity != nil {
		if i := slices.Index(nd.affinityPods, p); i >= 0 {
			last := len(nd.affinityPods) - 1
			nd.affinityPods[i] = nd.affinityPods[last]
			nd.affinityPods[last] = nil
			nd.affinityPods = nd.affinityPods[:last]
		}
		if len(p.affinity.requiredAnti) > 0 {
			nd.nAnti--
		}
	}
	return true
}

// Pod returns the pod with key placed on the node.
func (nd *Node) Pod(key string) (*Pod, bool) {
	p, ok := nd.pods[key]
	return p, ok
}

// Pods returns the pods placed on the node, in no order.
func (nd *Node) Pods() []*Pod {
	out := make([]*Pod, 0, len(nd.pods))
	for _, p := range nd.pods {
		out = append(out, p)
	}
	return out
}

// PodCount is how many pods are placed on the node.
func (nd *Node) PodCount() int { return len(nd.pods) }

// GroupCount is how many pods of a spreading group are placed on the node, leaving out those
// being deleted.
func (nd *Node) GroupCount(group string) int { return nd.groups[group] }

// Clone returns a copy of the node that can be changed without changing nd. The node object
// and the pods are shared (they are immutable).
func (nd *Node) Clone() *Node {
	c := &Node{
		Name: nd.Name, Node: nd.Node, Allocatable: nd.Allocatable, AllowedPods: nd.AllowedPods,
		Requested: nd.Requested.Clone(), nonZeroCPU: nd.nonZeroCPU, nonZeroMem: nd.nonZeroMem,
		pods:       make(map[string]*Pod, len(nd.pods)),
		ports:      make(map[protoPort]map[string]int, len(nd.ports)),
		groups:     make(map[string]int, len(nd.groups)),
		noSchedule: nd.noSchedule, preferNoSchedule: nd.preferNoSchedule,
		sets:         make(map[string]*podSet, len(nd.sets)),
		affinityPods: slices.Clone(nd.affinityPods), nAnti: nd.nAnti,
		hostname: nd.hostname, zone: nd.zone, hasHostname: nd.hasHostname, hasZone: nd.hasZone, zoneHash: nd.zoneHash,
	}
	for k, s := range nd.sets {
		cs := *s
		c.sets[k] = &cs
	}
	for k, p := range nd.pods {
		c.pods[k] = p
	}
	for pp, byIP := range nd.ports {
		m := make(map[string]int, len(byIP))
		for ip, n := range byIP {
			m[ip] = n
		}
		c.ports[pp] = m
	}
	for g, n := range nd.groups {
		c.groups[g] = n
	}
	return c
}

// podSet counts the pods on a node that have one namespace and the same labels: what label
// selectors and affinity terms tell apart, so they are matched once for all of them.
type podSet struct {
	namespace string
	labels    labels.Set
	pods      int // all of them
	live      int // those not being deleted (topology spreading leaves those out)
}

// podSetKey is the namespace and the labels of p, written unambiguously (label values hold
// neither ',' nor '=').
func podSetKey(p *corev1.Pod) string {
	if len(p.Labels) == 0 {
		return p.Namespace
	}
	return p.Namespace + "\x00" + labels.Set(p.Labels).String()
}

// portsConflict reports whether a host port of p is taken on the node: the same protocol and
// port on the same address, or on any address when either side listens on all of them.
func (nd *Node) portsConflict(p *Pod) bool {
	for _, hp := range p.ports {
		byIP := nd.ports[protoPort{hp.Protocol, hp.Port}]
		if len(byIP) == 0 {
			continue
		}
		if hp.IP == anyIP || byIP[anyIP] > 0 || byIP[hp.IP] > 0 {
			return true
		}
	}
	return false
}
