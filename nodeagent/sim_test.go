package nodeagent_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/nodeagent"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/registry"
)

// startFleet runs n simulated nodes against the cluster's API server
// process (sharing its projection and registry) until the test ends.
func startFleet(t *testing.T, c *cluster, n int, tweak func(*nodeagent.FleetConfig)) *nodeagent.Fleet {
	t.Helper()
	cfg := nodeagent.FleetConfig{
		Template: nodeagent.Config{
			Registry:      c.api.API.Registry(),
			Store:         c.api.API.Store(),
			RenewInterval: 200 * time.Millisecond,
			BackOff:       200 * time.Millisecond,
			MaxBackOff:    time.Second,
		},
		Nodes:     n,
		Prefix:    "sim",
		VolumeDir: t.TempDir(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	f, err := nodeagent.NewFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fleet: %v", err)
		}
	})
	rctx, rcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer rcancel()
	if err := f.Ready(rctx); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSimNodesRegisterAndHeartbeat(t *testing.T) {
	c := newCluster(t, apiservertest.Options{})
	startFleet(t, c, 3, nil)

	out := c.must("", []string{"sim-0", "sim-1", "sim-2", "Ready", nodeagent.KubeletVersion}, "get", "nodes")
	if strings.Contains(out, "NotReady") {
		t.Fatalf("a node is not ready:\n%s", out)
	}
	n, err := c.client.CoreV1().Nodes().Get(t.Context(), "sim-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.PodCIDR != "10.245.1.0/24" {
		t.Errorf("podCIDR %q", n.Spec.PodCIDR)
	}
	want := map[corev1.NodeConditionType]corev1.ConditionStatus{
		corev1.NodeReady: corev1.ConditionTrue, corev1.NodeMemoryPressure: corev1.ConditionFalse,
		corev1.NodeDiskPressure: corev1.ConditionFalse, corev1.NodePIDPressure: corev1.ConditionFalse,
	}
	for _, cond := range n.Status.Conditions {
		if want[cond.Type] != cond.Status {
			t.Errorf("condition %s = %s", cond.Type, cond.Status)
		}
		delete(want, cond.Type)
	}
	if len(want) > 0 {
		t.Errorf("conditions missing: %v", want)
	}
	if n.Status.NodeInfo.ContainerRuntimeVersion != "sim://0.1.0" || n.Status.NodeInfo.KernelVersion == "" || n.Status.NodeInfo.OSImage == "" {
		t.Errorf("nodeInfo %+v", n.Status.NodeInfo)
	}
	if n.Status.Allocatable.Pods().Value() != 110 || n.Status.Capacity.Cpu().Value() != 32 {
		t.Errorf("capacity %v allocatable %v", n.Status.Capacity, n.Status.Allocatable)
	}
	if len(n.Status.Addresses) != 2 || n.Status.Addresses[0].Type != corev1.NodeInternalIP || n.Status.Addresses[0].Address != "127.0.0.1" {
		t.Errorf("addresses %v", n.Status.Addresses)
	}

	c.eventually(10*time.Second, []string{"Starting kubelet.", "NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID",
		"Node sim-1 status is now: NodeReady"}, "describe", "node", "sim-1")

	// A node marked Unknown (as the node lifecycle reconciler does when leases stop) while its
	// agent runs is set Ready again at the next heartbeat.
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			n.Status.Conditions[i].Status, n.Status.Conditions[i].Reason = corev1.ConditionUnknown, "NodeStatusUnknown"
		}
	}
	if _, err := c.client.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.eventually(10*time.Second, []string{"sim-1   Ready"}, "get", "node", "sim-1")

	// The Lease is renewed.
	lease := func() *coordinationv1.Lease {
		l, err := c.client.CoordinationV1().Leases("kube-node-lease").Get(t.Context(), "sim-2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	first := lease()
	if first.Spec.HolderIdentity == nil || *first.Spec.HolderIdentity != "sim-2" || *first.Spec.LeaseDurationSeconds != 40 {
		t.Fatalf("lease %+v", first.Spec)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !lease().Spec.RenewTime.After(first.Spec.RenewTime.Time) {
		if time.Now().After(deadline) {
			t.Fatal("lease not renewed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSimPodLifecycle(t *testing.T) {
	c := newCluster(t, apiservertest.Options{})
	startFleet(t, c, 2, func(cfg *nodeagent.FleetConfig) { cfg.PodEvents = true })

	if _, err := c.client.CoreV1().ConfigMaps("default").Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"greeting": "hi"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := podOn("web", "sim-1", "example/web:1", func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "G", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "greeting"}}}}
	})
	if _, err := c.client.CoreV1().Pods("default").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := c.waitPod("default", "web", 10*time.Second, "Running", running)
	if !strings.HasPrefix(p.Status.PodIP, "10.245.1.") || p.Status.HostIP != "127.0.0.1" || p.Status.StartTime == nil {
		t.Errorf("status: %s hostIP %s", describe(p), p.Status.HostIP)
	}
	c.waitEvent("default", "web", "Started", 5*time.Second)
	evs := c.events("default", "web")
	for _, want := range []string{"Pulling", "Pulled", "Created", "Started"} {
		if !slices.Contains(evs, want) {
			t.Errorf("events %v lack %s", evs, want)
		}
	}
	c.must("", []string{"web", "Running", "10.245.1.", "sim-1"}, "get", "pods", "-o", "wide")
	c.must("", []string{"Node:", "sim-1/127.0.0.1", "Status:", "Running", "Started", "Started container main", "kubelet"}, "describe", "pod", "web")

	// Status writes are status-only events by the node, caused by the pod revision acted on;
	// the agent never writes the spec.
	hist, err := c.api.Log.History(t.Context(), eventlog.Key{Resource: "pods", Namespace: "default", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[uint64]bool{}
	statuses := 0
	for _, rec := range hist {
		ev := rec.Event
		if ev.GetActor().GetKind() == eventv1.ActorKind_ACTOR_KIND_NODE {
			if ev.GetActor().GetName() != "sim-1" || ev.GetReason() != registry.ReasonStatus || !seqs[ev.GetCause()] {
				t.Errorf("event %d by node: actor %v reason %q cause %d (earlier revisions %v)", rec.Seq, ev.GetActor(), ev.GetReason(), ev.GetCause(), seqs)
			}
			statuses++
		}
		seqs[rec.Seq] = true
	}
	if statuses == 0 {
		t.Errorf("no status written by the node in %d events", len(hist))
	}

	// A pod on no node of this fleet is left alone.
	if _, err := c.client.CoreV1().Pods("default").Create(t.Context(), podOn("elsewhere", "other-node", "x"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Graceful deletion ends with the agent removing the pod.
	c.must("", []string{`pod "web" deleted`}, "delete", "pod", "web")
	c.waitGone("default", "web", 10*time.Second)
	c.waitEvent("default", "web", "Killing", 5*time.Second)
	if p, err := c.client.CoreV1().Pods("default").Get(t.Context(), "elsewhere", metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodPending {
		t.Errorf("pod of another node: %v %s", err, describe(p))
	}
}

func TestSimCrashLoopAndMissingConfig(t *testing.T) {
	c := newCluster(t, apiservertest.Options{})
	startFleet(t, c, 1, func(cfg *nodeagent.FleetConfig) {
		cfg.Sim = func(int) sim.Config {
			return sim.Config{Exit: func(cc runtimeapi.ContainerConfig) (time.Duration, int32, bool) {
				switch cc.Image {
				case "crash":
					return 10 * time.Millisecond, 3, true
				case "done":
					return 300 * time.Millisecond, 0, true
				}
				return 0, 0, false
			}}
		}
	})
	if _, err := c.client.CoreV1().Pods("default").Create(t.Context(), podOn("crash", "sim-0", "crash"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitPod("default", "crash", 20*time.Second, "in CrashLoopBackOff after restarts", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 2 &&
			p.Status.ContainerStatuses[0].State.Waiting != nil && p.Status.ContainerStatuses[0].State.Waiting.Reason == "CrashLoopBackOff"
	})
	// The pod leaves CrashLoopBackOff at each restart (the test's back-off is at most 1 s), so
	// kubectl may catch it Running: look until it shows the state.
	c.eventually(20*time.Second, []string{"crash", "CrashLoopBackOff"}, "get", "pods")
	c.waitEvent("default", "crash", "BackOff", 5*time.Second)
	// Simulated nodes are quiet by default, as kwok's: Warnings only.
	for _, normal := range []string{"Pulling", "Pulled", "Created", "Started"} {
		if evs := c.events("default", "crash"); slices.Contains(evs, normal) {
			t.Errorf("a quiet simulated node recorded %s: %v", normal, evs)
		}
	}

	// Init containers, then a container that completes: Init:0/1, Running, Completed.
	job := podOn("job", "sim-0", "done", func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "done"}}
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
	})
	if _, err := c.client.CoreV1().Pods("default").Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.eventually(10*time.Second, []string{"job", "0/1", "Completed"}, "get", "pod", "job")
	p := c.waitPod("default", "job", 5*time.Second, "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if len(p.Status.InitContainerStatuses) != 1 || p.Status.InitContainerStatuses[0].State.Terminated == nil ||
		p.Status.InitContainerStatuses[0].State.Terminated.Reason != "Completed" {
		t.Errorf("init container status: %+v", p.Status.InitContainerStatuses)
	}

	nocfg := podOn("nocfg", "sim-0", "img", func(p *corev1.Pod) {
		p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}}}
	})
	if _, err := c.client.CoreV1().Pods("default").Create(t.Context(), nocfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitPod("default", "nocfg", 10*time.Second, "CreateContainerConfigError", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "CreateContainerConfigError"
	})
	c.must("", []string{"CreateContainerConfigError"}, "get", "pod", "nocfg")
	// Once the ConfigMap exists, the container starts.
	if _, err := c.client.CoreV1().ConfigMaps("default").Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "absent"}, Data: map[string]string{"A": "1"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitPod("default", "nocfg", 10*time.Second, "Running", running)
}

// The agent's heartbeat follows its clock: stepped by a renewal interval, the clock brings a
// renewal of the Lease stamped with the clock's time, and the Node's status is written again
// once the status interval has passed on that clock.
func TestHeartbeatOnTheAgentsClock(t *testing.T) {
	c := newCluster(t, apiservertest.Options{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := testingclock.NewFakeClock(t0)
	startFleet(t, c, 1, func(cfg *nodeagent.FleetConfig) {
		cfg.Template.Clock = clk
		cfg.Template.RenewInterval = 10 * time.Second
		cfg.Template.StatusInterval = 30 * time.Second
	})
	lease := func() *coordinationv1.Lease {
		l, err := c.client.CoordinationV1().Leases("kube-node-lease").Get(t.Context(), "sim-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	heartbeat := func() time.Time {
		n, err := c.client.CoreV1().Nodes().Get(t.Context(), "sim-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.LastHeartbeatTime.Time
			}
		}
		t.Fatalf("no Ready condition: %v", n.Status.Conditions)
		return time.Time{}
	}
	if got := lease().Spec.RenewTime; got == nil || !got.Time.Equal(t0) {
		t.Fatalf("lease renewed at %v, want the clock's %v", got, t0)
	}
	if got := heartbeat(); !got.Equal(t0) {
		t.Fatalf("node heartbeat at %v, want %v", got, t0)
	}
	// renewedAt waits a little for the lease to be renewed at the clock's time.
	renewedAt := func(want time.Time) bool {
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got := lease().Spec.RenewTime; got != nil && got.Time.Equal(want) {
				return true
			}
		}
		return false
	}
	for i := 1; i <= 3; i++ {
		clk.Step(10 * time.Second)
		// The heartbeat's ticker starts just after the agent is ready: a first step may come
		// before it, and then brings nothing.
		if !renewedAt(clk.Now()) && i > 1 {
			t.Fatalf("the clock at %v: lease renewed at %v", clk.Now(), lease().Spec.RenewTime)
		}
	}
	// 30 s on the agent's clock: the status interval is over, the heartbeat written again.
	deadline := time.Now().Add(10 * time.Second)
	for got := heartbeat(); !got.Equal(t0.Add(30 * time.Second)); got = heartbeat() {
		if time.Now().After(deadline) {
			t.Fatalf("node heartbeat at %v, want %v", got, t0.Add(30*time.Second))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
