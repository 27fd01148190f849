package placement_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"pgregory.net/rapid"

	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

// The inter-pod constraints a generated pod has, in a form the checks below read without
// placement's code: each selects the pods whose label app has a value.
type genConstraints struct {
	anti, affinity []genTerm // required
	spread         []genSpread
}

type genTerm struct{ key, app string }

type genSpread struct {
	key        string
	app        string
	maxSkew    int
	minDomains int
}

var (
	apps     = []string{"web", "db"}
	topoKeys = []string{corev1.LabelHostname, corev1.LabelTopologyZone}
)

func genTopoNode(i int) *rapid.Generator[*corev1.Node] {
	return rapid.Custom(func(t *rapid.T) *corev1.Node {
		name := fmt.Sprintf("node-%d", i)
		n := lnode(name, corev1.LabelHostname, name)
		if rapid.Float64Range(0, 1).Draw(t, "zoned") < 0.9 {
			n.Labels[corev1.LabelTopologyZone] = rapid.SampledFrom(zones).Draw(t, "zone")
		}
		return n
	})
}

func genConstrainedPod(i int) *rapid.Generator[*corev1.Pod] {
	return rapid.Custom(func(t *rapid.T) *corev1.Pod {
		app := rapid.SampledFrom(apps).Draw(t, "app")
		p := lpod("default", fmt.Sprintf("pod-%d", i), kv("app", app))
		var c genConstraints
		for range rapid.IntRange(0, 1).Draw(t, "anti") {
			c.anti = append(c.anti, genTerm{rapid.SampledFrom(topoKeys).Draw(t, "key"), rapid.SampledFrom(apps).Draw(t, "app")})
		}
		if rapid.Float64Range(0, 1).Draw(t, "affinity") < 0.2 {
			c.affinity = append(c.affinity, genTerm{rapid.SampledFrom(topoKeys).Draw(t, "key"), rapid.SampledFrom(apps).Draw(t, "app")})
		}
		for range rapid.IntRange(0, 1).Draw(t, "spread") {
			s := genSpread{key: rapid.SampledFrom(topoKeys).Draw(t, "key"), app: rapid.SampledFrom(apps).Draw(t, "app"),
				maxSkew: rapid.IntRange(1, 2).Draw(t, "maxSkew"), minDomains: 1}
			if rapid.Float64Range(0, 1).Draw(t, "minDomains") < 0.2 {
				s.minDomains = rapid.IntRange(2, 4).Draw(t, "domains")
			}
			c.spread = append(c.spread, s)
		}
		for _, a := range c.anti {
			withAnti(term(a.key, sel("app", in, a.app)))(p)
		}
		for _, a := range c.affinity {
			withAffinity(term(a.key, sel("app", in, a.app)))(p)
		}
		for _, s := range c.spread {
			spreading(int32(s.maxSkew), s.key, corev1.DoNotSchedule, sel("app", in, s.app), minDomains(int32(s.minDomains)))(p)
		}
		return p
	})
}

// constraintsOf reads a generated pod's constraints back from its spec.
func constraintsOf(p *corev1.Pod) genConstraints {
	var c genConstraints
	app := func(s *metav1.LabelSelector) string { return s.MatchExpressions[0].Values[0] }
	if a := p.Spec.Affinity; a != nil {
		if a.PodAntiAffinity != nil {
			for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				c.anti = append(c.anti, genTerm{t.TopologyKey, app(t.LabelSelector)})
			}
		}
		if a.PodAffinity != nil {
			for _, t := range a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				c.affinity = append(c.affinity, genTerm{t.TopologyKey, app(t.LabelSelector)})
			}
		}
	}
	for _, s := range p.Spec.TopologySpreadConstraints {
		c.spread = append(c.spread, genSpread{s.TopologyKey, app(s.LabelSelector), int(s.MaxSkew), int(*s.MinDomains)})
	}
	return c
}

// world is the nodes and the pods placed so far, by node name.
type world struct {
	nodes  []*corev1.Node
	placed map[string][]*corev1.Pod
}

// sameDomain reports whether nodes a and b share a value of key (both having it).
func sameDomain(a, b *corev1.Node, key string) bool {
	va, oka := a.Labels[key]
	vb, okb := b.Labels[key]
	return oka && okb && va == vb
}

// violation says which inter-pod rule placing p on n would break, written from the API's
// meaning: "" when none.
func (w *world) violation(p *corev1.Pod, n *corev1.Node) string {
	c := constraintsOf(p)
	for _, m := range w.nodes {
		for _, q := range w.placed[m.Name] {
			for _, a := range c.anti {
				if q.Labels["app"] == a.app && sameDomain(m, n, a.key) {
					return fmt.Sprintf("anti-affinity %v: %s on %s", a, q.Name, m.Name)
				}
			}
			for _, a := range constraintsOf(q).anti {
				if p.Labels["app"] == a.app && sameDomain(m, n, a.key) {
					return fmt.Sprintf("%s's anti-affinity %v", q.Name, a)
				}
			}
		}
	}
	if len(c.affinity) > 0 {
		selectsAll := func(q *corev1.Pod) bool {
			for _, a := range c.affinity {
				if q.Labels["app"] != a.app {
					return false
				}
			}
			return true
		}
		satisfied, anyMatch := true, false
		for _, a := range c.affinity {
			if _, ok := n.Labels[a.key]; !ok {
				return fmt.Sprintf("affinity %v: node lacks the key", a)
			}
			found := false
			for _, m := range w.nodes {
				for _, q := range w.placed[m.Name] {
					if !selectsAll(q) {
						continue
					}
					if _, ok := m.Labels[a.key]; ok {
						anyMatch = true
					}
					found = found || sameDomain(m, n, a.key)
				}
			}
			satisfied = satisfied && found
		}
		if !satisfied && (anyMatch || !selectsAll(p)) {
			return fmt.Sprintf("affinity %v unmet", c.affinity)
		}
	}
	for _, s := range c.spread {
		v, ok := n.Labels[s.key]
		if !ok {
			return fmt.Sprintf("spread %v: node lacks the key", s)
		}
		counts := map[string]int{}
		for _, m := range w.nodes {
			all := true
			for _, o := range c.spread {
				if _, ok := m.Labels[o.key]; !ok {
					all = false
				}
			}
			if !all {
				continue
			}
			d := m.Labels[s.key]
			counts[d] += 0
			for _, q := range w.placed[m.Name] {
				if q.Labels["app"] == s.app {
					counts[d]++
				}
			}
		}
		least := -1
		for _, k := range counts {
			if least < 0 || k < least {
				least = k
			}
		}
		if len(counts) < s.minDomains || least < 0 {
			least = 0
		}
		self := 0
		if p.Labels["app"] == s.app {
			self = 1
		}
		if counts[v]+self-least > s.maxSkew {
			return fmt.Sprintf("spread %v: %d in %s, least %d", s, counts[v], v, least)
		}
	}
	return ""
}

// Whatever the nodes, pods and their inter-pod affinity, anti-affinity and DoNotSchedule
// spread constraints, every placement of a plan keeps them all (checked with code written from
// the API's meaning, not with placement's), and a pod is left out only when every node would
// break one of them (the nodes have room for anything, so nothing else can keep a pod out).
func TestPlanPodConstraintProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nn := rapid.IntRange(1, 6).Draw(t, "nodes")
		np := rapid.IntRange(1, 25).Draw(t, "pods")
		w := &world{placed: map[string][]*corev1.Pod{}}
		for i := range nn {
			w.nodes = append(w.nodes, genTopoNode(i).Draw(t, "node"))
		}
		ps := make([]*corev1.Pod, np)
		pis := make([]*placement.Pod, np)
		for i := range ps {
			ps[i] = genConstrainedPod(i).Draw(t, "pod")
			pis[i] = placement.NewPod(ps[i])
		}
		byName := map[string]*corev1.Node{}
		for _, n := range w.nodes {
			byName[n.Name] = n
		}
		for i, d := range placement.Plan(nodesOf(w.nodes, nil), nil, pis) {
			p := ps[i]
			if d.Node == "" {
				for _, n := range w.nodes {
					if w.violation(p, n) == "" {
						t.Fatalf("%s (%+v) left out (%v), but %s breaks none of its rules", p.Name, constraintsOf(p), d.Err, n.Name)
					}
				}
				continue
			}
			n := byName[d.Node]
			if why := w.violation(p, n); why != "" {
				t.Fatalf("%s (app=%s, %+v) placed on %s: %s", p.Name, p.Labels["app"], constraintsOf(p), n.Name, why)
			}
			w.placed[n.Name] = append(w.placed[n.Name], p)
		}
	})
}

// Whatever pods are added to and removed from a node, in whatever order, it counts them as a
// node that was given only the pods that remain: spreading groups (leaving out pods being
// deleted), pods by namespace and labels, pods with affinity terms.
func TestNodeBookkeeping(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := lnode("node-1", corev1.LabelHostname, "node-1")
		nd := placement.NewNode(n.Name, n)
		held := map[string]*corev1.Pod{}
		for i := range rapid.IntRange(0, 40).Draw(t, "ops") {
			name := fmt.Sprintf("pod-%d", rapid.IntRange(0, 8).Draw(t, "name"))
			if _, ok := held[name]; ok && rapid.Bool().Draw(t, "remove") {
				nd.Remove("default/" + name)
				delete(held, name)
				continue
			}
			p := genConstrainedPod(i).Draw(t, "pod")
			p.Name = name
			if rapid.Bool().Draw(t, "owned") {
				ownedBy(rapid.SampledFrom([]string{"rs-1", "rs-2"}).Draw(t, "owner"))(p)
			}
			if rapid.Float64Range(0, 1).Draw(t, "terminating") < 0.2 {
				terminating(p)
			}
			nd.Add(placement.NewPod(p)) // replaces a pod of that name
			held[name] = p
		}
		fresh := placement.NewNode(n.Name, n)
		for _, p := range held {
			fresh.Add(placement.NewPod(p))
		}
		if got, want := nd.Summary(), fresh.Summary(); got != want {
			t.Fatalf("after adds and removes:\n%s\nwant:\n%s", got, want)
		}
		if got, want := nd.Clone().Summary(), fresh.Summary(); got != want {
			t.Fatalf("clone:\n%s\nwant:\n%s", got, want)
		}
	})
}
