package e2e_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPodRanges is two node agents on one cluster: the second refuses the range the first (Ready)
// uses, saying which node holds it and what flag to pass; with a range of its own it runs, and
// restarts on it; stopped (NotReady) with a pod that still has an address in its range, its range
// is refused to a newcomer, which takes it over once that pod is gone; simulated nodes get ranges
// of their own, and a fleet asked for a taken one refuses. Every Node publishes its range in
// spec.podCIDR and spec.podCIDRs.
func TestPodRanges(t *testing.T) {
	m := newMachine(t)
	m.loadImages()
	up := m.start("up", slices.Concat([]string{"up", "--data-dir", m.dir, "--node-monitor-grace-period", nodeGrace}, m.apiFlags(), m.nodeFlags())...)
	m.waitAPI()
	m.waitNodeReady()
	// A second machine's worth of directory, bridge, pod range and streaming port, for agents
	// joining the first one's cluster.
	m2 := newMachine(t)
	m2.loadImages()
	agent := func(node, cidr string) *proc {
		return m2.start("agent-"+node, "agent", "--nats", m.natsURL(), "--data-dir", m2.dir, "--pki-dir", filepath.Join(m.dir, "pki"),
			"--keys-dir", filepath.Join(m.dir, "keys"),
			"--node-name", node, "--node-ip", "127.0.0.1", "--stream-listen", m2.streamAddr, "--bridge", m2.bridge,
			"--pod-cidr", cidr, "--containerd", "own", "--service-proxy=false", "--ingress-http-port=0", "--ingress-https-port=0")
	}
	nodeReady := func(node string) {
		t.Helper()
		eventually(t, 60*time.Second, func() error {
			if r := m.kubectl("wait", "--for=condition=Ready", "node/"+node, "--timeout=20s"); r.err != nil {
				return fmt.Errorf("node %s not ready: %s", node, r)
			}
			return nil
		})
	}
	refused := func(p *proc, want ...string) {
		t.Helper()
		log := p.waitExited(t, 60*time.Second)
		if p.cmd.ProcessState.ExitCode() == 0 {
			t.Errorf("logplane %s exited with 0, want a refusal", p.name)
		}
		for _, w := range want {
			if !strings.Contains(log, w) {
				t.Errorf("logplane %s's output lacks %q:\n%s", p.name, w, tail(p.log, 10))
			}
		}
	}

	// The first node's range, taken while it is Ready: refused, and never registered.
	refused(agent("e2e-node-2", m.podCIDR), fmt.Sprintf(`pod range %s of node "e2e-node-2" overlaps %s, the pod range of node "e2e-node", which is Ready`, m.podCIDR, m.podCIDR),
		"a range no other node uses, e.g. --pod-cidr ")
	if r := m.kubectl("get", "node", "e2e-node-2"); r.err == nil {
		t.Errorf("the refused node registered: %s", r)
	}

	// With a range of its own, it runs, its pods get addresses in it; it restarts on it.
	a2 := agent("e2e-node-2", m2.podCIDR)
	nodeReady("e2e-node-2")
	m.k("run", "x", "--image=logplane.local/hello:latest", `--overrides={"spec":{"nodeName":"e2e-node-2"}}`)
	m.k("wait", "--for=condition=Ready", "pod/x", "--timeout=60s")
	ip := m.jsonpath("pod/x", "{.status.podIP}")
	if !netip.MustParsePrefix(m2.podCIDR).Contains(netip.MustParseAddr(ip)) {
		t.Fatalf("pod x on e2e-node-2 has IP %s, outside the node's range %s", ip, m2.podCIDR)
	}
	a2.stop(t)
	a2 = agent("e2e-node-2", m2.podCIDR)
	nodeReady("e2e-node-2")

	// Stopped, it turns NotReady; its pod runs on with its address, so the range is not free.
	a2.stop(t)
	eventually(t, 60*time.Second, func() error {
		if s := m.get("nodes").row(t, "e2e-node-2")["STATUS"]; s != "NotReady" {
			return fmt.Errorf("e2e-node-2 is %s, want NotReady", s)
		}
		return nil
	})
	refused(agent("e2e-node-3", m2.podCIDR), `the pod range of node "e2e-node-2", which is NotReady but whose pods still have addresses in it (default/x `+ip+`)`,
		"kubectl delete node e2e-node-2")
	// Once the pod is gone from the cluster, a newcomer takes the range over (and, on the same
	// data directory, removes the pod's sandbox as an orphan).
	m.k("delete", "pod", "x", "--force", "--grace-period=0")
	a3 := agent("e2e-node-3", m2.podCIDR)
	nodeReady("e2e-node-3")
	eventually(t, 30*time.Second, func() error {
		if len(m2.shims()) > 0 {
			return fmt.Errorf("pod x's shim still runs: %v", m2.shims())
		}
		return nil
	})
	m.requireRunning(up, a3)

	// Simulated nodes: a fleet asked to start on a range in use refuses; by default its nodes get
	// ranges of their own, apart from the real nodes'.
	sim := func(name string, flags ...string) *proc {
		return m.start(name, slices.Concat([]string{"agent", "--runtime", "sim", "--nodes", "2", "--nats", m.natsURL(), "--data-dir", m.dir,
			"--stream-listen", freeAddr(t)}, flags)...)
	}
	refused(sim("sim-refused", "--pod-cidr", m.podCIDR), fmt.Sprintf(`pod range %s of node "sim-0" overlaps %s, the pod range of node "e2e-node", which is Ready`, m.podCIDR, m.podCIDR),
		"give the simulated nodes ranges no other node uses with --pod-cidr, the first node's range")
	sim("sim")
	nodeReady("sim-0")
	nodeReady("sim-1")
	out := m.k("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.podCIDR} {.spec.podCIDRs[*]}{"\n"}{end}`)
	ranges := map[string]netip.Prefix{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[1] != f[2] {
			t.Errorf("node line %q: want name, spec.podCIDR and the same single spec.podCIDRs", line)
			continue
		}
		ranges[f[0]] = netip.MustParsePrefix(f[1])
	}
	want := map[string]string{"e2e-node": m.podCIDR, "e2e-node-2": m2.podCIDR, "e2e-node-3": m2.podCIDR, "sim-0": "10.245.0.0/24", "sim-1": "10.245.1.0/24"}
	for node, cidr := range want {
		if ranges[node].String() != cidr {
			t.Errorf("node %s has range %v, want %s (all: %v)", node, ranges[node], cidr, ranges)
		}
	}
}
