package nodelifecycle_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/sets"
)

// myrecovery is the wiki's failure-and-recovery deployment, tolerating an unreachable node for
// toleration seconds (Kubernetes' default is 300).
func myrecovery(toleration int) string {
	return fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: myrecovery
  labels: {app: myrecovery}
spec:
  replicas: 2
  selector:
    matchLabels: {app: myrecovery}
  template:
    metadata:
      labels: {app: myrecovery}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: %[1]d}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: %[1]d}
      containers:
      - name: apache
        image: latest123/apache
        ports:
        - containerPort: 80
`, toleration)
}

func start(t *testing.T, nodes int, grace time.Duration) *reconcilerstest.Cluster {
	return reconcilerstest.Start(t, reconcilerstest.Options{Nodes: nodes,
		NodeOptions: reconcilerstest.NodeOptions{RenewInterval: 200 * time.Millisecond},
		Reconcilers: func(o *sets.Options) { o.NodeGracePeriod = grace }})
}

type podView struct{ name, node, phase string }

// running lists the pods of app=myrecovery that are not being deleted and run.
func running(t *testing.T, c *reconcilerstest.Cluster) []podView {
	t.Helper()
	var out []podView
	for _, p := range c.LivePods("app=myrecovery") {
		if p.Status.Phase == corev1.PodRunning {
			out = append(out, podView{p.Name, p.Spec.NodeName, string(p.Status.Phase)})
		}
	}
	return out
}

func nodesOf(ps []podView) map[string]int {
	out := map[string]int{}
	for _, p := range ps {
		out[p.node]++
	}
	return out
}

// The wiki's failure and recovery walkthrough: stop the agent of the node running a pod, and
// the pod runs on another node once the node's grace period and the pod's toleration have run
// out; stop a second node, and both run on the third; bring the first back, and it is Ready
// again, untainted, and takes pods.
func TestNodeFailureAndRecovery(t *testing.T) {
	c := start(t, 3, 2*time.Second)
	c.MustApply(myrecovery(2))
	c.Eventually(30*time.Second, func() (bool, string) {
		ps := running(t, c)
		return len(ps) == 2 && len(nodesOf(ps)) == 2, fmt.Sprint(ps)
	})
	victim := running(t, c)[0].node
	c.Nodes.Stop(victim)
	lastRenewal := c.Nodes.LastRenewal(victim)

	// The node goes NotReady, tainted unreachable, and its pod not ready.
	c.Eventually(10*time.Second, func() (bool, string) {
		out, err := c.Kubectl("get", "node", victim, "--no-headers")
		return err == nil && strings.Fields(out)[1] == "NotReady", out
	})
	desc := c.MustKubectl("describe", "node", victim)
	for _, re := range []string{`Taints:\s+node.kubernetes.io/unreachable:NoExecute\s+node.kubernetes.io/unreachable:NoSchedule`,
		`Ready\s+Unknown\s+.*NodeStatusUnknown\s+Kubelet stopped posting node status.`} {
		if !regexp.MustCompile(re).MatchString(desc) {
			t.Errorf("kubectl describe node lacks %s:\n%s", re, desc)
		}
	}
	// Its pod is replaced on another node after the toleration.
	c.Eventually(20*time.Second, func() (bool, string) {
		ps := running(t, c)
		return len(ps) == 2 && nodesOf(ps)[victim] == 0, fmt.Sprint(ps)
	})
	if d := time.Since(lastRenewal); d < 4*time.Second {
		t.Errorf("the pod moved %v after its node's last lease renewal, before grace (2s) and toleration (2s)", d)
	}
	out := c.MustKubectl("get", "pods", "-o", "wide")
	if !strings.Contains(out, "Terminating") {
		t.Logf("no pod left terminating on the dead node:\n%s", out) // it stays until the node comes back
	}
	events := c.MustKubectl("get", "events", "-A")
	for _, want := range []string{"TaintManagerEviction", "Marking for deletion Pod default/myrecovery-", "NodeNotReady"} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}

	// A second node stops: both pods end on the last one.
	second := ""
	for _, n := range c.Nodes.Names() {
		if n != victim && nodesOf(running(t, c))[n] > 0 && second == "" {
			second = n
		}
	}
	if second == "" {
		t.Fatalf("no second node with a pod: %v", running(t, c))
	}
	c.Nodes.Stop(second)
	c.Eventually(20*time.Second, func() (bool, string) {
		ps := running(t, c)
		return len(ps) == 2 && len(nodesOf(ps)) == 1 && nodesOf(ps)[victim] == 0 && nodesOf(ps)[second] == 0, fmt.Sprint(ps)
	})

	// The first node comes back: Ready, untainted, and the pods left terminating on it are gone.
	if err := c.Nodes.Restart(context.Background(), victim); err != nil {
		t.Fatal(err)
	}
	c.Eventually(10*time.Second, func() (bool, string) {
		n, err := c.Client.CoreV1().Nodes().Get(context.Background(), victim, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		out, _ := c.Kubectl("get", "node", victim, "--no-headers")
		return len(n.Spec.Taints) == 0 && strings.Fields(out)[1] == "Ready", fmt.Sprintf("%v %q", n.Spec.Taints, out)
	})
	c.Eventually(10*time.Second, func() (bool, string) {
		out, err := c.Kubectl("get", "pods", "-o", "wide", "--field-selector", "spec.nodeName="+victim)
		return err == nil && out == "", out
	})
	// Delete a pod: its replacement may go to the node that came back.
	c.MustKubectl("delete", "pod", running(t, c)[0].name)
	c.Eventually(20*time.Second, func() (bool, string) {
		ps := running(t, c)
		return len(ps) == 2 && nodesOf(ps)[victim] == 1, fmt.Sprint(ps)
	})
}

// Without tolerations of their own, pods get the API server's default ones (300 s) and stay on a
// node that has just gone NotReady.
func TestDefaultTolerationsKeepPods(t *testing.T) {
	c := start(t, 2, time.Second)
	c.MustKubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
	c.Eventually(30*time.Second, func() (bool, string) {
		out, err := c.Kubectl("get", "pods", "-l", "app=web", "--no-headers")
		return err == nil && strings.Count(out, "Running") == 2, out
	})
	pods, err := c.Client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	p := pods.Items[0]
	found := 0
	for _, tol := range p.Spec.Tolerations {
		if (tol.Key == corev1.TaintNodeNotReady || tol.Key == corev1.TaintNodeUnreachable) && tol.Effect == corev1.TaintEffectNoExecute &&
			tol.TolerationSeconds != nil && *tol.TolerationSeconds == 300 {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("pod tolerations %+v, want the default not-ready and unreachable ones of 300 s", p.Spec.Tolerations)
	}
	c.Nodes.Stop(p.Spec.NodeName)
	c.Eventually(10*time.Second, func() (bool, string) {
		n, err := c.Client.CoreV1().Nodes().Get(context.Background(), p.Spec.NodeName, metav1.GetOptions{})
		return err == nil && len(n.Spec.Taints) == 2, fmt.Sprint(n.Spec.Taints)
	})
	// Marked not ready, not deleted.
	c.Eventually(10*time.Second, func() (bool, string) {
		cur, err := c.Client.CoreV1().Pods("default").Get(context.Background(), p.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cd := range cur.Status.Conditions {
			if cd.Type == corev1.PodReady && cd.Status == corev1.ConditionFalse {
				return cur.DeletionTimestamp == nil, "deleted"
			}
		}
		return false, fmt.Sprint(cur.Status.Conditions)
	})
	c.WaitReconciled() // the node lifecycle has handled the taints and the pod's condition
	if cur, err := c.Client.CoreV1().Pods("default").Get(context.Background(), p.Name, metav1.GetOptions{}); err != nil || cur.DeletionTimestamp != nil {
		t.Errorf("pod evicted before its 300 s toleration: %v", err)
	}
}

// kubectl drain cordons the node (the unschedulable taint) and evicts its pods, which their
// controllers recreate elsewhere; kubectl uncordon undoes the cordon.
func TestDrain(t *testing.T) {
	c := start(t, 3, 10*time.Second)
	c.MustApply(myrecovery(300))
	c.Eventually(30*time.Second, func() (bool, string) {
		ps := running(t, c)
		return len(ps) == 2, fmt.Sprint(ps)
	})
	node := running(t, c)[0].node
	out, err := c.Kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
	if err != nil {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	for _, want := range []string{"node/" + node + " cordoned", "evicting pod default/myrecovery-", "node/" + node + " drained"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl drain said %q, without %q", out, want)
		}
	}
	c.Eventually(20*time.Second, func() (bool, string) {
		ps := running(t, c)
		return len(ps) == 2 && nodesOf(ps)[node] == 0, fmt.Sprint(ps)
	})
	get := c.MustKubectl("get", "node", node, "--no-headers")
	if f := strings.Fields(get); len(f) < 2 || f[1] != "Ready,SchedulingDisabled" {
		t.Errorf("get node: %q", get)
	}
	c.Eventually(10*time.Second, func() (bool, string) {
		n, err := c.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		return err == nil && len(n.Spec.Taints) == 1 && n.Spec.Taints[0].Key == corev1.TaintNodeUnschedulable, fmt.Sprint(n.Spec.Taints)
	})
	c.MustKubectl("uncordon", node)
	c.Eventually(10*time.Second, func() (bool, string) {
		n, err := c.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		return err == nil && len(n.Spec.Taints) == 0 && !n.Spec.Unschedulable, fmt.Sprint(n.Spec.Taints)
	})
}
