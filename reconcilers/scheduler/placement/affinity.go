package placement

import (
	"fmt"
	"math"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Inter-pod affinity and anti-affinity, as kube-scheduler's InterPodAffinity plugin does them
// (pkg/scheduler/framework/plugins/interpodaffinity): required terms filter, preferred terms
// (and the required affinity terms of the pods already placed, with weight 1) score.

// Namespaces are the labels of the cluster's namespaces, by name: what the namespaceSelector of
// an affinity term selects on. A nil map knows no namespace.
type Namespaces map[string]labels.Set

// The reasons of InterPodAffinity, as kube-scheduler words them.
const (
	ReasonPodAffinity          = "node(s) didn't match pod affinity rules"
	ReasonPodAntiAffinity      = "node(s) didn't match pod anti-affinity rules"
	ReasonExistingAntiAffinity = "node(s) didn't satisfy existing pods anti-affinity rules"
)

// hardPodAffinityWeight is what a required affinity term of a placed pod adds to the score of
// the nodes in its topology, for an incoming pod it selects (InterPodAffinityArgs default).
const hardPodAffinityWeight = 1

// affinityTerm is a pod affinity term ready to match pods (kube-scheduler's AffinityTerm).
type affinityTerm struct {
	selector labels.Selector
	// namespaces are those the term names, or the pod's own when it names none and has no
	// namespaceSelector.
	namespaces []string
	// nsSelector is labels.Nothing() when the term has no namespaceSelector, and
	// labels.Everything() when it is empty ({}: every namespace).
	nsSelector  labels.Selector
	topologyKey string
	weight      int64 // of a preferred term
}

// podAffinity is a pod's inter-pod affinity and anti-affinity terms.
type podAffinity struct {
	required, requiredAnti   []affinityTerm
	preferred, preferredAnti []affinityTerm
}

// newPodAffinity reads the pod (anti-)affinity terms of p; nil when it has none.
// matchLabelKeys and mismatchLabelKeys are merged into the label selector as Kubernetes' API
// server merges them when a pod is created (key in (value), key notin (value), for the keys the
// pod has); doing it again on a selector already merged changes nothing it selects.
func newPodAffinity(p *corev1.Pod) (*podAffinity, error) {
	a := p.Spec.Affinity
	if a == nil || (a.PodAffinity == nil && a.PodAntiAffinity == nil) {
		return nil, nil
	}
	out := &podAffinity{}
	var err error
	if pa := a.PodAffinity; pa != nil {
		if out.required, err = affinityTerms(p, pa.RequiredDuringSchedulingIgnoredDuringExecution, nil); err != nil {
			return nil, fmt.Errorf("requiredAffinityTerms: %w", err)
		}
		if out.preferred, err = affinityTerms(p, nil, pa.PreferredDuringSchedulingIgnoredDuringExecution); err != nil {
			return nil, fmt.Errorf("preferredAffinityTerms: %w", err)
		}
	}
	if pa := a.PodAntiAffinity; pa != nil {
		if out.requiredAnti, err = affinityTerms(p, pa.RequiredDuringSchedulingIgnoredDuringExecution, nil); err != nil {
			return nil, fmt.Errorf("requiredAntiAffinityTerms: %w", err)
		}
		if out.preferredAnti, err = affinityTerms(p, nil, pa.PreferredDuringSchedulingIgnoredDuringExecution); err != nil {
			return nil, fmt.Errorf("preferredAntiAffinityTerms: %w", err)
		}
	}
	if len(out.required)+len(out.requiredAnti)+len(out.preferred)+len(out.preferredAnti) == 0 {
		return nil, nil
	}
	return out, nil
}

func affinityTerms(p *corev1.Pod, required []corev1.PodAffinityTerm, preferred []corev1.WeightedPodAffinityTerm) ([]affinityTerm, error) {
	var out []affinityTerm
	for i := range required {
		t, err := newAffinityTerm(p, &required[i])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	for i := range preferred {
		t, err := newAffinityTerm(p, &preferred[i].PodAffinityTerm)
		if err != nil {
			return nil, err
		}
		t.weight = int64(preferred[i].Weight)
		out = append(out, t)
	}
	return out, nil
}

func newAffinityTerm(p *corev1.Pod, t *corev1.PodAffinityTerm) (affinityTerm, error) {
	sel, err := metav1.LabelSelectorAsSelector(t.LabelSelector)
	if err != nil {
		return affinityTerm{}, err
	}
	if t.LabelSelector != nil {
		if sel, err = withLabelKeys(sel, p.Labels, t.MatchLabelKeys, selection.In); err != nil {
			return affinityTerm{}, err
		}
		if sel, err = withLabelKeys(sel, p.Labels, t.MismatchLabelKeys, selection.NotIn); err != nil {
			return affinityTerm{}, err
		}
	}
	nsSel, err := metav1.LabelSelectorAsSelector(t.NamespaceSelector)
	if err != nil {
		return affinityTerm{}, err
	}
	ns := t.Namespaces
	if len(ns) == 0 && t.NamespaceSelector == nil {
		ns = []string{p.Namespace}
	}
	return affinityTerm{selector: sel, namespaces: ns, nsSelector: nsSel, topologyKey: t.TopologyKey}, nil
}

// withLabelKeys adds to sel, for each of keys that podLabels has, the requirement "key op
// (value)".
func withLabelKeys(sel labels.Selector, podLabels map[string]string, keys []string, op selection.Operator) (labels.Selector, error) {
	for _, k := range keys {
		v, ok := podLabels[k]
		if !ok {
			continue
		}
		r, err := labels.NewRequirement(k, op, []string{v})
		if err != nil {
			return nil, err
		}
		sel = sel.Add(*r)
	}
	return sel, nil
}

// matches reports whether the term, of a pod already placed, selects the pods of namespace
// namespace with labels podLabels; the namespace has the labels nsLabels (nil when unknown).
func (t *affinityTerm) matches(namespace string, podLabels, nsLabels labels.Set) bool {
	if slices.Contains(t.namespaces, namespace) || t.nsSelector.Matches(nsLabels) {
		return t.selector.Matches(podLabels)
	}
	return false
}

// selects reports whether the term, of the pod being placed, selects the pods of namespace
// namespace with labels podLabels. Its namespaceSelector selects among the namespaces that
// exist (kube-scheduler turns it into the list of their names), so a pod in a namespace that
// is not known is selected only by name or by {}.
func (t *affinityTerm) selects(namespace string, podLabels labels.Set, ns Namespaces) bool {
	in := slices.Contains(t.namespaces, namespace) || t.nsSelector.Empty()
	if !in {
		l, ok := ns[namespace]
		in = ok && t.nsSelector.Matches(l)
	}
	return in && t.selector.Matches(podLabels)
}

// selectsAll reports whether every one of terms (of the pod being placed) selects the pods of
// namespace with podLabels; false when there are none.
func selectsAll(terms []affinityTerm, namespace string, podLabels labels.Set, ns Namespaces) bool {
	if len(terms) == 0 {
		return false
	}
	for i := range terms {
		if !terms[i].selects(namespace, podLabels, ns) {
			return false
		}
	}
	return true
}

// topologyPair is a topology domain: a node label and its value.
type topologyPair struct{ key, value string }

// pairCounts counts pods by topology domain; entries that fall to zero are removed.
type pairCounts map[topologyPair]int64

// add adds d to the domain of node n for key, if n has that label.
func (m *pairCounts) add(n *corev1.Node, key string, d int64) {
	v, ok := n.Labels[key]
	if !ok {
		return
	}
	if *m == nil {
		*m = pairCounts{}
	}
	pair := topologyPair{key, v}
	if (*m)[pair] += d; (*m)[pair] == 0 {
		delete(*m, pair)
	}
}

// interPodState is what InterPodAffinity's PreFilter works out once per pod, over every node:
// how many placed pods, by topology domain, have a required anti-affinity term selecting the
// incoming pod, are selected by all of its required affinity terms, or by one of its required
// anti-affinity terms.
type interPodState struct {
	existingAnti, affinity, anti pairCounts
	// self: the incoming pod is selected by all its own affinity terms (the first pod of a group
	// that wants to be together may go where nothing is yet).
	self bool
}

// newInterPodState returns the state for placing p on nodes, or nil when there is nothing to
// check: p has no required terms and no placed pod's required anti-affinity selects it.
func newInterPodState(nodes []*Node, p *Pod, ns Namespaces, anyAnti bool) *interPodState {
	incoming := p.affinity != nil && len(p.affinity.required)+len(p.affinity.requiredAnti) > 0
	if !incoming && !anyAnti {
		return nil
	}
	s := &interPodState{}
	podLabels, nsLabels := labels.Set(p.Pod.Labels), ns[p.Pod.Namespace]
	for _, nd := range nodes {
		if nd.Node == nil {
			continue
		}
		if nd.nAnti > 0 {
			for _, q := range nd.affinityPods {
				for i := range q.affinity.requiredAnti {
					if t := &q.affinity.requiredAnti[i]; t.matches(p.Pod.Namespace, podLabels, nsLabels) {
						s.existingAnti.add(nd.Node, t.topologyKey, 1)
					}
				}
			}
		}
		if incoming {
			for _, set := range nd.sets {
				s.countIncoming(nd.Node, p, set.namespace, set.labels, ns, int64(set.pods))
			}
		}
	}
	if !incoming && len(s.existingAnti) == 0 {
		return nil
	}
	if incoming {
		s.self = selectsAll(p.affinity.required, p.Pod.Namespace, podLabels, ns)
	}
	return s
}

// countIncoming counts d pods of namespace with podLabels, placed on n, against the incoming
// pod p's required terms.
func (s *interPodState) countIncoming(n *corev1.Node, p *Pod, namespace string, podLabels labels.Set, ns Namespaces, d int64) {
	if p.affinity == nil {
		return
	}
	if selectsAll(p.affinity.required, namespace, podLabels, ns) {
		for i := range p.affinity.required {
			s.affinity.add(n, p.affinity.required[i].topologyKey, d)
		}
	}
	for i := range p.affinity.requiredAnti {
		if t := &p.affinity.requiredAnti[i]; t.selects(namespace, podLabels, ns) {
			s.anti.add(n, t.topologyKey, d)
		}
	}
}

// update counts q, placed on n, once more (d = 1) or once less (d = -1): kube-scheduler's
// AddPod and RemovePod, which preemption uses to see a node without its victims.
func (s *interPodState) update(n *corev1.Node, p, q *Pod, ns Namespaces, d int64) {
	if q.affinity != nil {
		podLabels, nsLabels := labels.Set(p.Pod.Labels), ns[p.Pod.Namespace]
		for i := range q.affinity.requiredAnti {
			if t := &q.affinity.requiredAnti[i]; t.matches(p.Pod.Namespace, podLabels, nsLabels) {
				s.existingAnti.add(n, t.topologyKey, d)
			}
		}
	}
	s.countIncoming(n, p, q.Pod.Namespace, labels.Set(q.Pod.Labels), ns, d)
}

// filter returns why p may not go to nd for its inter-pod (anti-)affinity, or nil.
func (s *interPodState) filter(nd *Node, p *Pod) *Status {
	labels := nd.Node.Labels
	if p.affinity != nil && len(p.affinity.required) > 0 {
		exist := true
		for i := range p.affinity.required {
			v, ok := labels[p.affinity.required[i].topologyKey]
			if !ok {
				return &Status{UnschedulableAndUnresolvable, []string{ReasonPodAffinity}}
			}
			if s.affinity[topologyPair{p.affinity.required[i].topologyKey, v}] <= 0 {
				exist = false
			}
		}
		// No pod anywhere matches yet: the first of a group whose affinity selects itself
		// may start it on any node with the topology labels.
		if !exist && !(len(s.affinity) == 0 && s.self) {
			return &Status{UnschedulableAndUnresolvable, []string{ReasonPodAffinity}}
		}
	}
	if p.affinity != nil && len(s.anti) > 0 {
		for i := range p.affinity.requiredAnti {
			key := p.affinity.requiredAnti[i].topologyKey
			if v, ok := labels[key]; ok && s.anti[topologyPair{key, v}] > 0 {
				return &Status{Unschedulable, []string{ReasonPodAntiAffinity}}
			}
		}
	}
	for pair, n := range s.existingAnti {
		if v, ok := labels[pair.key]; ok && v == pair.value && n > 0 {
			return &Status{Unschedulable, []string{ReasonExistingAntiAffinity}}
		}
	}
	return nil
}

// interPodScores writes into out, for each of the feasible nodes, InterPodAffinity's
// normalised score (0-100): the sum of the weights of the incoming pod's preferred terms that
// select pods in the node's topology domains (anti-affinity subtracts), and of the placed pods'
// terms that select the incoming pod (required affinity with weight 1, preferred with theirs).
// It reports false when no term applies anywhere (every node would score the same).
func interPodScores(feasible, all []*Node, p *Pod, ns Namespaces, anyAffinity bool, out []int64) bool {
	preferred := p.affinity != nil && len(p.affinity.preferred)+len(p.affinity.preferredAnti) > 0
	if !preferred && !anyAffinity {
		return false
	}
	var topo map[string]map[string]int64
	add := func(n *corev1.Node, key string, w int64) {
		v, ok := n.Labels[key]
		if !ok {
			return
		}
		if topo == nil {
			topo = map[string]map[string]int64{}
		}
		if topo[key] == nil {
			topo[key] = map[string]int64{}
		}
		topo[key][v] += w
	}
	podLabels, nsLabels := labels.Set(p.Pod.Labels), ns[p.Pod.Namespace]
	for _, nd := range all {
		if nd.Node == nil || len(nd.Node.Labels) == 0 {
			continue
		}
		// The incoming pod's preferred terms, against every pod placed (by namespace and
		// labels, all alike at once).
		if preferred {
			for _, set := range nd.sets {
				n := int64(set.pods)
				for i := range p.affinity.preferred {
					if t := &p.affinity.preferred[i]; t.selects(set.namespace, set.labels, ns) {
						add(nd.Node, t.topologyKey, n*t.weight)
					}
				}
				for i := range p.affinity.preferredAnti {
					if t := &p.affinity.preferredAnti[i]; t.selects(set.namespace, set.labels, ns) {
						add(nd.Node, t.topologyKey, -n*t.weight)
					}
				}
			}
		}
		// The placed pods' terms, against the incoming pod.
		for _, q := range nd.affinityPods {
			a := q.affinity
			for i := range a.required {
				if t := &a.required[i]; t.matches(p.Pod.Namespace, podLabels, nsLabels) {
					add(nd.Node, t.topologyKey, hardPodAffinityWeight)
				}
			}
			for i := range a.preferred {
				if t := &a.preferred[i]; t.matches(p.Pod.Namespace, podLabels, nsLabels) {
					add(nd.Node, t.topologyKey, t.weight)
				}
			}
			for i := range a.preferredAnti {
				if t := &a.preferredAnti[i]; t.matches(p.Pod.Namespace, podLabels, nsLabels) {
					add(nd.Node, t.topologyKey, -t.weight)
				}
			}
		}
	}
	if len(topo) == 0 {
		return false
	}
	minS, maxS := int64(math.MaxInt64), int64(math.MinInt64)
	for i, nd := range feasible {
		var s int64
		for key, values := range topo {
			if v, ok := nd.Node.Labels[key]; ok {
				s += values[v]
			}
		}
		out[i] = s
		minS, maxS = min(minS, s), max(maxS, s)
	}
	for i := range feasible {
		if diff := maxS - minS; diff > 0 {
			out[i] = int64(float64(maxScore) * (float64(out[i]-minS) / float64(diff)))
		} else {
			out[i] = 0
		}
	}
	return true
}
