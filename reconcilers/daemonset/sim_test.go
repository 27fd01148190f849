package daemonset_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// One pod per eligible node: a node tainted NoSchedule gets none unless the set tolerates the
// taint, a nodeSelector is honoured; pods carry the daemon tolerations, the matchFields node
// affinity (the scheduler binds them), the hash and template generation labels. A new node gets
// its pods, a deleted node's pods go, a node that loses a label loses the pod that needed it,
// an untainted node gets its pod, and a failed pod is replaced.
func TestDaemonSetPlacement(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 4})
	c.MustKubectl("taint", "nodes", "node-4", "dedicated=infra:NoSchedule")
	c.MustKubectl("label", "nodes", "node-1", "node-3", "tier=edge")
	create(t, c, daemonSet("agent", imageV1))
	create(t, c, daemonSet("edge", imageV1, func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Spec.NodeSelector = map[string]string{"tier": "edge"}
	}))
	create(t, c, daemonSet("infra", imageV1, func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
	}))
	waitPlacement(t, c, "agent", everywhere(imageV1, "node-1", "node-2", "node-3"))
	waitPlacement(t, c, "edge", everywhere(imageV1, "node-1", "node-3"))
	waitPlacement(t, c, "infra", everywhere(imageV1, "node-1", "node-2", "node-3", "node-4"))
	waitStatus(t, c, "agent", fullStatus(3))
	waitStatus(t, c, "edge", fullStatus(2))
	waitStatus(t, c, "infra", fullStatus(4))

	ds := getDS(t, c, "agent")
	if g := ds.Annotations[appsv1.DeprecatedTemplateGeneration]; g != "1" {
		t.Errorf("template generation %q, want 1", g)
	}
	revs, err := c.Client.AppsV1().ControllerRevisions("default").List(t.Context(), metav1.ListOptions{LabelSelector: "app=agent"})
	if err != nil {
		t.Fatal(err)
	}
	if len(revs.Items) != 1 || revs.Items[0].Revision != 1 || !metav1.IsControlledBy(&revs.Items[0], ds) {
		t.Fatalf("revisions %+v", revs.Items)
	}
	hash := revs.Items[0].Labels[appsv1.DefaultDaemonSetUniqueLabelKey]
	if revs.Items[0].Name != "agent-"+hash {
		t.Errorf("revision %s, hash %s", revs.Items[0].Name, hash)
	}
	p := c.LivePods("app=agent")[0]
	if p.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] != hash || p.Labels["pod-template-generation"] != "1" || !metav1.IsControlledBy(&p, ds) {
		t.Errorf("pod labels %v, owners %v", p.Labels, p.OwnerReferences)
	}
	terms := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchFields) != 1 || terms[0].MatchFields[0].Key != "metadata.name" || terms[0].MatchFields[0].Values[0] != p.Spec.NodeName {
		t.Errorf("pod on %s has node affinity %+v", p.Spec.NodeName, terms)
	}
	var tolerated []string
	for _, tol := range p.Spec.Tolerations {
		tolerated = append(tolerated, tol.Key+":"+string(tol.Effect))
	}
	for _, want := range []string{"node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/disk-pressure:NoSchedule",
		"node.kubernetes.io/memory-pressure:NoSchedule", "node.kubernetes.io/pid-pressure:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule"} {
		if !slices.Contains(tolerated, want) {
			t.Errorf("tolerations %v lack %s", tolerated, want)
		}
	}
	if slices.Contains(tolerated, "node.kubernetes.io/network-unavailable:NoSchedule") {
		t.Errorf("a pod without hostNetwork tolerates network-unavailable: %v", tolerated)
	}

	// A new node gets the pods it is eligible for; labelled, the edge pod too.
	if err := c.Nodes.Add(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	waitPlacement(t, c, "agent", everywhere(imageV1, "node-1", "node-2", "node-3", "node-5"))
	waitPlacement(t, c, "edge", everywhere(imageV1, "node-1", "node-3"))
	c.MustKubectl("label", "nodes", "node-5", "tier=edge")
	waitPlacement(t, c, "edge", everywhere(imageV1, "node-1", "node-3", "node-5"))

	// A node that goes away loses its pods.
	c.Nodes.Stop("node-2")
	c.MustKubectl("delete", "node", "node-2")
	waitPlacement(t, c, "agent", everywhere(imageV1, "node-1", "node-3", "node-5"))
	waitPlacement(t, c, "infra", everywhere(imageV1, "node-1", "node-3", "node-4", "node-5"))
	if n := len(c.Pods("default", "app=agent")); n != 3 {
		t.Errorf("%d agent pods left, want 3 (the deleted node's is gone, not terminating)", n)
	}
	// The taint goes: the node gets its pod. The label goes: the edge pod leaves.
	c.MustKubectl("taint", "nodes", "node-4", "dedicated-")
	c.MustKubectl("label", "nodes", "node-1", "tier-")
	waitPlacement(t, c, "agent", everywhere(imageV1, "node-1", "node-3", "node-4", "node-5"))
	waitPlacement(t, c, "edge", everywhere(imageV1, "node-3", "node-5"))
	waitStatus(t, c, "agent", fullStatus(4))
	waitStatus(t, c, "edge", fullStatus(2))

	// A failed pod is replaced, on its node, with a FailedDaemonPod Event.
	failed := c.LivePods("app=edge")[0]
	failed.Status.Phase = corev1.PodFailed
	failed.Status.Conditions = nil
	if _, err := c.Client.CoreV1().Pods("default").UpdateStatus(t.Context(), &failed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Eventually(60*time.Second, func() (bool, string) {
		for _, p := range c.Pods("default", "app=edge") {
			if p.Name == failed.Name {
				return false, fmt.Sprintf("the failed pod %s is still there (%s)", p.Name, p.Status.Phase)
			}
		}
		return true, ""
	})
	waitPlacement(t, c, "edge", everywhere(imageV1, "node-3", "node-5"))
	c.Eventually(30*time.Second, func() (bool, string) {
		out := c.MustKubectl("get", "events", "--field-selector", "involvedObject.name=edge", "-o", "custom-columns=REASON:.reason,MESSAGE:.message")
		return strings.Contains(out, "FailedDaemonPod") && strings.Contains(out, failed.Name), out
	})

	// A drained node keeps its daemon pods (kubectl recognises them), and a cordoned node still
	// gets the pods of a new DaemonSet: they tolerate node.kubernetes.io/unschedulable.
	out, err := c.Kubectl("drain", "node-3", "--ignore-daemonsets", "--timeout=60s")
	if err != nil || !strings.Contains(out, "node/node-3 drained") {
		t.Fatalf("drain: %q, %v", out, err)
	}
	create(t, c, daemonSet("late", imageV1))
	waitPlacement(t, c, "late", everywhere(imageV1, "node-1", "node-3", "node-4", "node-5"))
	waitPlacement(t, c, "agent", everywhere(imageV1, "node-1", "node-3", "node-4", "node-5"))
}

// rollout changes the set's image and records the pods it went through until every node
// runs one ready pod of the new image.
func rollout(t *testing.T, c *reconcilerstest.Cluster, name string, nodes []string) []map[string]*corev1.Pod {
	t.Helper()
	l := watchPods(t, c, name)
	setImage(t, c, name, imageV2)
	waitPlacement(t, c, name, everywhere(imageV2, nodes...))
	return l.end()
}

// RollingUpdate with maxUnavailable 1: one node at a time is without a ready pod, and no node
// ever runs two pods.
func TestDaemonSetRollingUpdateMaxUnavailable(t *testing.T) {
	nodes := []string{"node-1", "node-2", "node-3", "node-4"}
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: len(nodes)})
	create(t, c, daemonSet("agent", imageV1, rolling(1, 0)))
	waitPlacement(t, c, "agent", everywhere(imageV1, nodes...))
	states := rollout(t, c, "agent", nodes)
	worst := 0
	for _, st := range states {
		perNode, unavailable := shape(st, nodes)
		for n, k := range perNode {
			if k > 1 {
				t.Fatalf("%d pods on %s: %s", k, n, describeState(st))
			}
		}
		if len(unavailable) > 1 {
			t.Fatalf("%v unavailable at once, maxUnavailable 1: %s", unavailable, describeState(st))
		}
		worst = max(worst, len(unavailable))
	}
	if worst != 1 || len(states) < 4*3 {
		t.Errorf("the rollout went through %d states, at worst %d nodes unavailable", len(states), worst)
	}
	waitStatus(t, c, "agent", fullStatus(4))
}

// RollingUpdate with maxSurge 1 (maxUnavailable 0): every node always has a ready pod, and at
// most one node runs two.
func TestDaemonSetRollingUpdateMaxSurge(t *testing.T) {
	nodes := []string{"node-1", "node-2", "node-3", "node-4"}
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: len(nodes)})
	create(t, c, daemonSet("agent", imageV1, rolling(0, 1)))
	waitPlacement(t, c, "agent", everywhere(imageV1, nodes...))
	states := rollout(t, c, "agent", nodes)
	surged := 0
	for _, st := range states {
		perNode, unavailable := shape(st, nodes)
		if len(unavailable) > 0 {
			t.Fatalf("%v unavailable, maxUnavailable 0: %s", unavailable, describeState(st))
		}
		doubled := 0
		for n, k := range perNode {
			if k > 2 {
				t.Fatalf("%d pods on %s: %s", k, n, describeState(st))
			}
			if k == 2 {
				doubled++
			}
		}
		if doubled > 1 {
			t.Fatalf("%d nodes with two pods, maxSurge 1: %s", doubled, describeState(st))
		}
		surged = max(surged, doubled)
	}
	if surged != 1 {
		t.Errorf("no node ever ran a new pod beside the old one")
	}
	waitStatus(t, c, "agent", fullStatus(4))
}

// OnDelete: a template change replaces no pod by itself; a deleted pod comes back new.
func TestDaemonSetOnDelete(t *testing.T) {
	nodes := []string{"node-1", "node-2", "node-3"}
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: len(nodes)})
	create(t, c, daemonSet("agent", imageV1, func(ds *appsv1.DaemonSet) {
		ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	}))
	waitPlacement(t, c, "agent", everywhere(imageV1, nodes...))
	setImage(t, c, "agent", imageV2)
	waitStatus(t, c, "agent", appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 3, NumberAvailable: 3})
	c.WaitReconciled()
	if got := placement(t, c, "agent"); fmt.Sprint(got) != fmt.Sprint(map[string][]string{"node-1": {imageV1}, "node-2": {imageV1}, "node-3": {imageV1}}) {
		t.Fatalf("OnDelete replaced pods by itself: %v", got)
	}
	if out, err := c.Kubectl("rollout", "status", "ds/agent"); err == nil || !strings.Contains(err.Error(), "rollout status is only available for RollingUpdate strategy type") {
		t.Errorf("rollout status of an OnDelete set: %q, %v", out, err)
	}
	var victim corev1.Pod
	for _, p := range c.LivePods("app=agent") {
		if p.Spec.NodeName == "node-2" {
			victim = p
		}
	}
	c.MustKubectl("delete", "pod", victim.Name)
	waitPlacement(t, c, "agent", map[string]string{"node-1": imageV1, "node-2": imageV2, "node-3": imageV1})
	waitStatus(t, c, "agent", appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 3, NumberAvailable: 3, UpdatedNumberScheduled: 1})
}

// fail marks a pod Failed, as a node agent that rejected it would.
func fail(t *testing.T, c *reconcilerstest.Cluster, p corev1.Pod) {
	t.Helper()
	p.Status.Phase = corev1.PodFailed
	p.Status.Conditions = nil
	if _, err := c.Client.CoreV1().Pods("default").UpdateStatus(t.Context(), &p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A node whose daemon pods keep failing: the first failed pod is replaced at once, the next one
// only after the back-off (1 s, on the reconcilers' clock), as Kubernetes' failedPodsBackoff.
func TestDaemonSetFailedPodBackOff(t *testing.T) {
	fc := testingclock.NewFakeClock(time.Now())
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1, Clock: fc})
	create(t, c, daemonSet("agent", imageV1))
	waitPlacement(t, c, "agent", everywhere(imageV1, "node-1"))
	gone := func(name string) func() (bool, string) {
		return func() (bool, string) {
			for _, p := range c.Pods("default", "app=agent") {
				if p.Name == name {
					return false, fmt.Sprintf("pod %s still there (%s)", name, p.Status.Phase)
				}
			}
			return true, ""
		}
	}
	first := c.LivePods("app=agent")[0]
	fail(t, c, first)
	c.Eventually(30*time.Second, gone(first.Name))
	waitPlacement(t, c, "agent", everywhere(imageV1, "node-1"))

	second := c.LivePods("app=agent")[0]
	fail(t, c, second)
	c.WaitReconciled()
	if ok, _ := gone(second.Name)(); ok {
		t.Fatal("the second failed pod was deleted without back-off")
	}
	fc.Step(1100 * time.Millisecond)
	c.Eventually(30*time.Second, gone(second.Name))
	waitPlacement(t, c, "agent", everywhere(imageV1, "node-1"))
}

// The API server keeps a DaemonSet's template generation, as Kubernetes: 1 on create, one more
// per template change, whatever a client writes in the annotation; a status write keeps it.
func TestDaemonSetTemplateGeneration(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoReconcilers: true, NoScheduler: true})
	dss := c.Client.AppsV1().DaemonSets("default")
	gen := func(ds *appsv1.DaemonSet) string { return ds.Annotations[appsv1.DeprecatedTemplateGeneration] }
	ds, err := dss.Create(t.Context(), daemonSet("agent", imageV1), metav1.CreateOptions{})
	if err != nil || gen(ds) != "1" || ds.Generation != 1 {
		t.Fatalf("created: generation %d, template generation %q, %v", ds.Generation, gen(ds), err)
	}
	ds.Spec.MinReadySeconds = 5
	ds.Annotations[appsv1.DeprecatedTemplateGeneration] = "99"
	if ds, err = dss.Update(t.Context(), ds, metav1.UpdateOptions{}); err != nil || gen(ds) != "1" || ds.Generation != 2 {
		t.Fatalf("spec changed, not the template: generation %d, template generation %q, %v", ds.Generation, gen(ds), err)
	}
	ds.Spec.Template.Spec.Containers[0].Image = imageV2
	if ds, err = dss.Update(t.Context(), ds, metav1.UpdateOptions{}); err != nil || gen(ds) != "2" || ds.Generation != 3 {
		t.Fatalf("template changed: generation %d, template generation %q, %v", ds.Generation, gen(ds), err)
	}
	ds.Status.DesiredNumberScheduled = 1
	delete(ds.Annotations, appsv1.DeprecatedTemplateGeneration)
	if ds, err = dss.UpdateStatus(t.Context(), ds, metav1.UpdateOptions{}); err != nil || gen(ds) != "2" {
		t.Fatalf("status written: template generation %q, %v", gen(ds), err)
	}
}
