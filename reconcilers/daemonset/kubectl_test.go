package daemonset_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

func rolloutStatus(t *testing.T, c *reconcilerstest.Cluster, name string) {
	t.Helper()
	out, err := c.Kubectl("rollout", "status", "ds/"+name, "--timeout=90s")
	if err != nil || !strings.Contains(out, `daemon set "`+name+`" successfully rolled out`) {
		t.Fatalf("rollout status: %q, %v", out, err)
	}
}

// `kubectl rollout status`, `rollout history` (with --revision) and `rollout undo` (with
// --to-revision) on a DaemonSet, with the real kubectl: undo restores the old template, which
// becomes the newest revision.
func TestDaemonSetKubectlRollout(t *testing.T) {
	nodes := []string{"node-1", "node-2", "node-3"}
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: len(nodes)})
	create(t, c, daemonSet("agent", imageV1))
	rolloutStatus(t, c, "agent")
	waitPlacement(t, c, "agent", everywhere(imageV1, nodes...))

	c.MustKubectl("annotate", "ds/agent", "kubernetes.io/change-cause=to 1.21")
	setImage(t, c, "agent", imageV2)
	rolloutStatus(t, c, "agent")
	waitPlacement(t, c, "agent", everywhere(imageV2, nodes...))
	if g := getDS(t, c, "agent").Annotations[appsv1.DeprecatedTemplateGeneration]; g != "2" {
		t.Errorf("template generation %q after one template change, want 2", g)
	}
	hist := c.MustKubectl("rollout", "history", "ds/agent")
	if !regexp.MustCompile(`(?s)REVISION\s+CHANGE-CAUSE\s+1\s+<none>\s+2\s+to 1.21`).MatchString(hist) {
		t.Errorf("rollout history:\n%s", hist)
	}
	rev1 := c.MustKubectl("rollout", "history", "ds/agent", "--revision=1")
	if !strings.Contains(rev1, imageV1) || strings.Contains(rev1, imageV2) {
		t.Errorf("rollout history --revision=1:\n%s", rev1)
	}

	// Undo: the previous template, as revision 3; its pods replace the new ones.
	out := c.MustKubectl("rollout", "undo", "ds/agent")
	if !strings.Contains(out, "daemonset.apps/agent rolled back") {
		t.Errorf("rollout undo said %q", out)
	}
	rolloutStatus(t, c, "agent")
	waitPlacement(t, c, "agent", everywhere(imageV1, nodes...))
	ds := getDS(t, c, "agent")
	if img := ds.Spec.Template.Spec.Containers[0].Image; img != imageV1 {
		t.Errorf("template image after undo %s", img)
	}
	hist = c.MustKubectl("rollout", "history", "ds/agent")
	if !regexp.MustCompile(`(?s)REVISION\s+CHANGE-CAUSE\s+2\s+to 1.21\s+3\s+<none>`).MatchString(hist) {
		t.Errorf("rollout history after undo:\n%s", hist)
	}
	revs, err := c.Client.AppsV1().ControllerRevisions("default").List(t.Context(), metav1.ListOptions{LabelSelector: "app=agent"})
	if err != nil {
		t.Fatal(err)
	}
	if len(revs.Items) != 2 {
		t.Errorf("%d revisions after undo, want 2 (the first became the third)", len(revs.Items))
	}

	// Undo to a revision by number; one that never was is refused.
	c.MustKubectl("rollout", "undo", "ds/agent", "--to-revision=2")
	rolloutStatus(t, c, "agent")
	waitPlacement(t, c, "agent", everywhere(imageV2, nodes...))
	if _, err := c.Kubectl("rollout", "undo", "ds/agent", "--to-revision=42"); err == nil || !strings.Contains(err.Error(), "unable to find specified revision 42 in history") {
		t.Errorf("undo to a revision that never was: %v", err)
	}
	// Restart: the same template with a new annotation rolls every pod over.
	before := map[string]bool{}
	for _, p := range c.LivePods("app=agent") {
		before[p.Name] = true
	}
	if out := c.MustKubectl("rollout", "restart", "ds/agent"); !strings.Contains(out, "daemonset.apps/agent restarted") {
		t.Errorf("rollout restart said %q", out)
	}
	rolloutStatus(t, c, "agent")
	c.Eventually(60*time.Second, func() (bool, string) {
		pods := c.LivePods("app=agent")
		for _, p := range pods {
			if before[p.Name] {
				return false, "pod " + p.Name + " outlived the restart"
			}
		}
		return len(pods) == 3, "want 3 pods"
	})
	waitPlacement(t, c, "agent", everywhere(imageV2, nodes...))
	waitStatus(t, c, "agent", fullStatus(3))
	desc := c.MustKubectl("describe", "ds", "agent")
	for _, want := range []string{
		`(?m)^Desired Number of Nodes Scheduled: 3$`,
		`(?m)^Current Number of Nodes Scheduled: 3$`,
		`(?m)^Number of Nodes Scheduled with Up-to-date Pods: 3$`,
		`(?m)^Pods Status:\s+3 Running / 0 Waiting / 0 Succeeded / 0 Failed$`,
		`(?m)^\s+Normal\s+SuccessfulCreate\s+.*daemonset-controller\s+Created pod: agent-[a-z0-9]{5}$`,
	} {
		if !regexp.MustCompile(want).MatchString(desc) {
			t.Errorf("describe ds lacks %s:\n%s", want, desc)
		}
	}
	get := c.MustKubectl("get", "ds", "agent")
	if !regexp.MustCompile(`(?m)^agent\s+3\s+3\s+3\s+3\s+3\s+<none>\s+`).MatchString(get) {
		t.Errorf("get ds:\n%s", get)
	}
}

// A reconcile process killed (SIGKILL) in the middle of a rolling update, and another started:
// the rollout converges to one pod per node, never two on a node nor more than maxUnavailable
// nodes without a ready pod.
func TestDaemonSetRestartMidRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts reconcile processes")
	}
	nodes := []string{"node-1", "node-2", "node-3", "node-4", "node-5", "node-6"}
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: len(nodes), Listen: true, NoReconcilers: true, NoScheduler: true})
	p1 := reconcilerstest.StartProcess(t, c.LogURL(), "r1", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(t)})
	create(t, c, daemonSet("agent", imageV1, rolling(1, 0), func(ds *appsv1.DaemonSet) { ds.Spec.MinReadySeconds = 1 }))
	waitPlacement(t, c, "agent", everywhere(imageV1, nodes...))
	waitStatus(t, c, "agent", fullStatus(int32(len(nodes)))) // every old pod available: none is replaced at once
	l := watchPods(t, c, "agent")
	setImage(t, c, "agent", imageV2)
	c.Eventually(60*time.Second, func() (bool, string) {
		n := 0
		for _, p := range c.LivePods("app=agent") {
			if p.Spec.Containers[0].Image == imageV2 && ready(&p) {
				n++
			}
		}
		return n >= 2, "fewer than two new pods ready"
	})
	oldAtKill := 0
	for _, p := range c.LivePods("app=agent") {
		if p.Spec.Containers[0].Image == imageV1 {
			oldAtKill++
		}
	}
	p1.Kill()
	if oldAtKill == 0 {
		t.Fatal("the kill came after the rollout")
	}
	t.Logf("killed the reconcile process with %d old pods left", oldAtKill)
	reconcilerstest.StartProcess(t, c.LogURL(), "r2", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(t)})
	waitPlacement(t, c, "agent", everywhere(imageV2, nodes...))
	states := l.end()
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
	}
	if n := len(c.Pods("default", "app=agent")); n != len(nodes) {
		t.Errorf("%d pods in the end, want %d", n, len(nodes))
	}
}
