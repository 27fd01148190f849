package placement_test

import (
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

// Fixtures for the inter-pod affinity and topology spread tests: nodes with exactly the labels
// given and room for anything, pods placed by node name, and terms and constraints built
// tersely.

// lnode builds a Ready node with ample room and exactly the labels kv (key, value, ...).
func lnode(name string, kv ...string) *corev1.Node {
	n := node(name, "64", "256Gi", 1000)
	n.Labels = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Labels[kv[i]] = kv[i+1]
	}
	return n
}

// lpod builds a pod without requests in namespace ns with labels kv (key, value, ...).
func lpod(ns, name string, kv []string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := pod(name, "", "", opts...)
	p.Namespace = ns
	p.UID = types.UID("uid-" + ns + "-" + name)
	if len(kv) > 0 && p.Labels == nil {
		p.Labels = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		p.Labels[kv[i]] = kv[i+1]
	}
	return p
}

// kv is a terse list of labels.
func kv(s ...string) []string { return s }

// sel builds a label selector of one requirement.
func sel(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// and adds a requirement to a selector.
func and(s *metav1.LabelSelector, key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values})
	return s
}

const (
	in        = metav1.LabelSelectorOpIn
	notIn     = metav1.LabelSelectorOpNotIn
	exists    = metav1.LabelSelectorOpExists
	notExists = metav1.LabelSelectorOpDoesNotExist
)

func term(topologyKey string, s *metav1.LabelSelector) corev1.PodAffinityTerm {
	return corev1.PodAffinityTerm{LabelSelector: s, TopologyKey: topologyKey}
}

func affinity(p *corev1.Pod) *corev1.Affinity {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	return p.Spec.Affinity
}

// withAffinity adds required pod affinity terms.
func withAffinity(ts ...corev1.PodAffinityTerm) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		a := affinity(p)
		if a.PodAffinity == nil {
			a.PodAffinity = &corev1.PodAffinity{}
		}
		a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, ts...)
	}
}

// withAnti adds required pod anti-affinity terms.
func withAnti(ts ...corev1.PodAffinityTerm) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		a := affinity(p)
		if a.PodAntiAffinity == nil {
			a.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, ts...)
	}
}

// preferring adds a preferred pod affinity term.
func preferring(w int32, t corev1.PodAffinityTerm) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		a := affinity(p)
		if a.PodAffinity == nil {
			a.PodAffinity = &corev1.PodAffinity{}
		}
		a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.WeightedPodAffinityTerm{Weight: w, PodAffinityTerm: t})
	}
}

// avoiding adds a preferred pod anti-affinity term.
func avoiding(w int32, t corev1.PodAffinityTerm) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		a := affinity(p)
		if a.PodAntiAffinity == nil {
			a.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.WeightedPodAffinityTerm{Weight: w, PodAffinityTerm: t})
	}
}

// spreading adds a topology spread constraint; opts change it.
func spreading(maxSkew int32, key string, when corev1.UnsatisfiableConstraintAction, s *metav1.LabelSelector, opts ...func(*corev1.TopologySpreadConstraint)) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		c := corev1.TopologySpreadConstraint{MaxSkew: maxSkew, TopologyKey: key, WhenUnsatisfiable: when, LabelSelector: s}
		for _, o := range opts {
			o(&c)
		}
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, c)
	}
}

func minDomains(n int32) func(*corev1.TopologySpreadConstraint) {
	return func(c *corev1.TopologySpreadConstraint) { c.MinDomains = &n }
}

func affinityPolicy(p corev1.NodeInclusionPolicy) func(*corev1.TopologySpreadConstraint) {
	return func(c *corev1.TopologySpreadConstraint) { c.NodeAffinityPolicy = &p }
}

func taintsPolicy(p corev1.NodeInclusionPolicy) func(*corev1.TopologySpreadConstraint) {
	return func(c *corev1.TopologySpreadConstraint) { c.NodeTaintsPolicy = &p }
}

func matchLabelKeys(keys ...string) func(*corev1.TopologySpreadConstraint) {
	return func(c *corev1.TopologySpreadConstraint) { c.MatchLabelKeys = keys }
}

func terminating(p *corev1.Pod) {
	now := metav1.Now()
	p.DeletionTimestamp = &now
}

// on places pods on nodes: on("node-a", p1, p2, "node-b", p3...).
func on(args ...any) map[string][]*corev1.Pod {
	out := map[string][]*corev1.Pod{}
	var cur string
	for _, a := range args {
		switch v := a.(type) {
		case string:
			cur = v
		case *corev1.Pod:
			out[cur] = append(out[cur], v)
		default:
			panic(fmt.Sprintf("on: %T", a))
		}
	}
	return out
}

// many returns n pods with labels kv in namespace default, named prefix-0...
func many(n int, prefix string, labels []string, opts ...func(*corev1.Pod)) []any {
	out := make([]any, n)
	for i := range n {
		out[i] = lpod("default", fmt.Sprintf("%s-%d", prefix, i), labels, opts...)
	}
	return out
}

// flat joins node names and pods for on.
func flat(parts ...any) []any {
	var out []any
	for _, p := range parts {
		if s, ok := p.([]any); ok {
			out = append(out, s...)
		} else {
			out = append(out, p)
		}
	}
	return out
}

// The statuses the filters give.
var (
	fits             *placement.Status
	affinityMismatch = &placement.Status{Code: placement.UnschedulableAndUnresolvable, Reasons: []string{placement.ReasonPodAffinity}}
	antiMismatch     = &placement.Status{Code: placement.Unschedulable, Reasons: []string{placement.ReasonPodAntiAffinity}}
	existingAnti     = &placement.Status{Code: placement.Unschedulable, Reasons: []string{placement.ReasonExistingAntiAffinity}}
	skewed           = &placement.Status{Code: placement.Unschedulable, Reasons: []string{placement.ReasonSpread}}
	missingLabel     = &placement.Status{Code: placement.UnschedulableAndUnresolvable, Reasons: []string{placement.ReasonSpreadMissingLabel}}
	nodeAffinity     = &placement.Status{Code: placement.UnschedulableAndUnresolvable, Reasons: []string{placement.ReasonNodeAffinity}}
)

// checkStatuses fails t unless the filters give want (one per node, in order).
func checkStatuses(t *testing.T, ns []*corev1.Node, placed map[string][]*corev1.Pod, namespaces placement.Namespaces, p *corev1.Pod, want []*placement.Status) {
	t.Helper()
	got := placement.Statuses(nodesOf(ns, placed), namespaces, placement.NewPod(p))
	for i, n := range ns {
		if !reflect.DeepEqual(got[n.Name], want[i]) {
			t.Errorf("%s: got %v, want %v", n.Name, got[n.Name], want[i])
		}
	}
}

var teamNamespaces = placement.Namespaces{
	"default":        labels.Set{},
	"subteam1.team1": labels.Set{"team": "team1"},
	"subteam2.team1": labels.Set{"team": "team1"},
	"subteam1.team2": labels.Set{"team": "team2"},
	"subteam2.team2": labels.Set{"team": "team2"},
}

// onNode gives a pod the required node affinity a DaemonSet pod gets: matchFields
// metadata.name In [node].
func onNode(name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{name}}},
			}}},
		}}
	}
}
