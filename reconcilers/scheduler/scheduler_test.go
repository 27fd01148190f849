package scheduler_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/scheduler"
)

func podScheduled(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodScheduled {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// Pods of one ReplicaSet spread evenly; each gets a Scheduled event worded as Kubernetes words it,
// and its binding records the pod's own event as cause.
func TestBindsAndSpreads(t *testing.T) {
	c := startCluster(t)
	for i := 1; i <= 3; i++ {
		c.create(readyNode(fmt.Sprintf("node-%d", i), "4", "8Gi", 110), "nodes")
	}
	yes := true
	created := map[string]uint64{}
	for i := range 30 {
		name := fmt.Sprintf("web-%d", i)
		created[name] = c.create(pendingPod(name, "100m", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs-uid", Controller: &yes}}
		}), "pods")
	}
	per := map[string]int{}
	for name, seq := range created {
		node := c.waitBound(name)
		per[node]++
		p := c.pod(name)
		if cond := podScheduled(p); cond == nil || cond.Status != corev1.ConditionTrue {
			t.Errorf("%s: PodScheduled = %+v, want True", name, cond)
		}
		hist, err := c.log.History(t.Context(), eventlog.Key{Resource: "pods", Namespace: "default", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		last := hist[len(hist)-1].Event
		if last.GetReason() != "bind" || last.GetCause() != seq {
			t.Errorf("%s: last event reason %q cause %d, want bind caused by %d", name, last.GetReason(), last.GetCause(), seq)
		}
		ev := c.waitEvent(name, scheduler.ReasonScheduled)
		want := fmt.Sprintf("Successfully assigned default/%s to %s", name, node)
		if ev.Message != want || ev.Type != corev1.EventTypeNormal || ev.Source.Component != "default-scheduler" ||
			ev.InvolvedObject.Kind != "Pod" || ev.InvolvedObject.UID != p.UID || ev.Count != 1 {
			t.Errorf("%s: Scheduled event %+v, want %q from default-scheduler", name, ev, want)
		}
	}
	for node, n := range per {
		if n != 10 {
			t.Errorf("%s got %d pods, want 10 (all: %v)", node, n, per)
		}
	}
}

// Many pods bound at once never overfill a node: the pods assumed while their binding is in
// flight count as if bound.
func TestConcurrentBindsNeverOvercommit(t *testing.T) {
	metrics := prometheus.NewRegistry()
	c := startCluster(t, func(cfg *scheduler.Config, eo *engine.Options) { cfg.Workers = 64; eo.Metrics = metrics })
	c.create(readyNode("node-1", "4", "8Gi", 10), "nodes")
	c.create(readyNode("node-2", "1", "8Gi", 110), "nodes") // room for 4 pods of 250m
	for i := range 40 {
		c.create(pendingPod(fmt.Sprintf("p-%02d", i), "250m"), "pods")
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		s := c.sched.Stats()
		return s.Bound == 14, fmt.Sprintf("%+v", s)
	})
	// Any stray binding is written before counting.
	c.waitReconciled()
	per := map[string]int{}
	pending := 0
	for i := range 40 {
		name := fmt.Sprintf("p-%02d", i)
		if n := c.pod(name).Spec.NodeName; n != "" {
			per[n]++
		} else {
			pending++
		}
	}
	if per["node-1"] != 10 || per["node-2"] != 4 || pending != 26 {
		t.Fatalf("bound %v, %d pending; want node-1 10, node-2 4, 26 pending", per, pending)
	}
	ev := c.waitEvent("p-39", scheduler.ReasonFailedScheduling)
	if !strings.HasPrefix(ev.Message, "0/2 nodes are available:") {
		t.Errorf("FailedScheduling message %q", ev.Message)
	}
	if got := metricValue(t, metrics, "scheduler_pending_pods", "queue", "unschedulable"); got != 26 {
		t.Errorf("scheduler_pending_pods{queue=unschedulable} = %v, want 26", got)
	}
	if got := metricValue(t, metrics, "scheduler_schedule_attempts_total", "result", "scheduled"); got != 14 {
		t.Errorf("scheduler_schedule_attempts_total{result=scheduled} = %v, want 14", got)
	}
}

// A pod that fits nowhere gets PodScheduled=False/Unschedulable and a FailedScheduling warning
// with Kubernetes' wording; when a node that fits arrives, it is bound there.
func TestUnschedulableUntilNodeArrives(t *testing.T) {
	c := startCluster(t)
	c.create(readyNode("node-1", "1", "8Gi", 110), "nodes")
	c.create(readyNode("node-2", "4", "8Gi", 110, func(n *corev1.Node) {
		n.Spec.Taints = []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule}}
		n.Status.Conditions[0].Status = corev1.ConditionUnknown
	}), "nodes")
	c.create(readyNode("node-3", "4", "8Gi", 110, func(n *corev1.Node) {
		n.Spec.Taints = []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}}
		n.Status.Conditions[0].Status = corev1.ConditionUnknown
	}), "nodes")
	c.create(pendingPod("nginx", "2"), "pods")

	want := "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. " +
		"preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
	ev := c.waitEvent("nginx", scheduler.ReasonFailedScheduling)
	if ev.Message != want || ev.Type != corev1.EventTypeWarning || ev.Source.Component != "default-scheduler" {
		t.Fatalf("FailedScheduling event: %s %q from %q\nwant Warning %q", ev.Type, ev.Message, ev.Source.Component, want)
	}
	eventually(t, 5*time.Second, func() (bool, string) {
		cond := podScheduled(c.pod("nginx"))
		return cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable && cond.Message == want,
			fmt.Sprintf("PodScheduled = %+v", cond)
	})

	c.create(readyNode("node-4", "4", "8Gi", 110), "nodes")
	if node := c.waitBound("nginx"); node != "node-4" {
		t.Fatalf("bound to %s, want node-4", node)
	}
	eventually(t, 5*time.Second, func() (bool, string) {
		cond := podScheduled(c.pod("nginx"))
		return cond != nil && cond.Status == corev1.ConditionTrue, fmt.Sprintf("PodScheduled = %+v", cond)
	})
}

// kubectl cordon keeps new pods off a node; uncordon lets the waiting ones in.
func TestCordonUncordon(t *testing.T) {
	c := startCluster(t)
	c.create(readyNode("node-1", "4", "8Gi", 110, func(n *corev1.Node) { n.Spec.Unschedulable = true }), "nodes")
	c.create(pendingPod("nginx", ""), "pods")
	ev := c.waitEvent("nginx", scheduler.ReasonFailedScheduling)
	want := "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
	if ev.Message != want {
		t.Fatalf("message %q, want %q", ev.Message, want)
	}
	c.modifyNode("node-1", "", func(n *corev1.Node) { n.Spec.Unschedulable = false })
	if node := c.waitBound("nginx"); node != "node-1" {
		t.Fatalf("bound to %s", node)
	}
}

// A node that becomes Ready takes the pods that waited for it.
func TestNodeBecomesReady(t *testing.T) {
	c := startCluster(t)
	c.create(readyNode("node-1", "4", "8Gi", 110, func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }), "nodes")
	c.create(pendingPod("nginx", ""), "pods")
	ev := c.waitEvent("nginx", scheduler.ReasonFailedScheduling)
	if !strings.Contains(ev.Message, "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }") {
		t.Fatalf("message %q", ev.Message)
	}
	c.modifyNode("node-1", "status", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionTrue })
	c.waitBound("nginx")
}

// When a bound pod goes, the room it frees goes to a pod that waited for it.
func TestFreedRoomIsReused(t *testing.T) {
	c := startCluster(t)
	c.create(readyNode("node-1", "1", "8Gi", 110), "nodes")
	c.create(pendingPod("big", "800m"), "pods")
	c.waitBound("big")
	c.create(pendingPod("next", "800m"), "pods")
	c.waitEvent("next", scheduler.ReasonFailedScheduling)

	// Ending the pod frees its room, as deleting it would.
	c.modifyPod("big", "status", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
	c.waitBound("next")
}

// The count of a FailedScheduling event that repeats itself grows on the same event.
func TestFailedSchedulingRepeats(t *testing.T) {
	c := startCluster(t, func(cfg *scheduler.Config, _ *engine.Options) {
		cfg.EventRepeat = 50 * time.Millisecond
		cfg.MaxBackoff = 40 * time.Millisecond
	})
	c.create(readyNode("node-1", "1", "8Gi", 110), "nodes")
	c.create(pendingPod("nginx", "2"), "pods")
	eventually(t, 10*time.Second, func() (bool, string) {
		evs := c.events("nginx")
		if len(evs) != 1 {
			return false, fmt.Sprintf("%d events", len(evs))
		}
		return evs[0].Count >= 3 && evs[0].LastTimestamp.After(evs[0].FirstTimestamp.Time), fmt.Sprintf("count %d", evs[0].Count)
	})
}

// Pods of another scheduler, pods already on a node, and pods being deleted are left alone.
func TestLeavesOthersAlone(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	c := startCluster(t, func(_ *scheduler.Config, eo *engine.Options) { eo.Clock = clk })
	// With no node yet, nothing can be bound while the pods are set up.
	c.create(pendingPod("other", "", func(p *corev1.Pod) { p.Spec.SchedulerName = "my-scheduler" }), "pods")
	c.create(pendingPod("pinned", "", func(p *corev1.Pod) { p.Spec.NodeName = "node-9" }), "pods")
	c.create(pendingPod("going", "", func(p *corev1.Pod) { p.Finalizers = []string{"example.com/hold"} }), "pods")
	c.deletePod("going")
	if c.pod("going").DeletionTimestamp == nil {
		t.Fatal("pod with a finalizer not marked deleted")
	}
	c.create(pendingPod("gated", "", func(p *corev1.Pod) {
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/wait"}}
	}), "pods")
	c.create(readyNode("node-1", "4", "8Gi", 110), "nodes")
	c.create(pendingPod("marker", ""), "pods")
	c.waitBound("marker")
	eventually(t, 5*time.Second, func() (bool, string) {
		cond := podScheduled(c.pod("gated"))
		return cond != nil && cond.Reason == "SchedulingGated" && cond.Message == "Scheduling is blocked due to non-empty scheduling gates",
			fmt.Sprintf("gated: PodScheduled %+v", cond)
	})
	c.waitReconciled()
	clk.Step(time.Minute) // any back-off is over
	c.waitReconciled()
	if n := c.pod("other").Spec.NodeName; n != "" {
		t.Errorf("pod of another scheduler bound to %s", n)
	}
	if n := c.pod("pinned").Spec.NodeName; n != "node-9" {
		t.Errorf("pinned pod moved to %s", n)
	}
	if n := c.pod("going").Spec.NodeName; n != "" {
		t.Errorf("pod being deleted bound to %s", n)
	}
	if n := c.pod("gated").Spec.NodeName; n != "" {
		t.Errorf("gated pod bound to %s", n)
	}
	c.modifyPod("gated", "", func(p *corev1.Pod) { p.Spec.SchedulingGates = nil })
	c.waitBound("gated")
}

// A scheduler that starts late (or restarts) catches up from the log: pods created while it was
// down are bound, and pods bound before count against their nodes.
func TestCatchesUpAfterRestart(t *testing.T) {
	first := startCluster(t)
	first.create(readyNode("node-1", "1", "8Gi", 110), "nodes")
	first.create(pendingPod("a", "600m"), "pods")
	first.waitBound("a")
	first.stop()

	second := newCluster(t, first.log)
	second.create(readyNode("node-2", "1", "8Gi", 110), "nodes")
	second.create(pendingPod("b", "600m"), "pods")
	if node := second.waitBound("b"); node != "node-2" {
		t.Fatalf("b bound to %s, want node-2 (node-1 has a)", node)
	}
}

func TestSetCondition(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(100, 0))
	t1 := metav1.NewTime(time.Unix(200, 0))
	st := corev1.PodStatus{}
	if !scheduler.SetCondition(&st, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "a", LastTransitionTime: t0}) {
		t.Fatal("adding reported no change")
	}
	if scheduler.SetCondition(&st, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "a", LastTransitionTime: t1}) {
		t.Fatal("the same condition reported a change")
	}
	scheduler.SetCondition(&st, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "b", LastTransitionTime: t1})
	if c := st.Conditions[0]; c.Message != "b" || !c.LastTransitionTime.Equal(&t0) {
		t.Fatalf("message change: %+v, want message b and transition time kept", c)
	}
	scheduler.SetCondition(&st, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t1})
	if c := st.Conditions[0]; c.Status != corev1.ConditionTrue || !c.LastTransitionTime.Equal(&t1) || len(st.Conditions) != 1 {
		t.Fatalf("status change: %+v", st.Conditions)
	}
}

// Among replicas sharing the reconcilers' leases, one schedules (the holder of partition 0);
// when it stops, another takes over and binds what comes next.
func TestOneReplicaSchedulesAndAnotherTakesOver(t *testing.T) {
	l := eventlogtest.Open(t)
	ls, err := l.Leases(t.Context(), "reconcilers", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	replicas := map[string]*cluster{}
	for _, name := range []string{"a", "b"} {
		replicas[name] = newReplica(t, l, engine.Options{Leases: ls, Holder: name, Partitions: 8})
	}
	c := replicas["a"]
	c.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, "namespaces")
	c.create(readyNode("node-1", "8", "8Gi", 110), "nodes")
	holder := func() string {
		for name, r := range replicas {
			if r.engine.Partitions().OwnsPartition(0) {
				return name
			}
		}
		return ""
	}
	eventually(t, 10*time.Second, func() (bool, string) { return holder() != "", "nobody holds partition 0" })
	for i := range 20 {
		c.create(pendingPod(fmt.Sprintf("p-%d", i), "10m"), "pods")
	}
	for i := range 20 {
		c.waitBound(fmt.Sprintf("p-%d", i))
	}
	// A binding is in the store a moment before the scheduler counts it.
	var first string
	eventually(t, 5*time.Second, func() (bool, string) {
		counts := map[string]int64{}
		for name, r := range replicas {
			counts[name] = r.sched.Stats().Bound
			if counts[name] == 20 {
				first = name
			}
		}
		return counts["a"]+counts["b"] == 20 && first != "", fmt.Sprintf("bound per replica %v, want 20 by one of them", counts)
	})
	if h := holder(); h != first {
		t.Fatalf("replica %s bound the pods, but %s holds partition 0", first, h)
	}

	replicas[first].stop()
	delete(replicas, first)
	var other *cluster
	for _, r := range replicas {
		other = r
	}
	for i := 20; i < 30; i++ {
		other.create(pendingPod(fmt.Sprintf("p-%d", i), "10m"), "pods")
	}
	for i := 20; i < 30; i++ {
		other.waitBound(fmt.Sprintf("p-%d", i))
	}
	eventually(t, 5*time.Second, func() (bool, string) {
		got := other.sched.Stats().Bound
		return got == 10, fmt.Sprintf("the replica that took over bound %d pods, want 10", got)
	})
}

// metricValue returns the value of the counter or gauge name whose label has value.
func metricValue(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}
