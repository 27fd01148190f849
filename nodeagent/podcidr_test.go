package nodeagent_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/nodeagent"
)

// simAgent is one node agent on the simulated runtime, with the given pod range, sharing the
// cluster's projection and registry.
type simAgent struct {
	a      *nodeagent.Agent
	cancel context.CancelFunc
	done   chan error
}

func startSimAgent(t *testing.T, c *cluster, name, cidr string) *simAgent {
	t.Helper()
	rt, err := sim.New(sim.Config{Subnet: cidr})
	if err != nil {
		t.Fatal(err)
	}
	a, err := nodeagent.New(nodeagent.Config{
		NodeName: name, NodeIP: "127.0.0.1", PodCIDR: cidr, Runtime: rt, RuntimeName: "sim",
		Capacity: nodeagent.SimCapacity(), VolumeDir: t.TempDir(),
		Registry: c.api.API.Registry(), Store: c.api.API.Store(), RenewInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	s := &simAgent{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Run(ctx) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop ends the agent and fails the test if it had failed.
func (s *simAgent) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	if err := <-s.done; err != nil {
		t.Errorf("agent %s: %v", s.a.NodeName(), err)
	}
	s.done <- nil // stop again is a no-op
}

// refused waits for the agent's Run to fail with a pod range conflict, and returns its message.
func (s *simAgent) refused(t *testing.T) string {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- nil
		if !errors.Is(err, nodeagent.ErrPodCIDRConflict) {
			t.Fatalf("agent %s: Run returned %v, want a pod range conflict", s.a.NodeName(), err)
		}
		return err.Error()
	case <-s.a.Ready():
		t.Fatalf("agent %s started, want it refused", s.a.NodeName())
	case <-time.After(20 * time.Second):
		t.Fatalf("agent %s neither started nor was refused", s.a.NodeName())
	}
	return ""
}

func (s *simAgent) ready(t *testing.T) {
	t.Helper()
	select {
	case <-s.a.Ready():
	case err := <-s.done:
		s.done <- nil
		t.Fatalf("agent %s: %v", s.a.NodeName(), err)
	case <-time.After(20 * time.Second):
		t.Fatalf("agent %s not ready", s.a.NodeName())
	}
}

func wantAll(t *testing.T, msg string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("message lacks %q:\n%s", p, msg)
		}
	}
}

// A node refuses a pod range another Ready node uses, or that a NotReady node's pods still
// have addresses in; it takes over one that no known pod has an address in; a node restarts
// with its own range but not with another; simulated nodes get ranges of their own.
func TestPodRangeConflicts(t *testing.T) {
	c := newCluster(t, apiservertest.Options{})
	a := startSimAgent(t, c, "a", "10.244.0.0/24")
	a.ready(t)

	// The same range, and one that overlaps it.
	for cidr, free := range map[string]string{"10.244.0.0/24": "10.244.1.0/24", "10.244.0.0/16": "10.245.0.0/16"} {
		msg := startSimAgent(t, c, "b", cidr).refused(t)
		wantAll(t, msg, "pod range "+cidr+` of node "b" overlaps 10.244.0.0/24, the pod range of node "a", which is Ready`, "--pod-cidr "+free)
	}
	if _, err := c.client.CoreV1().Nodes().Get(t.Context(), "b", metav1.GetOptions{}); err == nil {
		t.Error("a refused node registered anyway")
	}

	// A restart of the same node with its own range works; with another it is refused.
	a.stop(t)
	a = startSimAgent(t, c, "a", "10.244.0.0/24")
	a.ready(t)
	msg := startSimAgent(t, c, "a", "10.244.9.0/24").refused(t)
	wantAll(t, msg, `node "a" is registered with pod range 10.244.0.0/24`, "--pod-cidr 10.244.0.0/24", "kubectl delete node a")

	// Simulated nodes: ranges of their own, apart from the real default; a fleet whose range
	// is taken is refused as a whole.
	f, err := nodeagent.NewFleet(nodeagent.FleetConfig{
		Template: nodeagent.Config{Registry: c.api.API.Registry(), Store: c.api.API.Store()},
		Nodes:    2, Prefix: "bad", VolumeDir: t.TempDir(), Subnet: "10.243.255.0/24",
	})
	if err != nil {
		t.Fatal(err)
	}
	// 10.243.255.0/24 is free, 10.244.0.0/24 (its second node's) is a's.
	if err := f.Run(t.Context()); !errors.Is(err, nodeagent.ErrPodCIDRConflict) {
		t.Fatalf("fleet over a's range: %v", err)
	} else {
		wantAll(t, err.Error(), `node "bad-1"`, `node "a", which is Ready`, "simulated nodes", "--pod-cidr 10.244.1.0/24")
	}
	startFleet(t, c, 3, nil)
	nodes, err := c.client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var seen []netip.Prefix
	for _, n := range nodes.Items {
		if n.Spec.PodCIDR == "" || len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != n.Spec.PodCIDR {
			t.Errorf("node %s: podCIDR %q, podCIDRs %q", n.Name, n.Spec.PodCIDR, n.Spec.PodCIDRs)
			continue
		}
		p := netip.MustParsePrefix(n.Spec.PodCIDR)
		for _, q := range seen {
			if p.Overlaps(q) {
				t.Errorf("node %s's range %s overlaps %s", n.Name, p, q)
			}
		}
		seen = append(seen, p)
	}
	if len(seen) != 4 {
		t.Errorf("%d nodes with a range, want 4 (a, sim-0..2)", len(seen))
	}

	// a goes NotReady (as the node lifecycle reconciler marks it) with a pod that still has an
	// address in its range: b may not take the range over.
	a.stop(t)
	pod, err := c.client.CoreV1().Pods("default").Create(t.Context(), podOn("web", "a", "busybox"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.7", PodIPs: []corev1.PodIP{{IP: "10.244.0.7"}}}
	if _, err := c.client.CoreV1().Pods("default").UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := c.client.CoreV1().Nodes().Get(t.Context(), "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			n.Status.Conditions[i].Status, n.Status.Conditions[i].Reason = corev1.ConditionUnknown, "NodeStatusUnknown"
		}
	}
	if _, err := c.client.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	msg = startSimAgent(t, c, "b", "10.244.0.0/24").refused(t)
	wantAll(t, msg, `node "a", which is NotReady`, "default/web 10.244.0.7", "--pod-cidr 10.244.1.0/24", "kubectl delete node a")

	// Once no pod of a has an address in it, b takes the range over; then a may not come back on it.
	zero := int64(0)
	if err := c.client.CoreV1().Pods("default").Delete(t.Context(), "web", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	c.waitGone("default", "web", 10*time.Second)
	b := startSimAgent(t, c, "b", "10.244.0.0/24")
	b.ready(t)
	if n, err := c.client.CoreV1().Nodes().Get(t.Context(), "b", metav1.GetOptions{}); err != nil || n.Spec.PodCIDR != "10.244.0.0/24" {
		t.Errorf("node b: %v %v", n.Spec, err)
	}
	msg = startSimAgent(t, c, "a", "10.244.0.0/24").refused(t)
	wantAll(t, msg, `node "a"`, `node "b", which is Ready`)
}
