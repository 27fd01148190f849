package serviceproxy_test

import (
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/dataplane/serviceproxy"
)

// A ClusterIP spreads TCP connections and UDP flows over the ready
// endpoints, from a pod (source kept) and from the node itself (through
// the output hook, with the Service range routed to the TUN device).
func TestClusterIPBalancesOverEndpoints(t *testing.T) {
	n := newTestNet(t, 4)
	p := n.newProxier(t)
	p.UpdateService(service("web", "10.96.0.10"))
	if err := p.UpdateEndpointSlice(slice("web", "web-1", eps(n.pods[0], n.pods[1], n.pods[2])...)); err != nil {
		t.Fatal(err)
	}
	mustSync(t, p)

	client := n.pods[3]
	got := count(t, client.ns, "10.96.0.10:80", 300)
	for _, pd := range n.pods[:3] {
		if c := got[pd.name]; c < 60 || c > 140 {
			t.Errorf("%s got %d of 300 connections, want about 100: %v", pd.name, c, got)
		}
	}
	if got[client.name] != 0 {
		t.Errorf("the client, not an endpoint, answered: %v", got)
	}
	a, err := dialTCP(client.ns, "10.96.0.10:80")
	if err != nil {
		t.Fatal(err)
	}
	if a.source != client.ip {
		t.Errorf("endpoint saw source %s, want the pod's own %s (no masquerade inside the cluster)", a.source, client.ip)
	}

	seen := map[string]bool{}
	for range 60 {
		a, err := newUDPClient(t, client.ns, "10.96.0.10:53").ask()
		if err != nil {
			t.Fatalf("UDP: %v", err)
		}
		seen[a.pod] = true
	}
	if len(seen) != 3 {
		t.Errorf("UDP flows reached %v, want all 3 endpoints", seen)
	}

	// From the node itself: the output hook DNATs.
	hostGot := count(t, n.node, "10.96.0.10:80", 30)
	if len(hostGot) < 2 {
		t.Errorf("node → cluster IP reached %v, want several endpoints", hostGot)
	}
	if a, err := newUDPClient(t, n.node, "10.96.0.10:53").ask(); err != nil || !strings.HasPrefix(a.pod, "pod") {
		t.Errorf("node → cluster IP over UDP: %v %v", a, err)
	}
}

// A Service with no endpoint refuses at once (TCP and UDP, from a pod and
// from the node); so do an undefined port of a cluster IP and an
// unallocated cluster IP, which never leaves the machine.
func TestNoEndpointsRefusedAtOnce(t *testing.T) {
	n := newTestNet(t, 2)
	// The stand-in default gateway counts what the node sends it for the
	// Service range.
	if out, err := n.client.Exec("nft", "add table ip gw; add chain ip gw in { type filter hook prerouting priority 0 ; }; add rule ip gw in ip daddr "+serviceNet+" counter"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	p := n.newProxier(t)
	p.UpdateService(service("empty", "10.96.0.20"))
	p.UpdateService(service("full", "10.96.0.21"))
	if err := p.UpdateEndpointSlice(slice("full", "full-1", eps(n.pods[0])...)); err != nil {
		t.Fatal(err)
	}
	mustSync(t, p)

	for _, ns := range []*struct {
		name string
		do   func(string)
	}{
		{"pod", func(addr string) { requireRefused(t, n.pods[1].ns, addr) }},
		{"node", func(addr string) { requireRefused(t, n.node, addr) }},
	} {
		ns.do("10.96.0.20:80")   // no endpoints
		ns.do("10.96.0.21:8081") // a port the Service does not have
		ns.do("10.96.99.99:80")  // no Service at all
	}
	if _, err := newUDPClient(t, n.pods[1].ns, "10.96.0.20:53").ask(); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("UDP to a Service with no endpoints: %v, want refused", err)
	}
	if a, err := dialTCP(n.pods[1].ns, "10.96.0.21:80"); err != nil || a.pod != n.pods[0].name {
		t.Errorf("the Service with an endpoint: %v %v", a, err)
	}

	// The rules gone (a node agent down), the route alone still keeps the
	// range on the machine: the connection goes nowhere instead of out.
	if out, err := n.node.Exec("nft", "delete", "table", "ip", serviceproxy.DefaultTable); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var conn net.Conn
	err := n.node.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", "10.96.99.98:80", 300*time.Millisecond)
		return err
	})
	if err == nil {
		conn.Close()
		t.Fatal("connected to an unallocated cluster IP with no rules")
	}
	out, err := n.client.Exec("nft", "list", "chain", "ip", "gw", "in")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(out, "counter packets 0 bytes 0") {
		t.Errorf("cluster IP traffic reached the default gateway:\n%s", out)
	}
}

var _ = corev1.ProtocolTCP
