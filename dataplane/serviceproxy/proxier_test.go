package serviceproxy_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/serviceproxy"
)

type dataplanetestNS = dataplanetest.NetNS

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

	// From off the cluster (a router that sends the service range to the node): masqueraded
	// to the node's address, so that the answer comes back through the node.
	if a, err := dialTCP(n.client, "10.96.0.10:80"); err != nil || a.source != bridgeIP {
		t.Errorf("client → cluster IP: the endpoint saw %+v (%v), want the node's %s", a, err, bridgeIP)
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

// ClientIP affinity sends a client back to the endpoint it got first.
func TestSessionAffinityClientIP(t *testing.T) {
	n := newTestNet(t, 4)
	p := n.newProxier(t)
	p.UpdateService(service("sticky", "10.96.0.30", func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
	}))
	if err := p.UpdateEndpointSlice(slice("sticky", "sticky-1", eps(n.pods[0], n.pods[1], n.pods[2])...)); err != nil {
		t.Fatal(err)
	}
	mustSync(t, p)
	for _, client := range []*struct {
		name string
		ns   *dataplanetestNS
	}{{"pod", n.pods[3].ns}, {"node", n.node}} {
		got := count(t, client.ns, "10.96.0.30:80", 30)
		if len(got) != 1 {
			t.Errorf("%s: 30 connections went to %v, want one endpoint", client.name, got)
		}
	}
	if out := n.nftList(t); !strings.Contains(out, "timeout 1m") {
		t.Errorf("affinity sets without the 60 s timeout:\n%s", out)
	}
}

// NodePorts answer on every node address and on 127.0.0.1, masqueraded
// (externalTrafficPolicy Cluster); externalIPs and LoadBalancer ingress IPs
// answer too.
func TestNodePortExternalIPAndLoadBalancer(t *testing.T) {
	n := newTestNet(t, 2)
	p := n.newProxier(t)
	p.UpdateService(service("np", "10.96.0.40", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 30080
		s.Spec.Ports[1].NodePort = 30053
		s.Spec.ExternalIPs = []string{"203.0.113.10"}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.20"}}
	}))
	if err := p.UpdateEndpointSlice(slice("np", "np-1", eps(n.pods[0])...)); err != nil {
		t.Fatal(err)
	}
	mustSync(t, p)
	for _, c := range []struct {
		from *dataplanetestNS
		addr string
	}{
		{n.client, nodeUplink + ":30080"},
		{n.client, "203.0.113.10:80"},
		{n.client, "203.0.113.20:80"},
		{n.node, nodeUplink + ":30080"},
		{n.node, bridgeIP + ":30080"},
		{n.node, "127.0.0.1:30080"},
		{n.pods[1].ns, nodeUplink + ":30080"},
	} {
		a, err := dialTCP(c.from, c.addr)
		if err != nil {
			t.Errorf("%s from %s: %v", c.addr, c.from.Name, err)
			continue
		}
		if a.pod != n.pods[0].name || a.source != bridgeIP {
			t.Errorf("%s from %s: answered by %s seeing %s, want %s seeing the node's %s (masqueraded)", c.addr, c.from.Name, a.pod, a.source, n.pods[0].name, bridgeIP)
		}
	}
	if a, err := newUDPClient(t, n.client, nodeUplink+":30053").ask(); err != nil || a.pod != n.pods[0].name {
		t.Errorf("UDP NodePort: %v %v", a, err)
	}
	if a, err := newUDPClient(t, n.node, "127.0.0.1:30053").ask(); err != nil || a.pod != n.pods[0].name {
		t.Errorf("UDP NodePort on 127.0.0.1: %v %v", a, err)
	}
	// Without endpoints, a NodePort (127.0.0.1 too) refuses at once.
	p.DeleteEndpointSlice("default", "np-1")
	mustSync(t, p)
	requireRefused(t, n.client, nodeUplink+":30080")
	requireRefused(t, n.node, "127.0.0.1:30080")
	requireRefused(t, n.client, "203.0.113.10:80")
}

// externalTrafficPolicy Local: only this node's endpoints, and the client's
// own address reaches them; internalTrafficPolicy Local: only this node's
// endpoints for cluster IP traffic.
func TestTrafficPolicyLocal(t *testing.T) {
	n := newTestNet(t, 3)
	local, remote := n.pods[0], n.pods[1]
	endpoints := []ep{{ip: local.ip}, {ip: remote.ip, node: "node-b"}}
	p := n.newProxier(t)
	p.UpdateService(service("etp", "10.96.0.50", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = 30050
		s.Spec.Ports[1].NodePort = 30051
		s.Spec.ExternalIPs = []string{"203.0.113.50"}
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}))
	p.UpdateService(service("itp", "10.96.0.51", func(s *corev1.Service) {
		s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
	}))
	for _, s := range []string{"etp", "itp"} {
		if err := p.UpdateEndpointSlice(slice(s, s+"-1", endpoints...)); err != nil {
			t.Fatal(err)
		}
	}
	mustSync(t, p)
	for _, addr := range []string{nodeUplink + ":30050", "203.0.113.50:80"} {
		for range 20 {
			a, err := dialTCP(n.client, addr)
			if err != nil {
				t.Fatalf("%s: %v", addr, err)
			}
			if a.pod != local.name || a.source != clientIP {
				t.Fatalf("%s: answered by %s seeing %s, want the local %s seeing the client's %s", addr, a.pod, a.source, local.name, clientIP)
			}
		}
	}
	if a, err := newUDPClient(t, n.client, nodeUplink+":30051").ask(); err != nil || a.pod != local.name || a.source != clientIP {
		t.Errorf("UDP with externalTrafficPolicy Local: %v %v", a, err)
	}
	// Pods and the node itself still reach every endpoint (short-circuit).
	if got := count(t, n.pods[2].ns, nodeUplink+":30050", 40); len(got) != 2 {
		t.Errorf("a pod through the NodePort reached %v, want both endpoints", got)
	}
	if got := count(t, n.pods[2].ns, "10.96.0.51:80", 20); len(got) != 1 || got[local.name] != 20 {
		t.Errorf("internalTrafficPolicy Local reached %v, want only %s", got, local.name)
	}
	// No local endpoint left: external traffic is dropped, not sent away.
	p.UpdateEndpointSlice(slice("etp", "etp-1", ep{ip: remote.ip, node: "node-b"}))
	mustSync(t, p)
	if a, err := dialTCP(n.client, nodeUplink+":30050"); err == nil {
		t.Errorf("externalTrafficPolicy Local with no local endpoint answered: %v", a)
	}
}

// A pod reaching itself through its Service works: the connection is
// masqueraded (hairpin).
func TestHairpin(t *testing.T) {
	n := newTestNet(t, 2)
	p := n.newProxier(t)
	p.UpdateService(service("self", "10.96.0.60"))
	if err := p.UpdateEndpointSlice(slice("self", "self-1", eps(n.pods[0])...)); err != nil {
		t.Fatal(err)
	}
	mustSync(t, p)
	a, err := dialTCP(n.pods[0].ns, "10.96.0.60:80")
	if err != nil {
		t.Fatalf("pod to itself through its Service: %v\n%s", err, n.nftList(t))
	}
	if a.pod != n.pods[0].name || a.source != bridgeIP {
		t.Errorf("hairpin: answered by %s seeing %s, want %s seeing %s", a.pod, a.source, n.pods[0].name, bridgeIP)
	}
	if a, err := newUDPClient(t, n.pods[0].ns, "10.96.0.60:53").ask(); err != nil || a.pod != n.pods[0].name {
		t.Errorf("UDP hairpin: %v %v", a, err)
	}
}

// Endpoints that are not ready get no traffic; serving-terminating ones
// get it only while no endpoint is ready.
func TestTerminatingFallback(t *testing.T) {
	n := newTestNet(t, 4)
	p := n.newProxier(t)
	p.UpdateService(service("term", "10.96.0.70"))
	p.UpdateEndpointSlice(slice("term", "term-1",
		ep{ip: n.pods[0].ip, notReady: true, serving: ptr(true), term: true},
		ep{ip: n.pods[1].ip, notReady: true, serving: ptr(false)}))
	mustSync(t, p)
	if got := count(t, n.pods[3].ns, "10.96.0.70:80", 20); got[n.pods[0].name] != 20 {
		t.Errorf("only a serving-terminating endpoint: %v, want all on %s", got, n.pods[0].name)
	}
	p.UpdateEndpointSlice(slice("term", "term-1",
		ep{ip: n.pods[0].ip, notReady: true, serving: ptr(true), term: true},
		ep{ip: n.pods[2].ip}))
	mustSync(t, p)
	if got := count(t, n.pods[3].ns, "10.96.0.70:80", 20); got[n.pods[2].name] != 20 {
		t.Errorf("a ready endpoint besides a terminating one: %v, want all on %s", got, n.pods[2].name)
	}
}

// Updates are incremental and take effect: a removed endpoint gets no new
// TCP connection and no more UDP from a flow that used it; a deleted
// Service leaves nothing behind; Run batches a burst of changes.
func TestUpdates(t *testing.T) {
	n := newTestNet(t, 4)
	var mu sync.Mutex
	var results []serviceproxy.SyncResult
	cfg := n.config()
	cfg.OnSync = func(r serviceproxy.SyncResult) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}
	p, err := serviceproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.UpdateService(service("keep", "10.96.0.80"))
	p.UpdateEndpointSlice(slice("keep", "keep-1", eps(n.pods[0])...))
	mustSync(t, p)
	before := n.nftList(t)

	p.UpdateService(service("upd", "10.96.0.81"))
	p.UpdateEndpointSlice(slice("upd", "upd-1", eps(n.pods[0], n.pods[1], n.pods[2])...))
	mustSync(t, p)
	udp := newUDPClient(t, n.pods[3].ns, "10.96.0.81:53")
	first, err := udp.ask()
	if err != nil {
		t.Fatal(err)
	}
	var gone, stay []*pod
	for _, pd := range n.pods[:3] {
		if pd.name == first.pod {
			gone = append(gone, pd)
		} else {
			stay = append(stay, pd)
		}
	}
	p.UpdateEndpointSlice(slice("upd", "upd-1", eps(stay...)...))
	mustSync(t, p)
	mu.Lock()
	last := results[len(results)-1]
	mu.Unlock()
	if last.Full || last.Services != 1 {
		t.Errorf("the endpoint change was written as %+v, want a partial sync of one Service", last)
	}
	for i := range 5 {
		a, err := udp.ask()
		if err != nil {
			t.Fatal(err)
		}
		if a.pod == gone[0].name {
			t.Fatalf("UDP datagram %d of a flow still went to the removed endpoint %s", i, a.pod)
		}
	}
	if got := count(t, n.pods[3].ns, "10.96.0.81:80", 60); got[gone[0].name] != 0 || len(got) != 2 {
		t.Errorf("after removing %s: %v", gone[0].name, got)
	}

	// A burst of changes through Run: fewer transactions than changes.
	ctx := ctxTimeout(t, 30*time.Second)
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	mu.Lock()
	syncsBefore := len(results)
	mu.Unlock()
	for i := range 50 {
		list := eps(stay...)
		if i%2 == 0 {
			list = eps(n.pods[0], n.pods[1], n.pods[2])
		}
		p.UpdateEndpointSlice(slice("upd", "upd-1", list...))
		time.Sleep(time.Millisecond)
	}
	if err := p.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	syncs := len(results) - syncsBefore
	mu.Unlock()
	if syncs >= 25 {
		t.Errorf("50 changes 1 ms apart took %d transactions, want them batched", syncs)
	}

	p.DeleteService("default", "upd")
	p.DeleteEndpointSlice("default", "upd-1")
	if err := p.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if after := n.nftList(t); !sameTable(after, before) {
		t.Errorf("a deleted Service left rules behind:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	requireRefused(t, n.pods[3].ns, "10.96.0.81:80")
}

// Changes that touch only elements of the table's sets and maps (an
// endpoint replaced by another, a Service without endpoints added) are
// written by netlink, not nft: they take effect (the old endpoint gets no
// new connection, a UDP flow that used it moves, the new Service refuses at
// once, its NodePort too), as do 2,000 Services without endpoints at once
// (a batch larger than a netlink socket's default send buffer, and lists
// of elements longer than one netlink attribute holds), and they leave the
// table exactly as nft writes it for the same state.
func TestElementOnlyChanges(t *testing.T) {
	n := newTestNet(t, 4)
	var mu sync.Mutex
	var results []serviceproxy.SyncResult
	cfg := n.config()
	cfg.OnSync = func(r serviceproxy.SyncResult) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}
	p, err := serviceproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.UpdateService(service("web", "10.96.0.100"))
	if err := p.UpdateEndpointSlice(slice("web", "web-1", eps(n.pods[0], n.pods[1])...)); err != nil {
		t.Fatal(err)
	}
	mustSync(t, p)
	client := n.pods[3]
	udp := newUDPClient(t, client.ns, "10.96.0.100:53")
	first, err := udp.ask()
	if err != nil {
		t.Fatal(err)
	}
	gone, stay := n.pods[0], n.pods[1]
	if first.pod == n.pods[1].name {
		gone, stay = n.pods[1], n.pods[0]
	}

	// The endpoint the UDP flow uses is replaced by another; a Service
	// without endpoints, with a NodePort and an external IP, comes.
	if err := p.UpdateEndpointSlice(slice("web", "web-1", eps(stay, n.pods[2])...)); err != nil {
		t.Fatal(err)
	}
	p.UpdateService(service("empty", "10.96.0.101", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = 30101
		s.Spec.Ports[1].NodePort = 30102
		s.Spec.ExternalIPs = []string{"203.0.113.30"}
	}))
	mustSync(t, p)
	mu.Lock()
	last := results[len(results)-1]
	mu.Unlock()
	if last.Full || last.Services != 2 || last.Operations == 0 {
		t.Errorf("the changes were written as %+v, want a partial sync of 2 Services", last)
	}
	got := count(t, client.ns, "10.96.0.100:80", 60)
	if got[gone.name] != 0 || got[stay.name] == 0 || got[n.pods[2].name] == 0 {
		t.Errorf("after replacing %s by %s: %v", gone.name, n.pods[2].name, got)
	}
	for i := range 5 {
		a, err := udp.ask()
		if err != nil {
			t.Fatal(err)
		}
		if a.pod == gone.name {
			t.Fatalf("UDP datagram %d of a flow still went to the replaced endpoint %s", i, a.pod)
		}
	}
	requireRefused(t, client.ns, "10.96.0.101:80")
	requireRefused(t, n.client, nodeUplink+":30101")
	requireRefused(t, n.client, "203.0.113.30:80")

	// 2,000 Services without endpoints at once: 6,000 elements, a batch
	// larger than a netlink socket's default send buffer.
	for i := range 2000 {
		p.UpdateService(service(fmt.Sprintf("many-%d", i), fmt.Sprintf("10.96.%d.%d", 10+i/250, i%250+1)))
	}
	mustSync(t, p)
	mu.Lock()
	last = results[len(results)-1]
	mu.Unlock()
	if last.Full || last.Services != 2000 {
		t.Errorf("2,000 new Services were written as %+v, want a partial sync of 2,000 Services", last)
	}
	requireRefused(t, client.ns, "10.96.17.250:80")

	// A fresh Proxier writes the same table from the same state.
	changed := n.nftList(t)
	if err := serviceproxy.Cleanup(t.Context(), n.config()); err != nil {
		t.Fatal(err)
	}
	fresh := n.newProxier(t)
	fresh.UpdateService(service("web", "10.96.0.100"))
	if err := fresh.UpdateEndpointSlice(slice("web", "web-1", eps(stay, n.pods[2])...)); err != nil {
		t.Fatal(err)
	}
	fresh.UpdateService(service("empty", "10.96.0.101", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = 30101
		s.Spec.Ports[1].NodePort = 30102
		s.Spec.ExternalIPs = []string{"203.0.113.30"}
	}))
	for i := range 2000 {
		fresh.UpdateService(service(fmt.Sprintf("many-%d", i), fmt.Sprintf("10.96.%d.%d", 10+i/250, i%250+1)))
	}
	mustSync(t, fresh)
	if want := n.nftList(t); !sameTable(changed, want) {
		t.Errorf("the table after element changes differs from one written afresh:\nchanged:\n%s\nafresh:\n%s", changed, want)
	}
}

// Cleanup removes the table, the device and its routes; a new Proxier
// takes over what an earlier run left, down to what it no longer wants.
func TestRestartAndCleanup(t *testing.T) {
	n := newTestNet(t, 2)
	p1 := n.newProxier(t)
	p1.UpdateService(service("a", "10.96.0.90"))
	p1.UpdateService(service("b", "10.96.0.91", func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	}))
	p1.UpdateEndpointSlice(slice("a", "a-1", eps(n.pods[0])...))
	p1.UpdateEndpointSlice(slice("b", "b-1", eps(n.pods[1])...))
	mustSync(t, p1)
	// Something the earlier run left that no one wants any more.
	if out, err := n.node.Exec("nft", "add chain ip "+serviceproxy.DefaultTable+" service-OLD-ns/gone/tcp/http; add set ip "+serviceproxy.DefaultTable+" affinity-10-OLD { type ipv4_addr ; }"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	// A fresh Proxier (the agent restarted) learns only of "a".
	p2 := n.newProxier(t)
	p2.UpdateService(service("a", "10.96.0.90"))
	p2.UpdateEndpointSlice(slice("a", "a-1", eps(n.pods[0])...))
	mustSync(t, p2)
	if a, err := dialTCP(n.pods[1].ns, "10.96.0.90:80"); err != nil || a.pod != n.pods[0].name {
		t.Errorf("after the restart: %v %v", a, err)
	}
	requireRefused(t, n.pods[1].ns, "10.96.0.91:80")
	got := n.nftList(t)
	for _, left := range []string{"OLD", "10.96.0.91", "affinity-"} {
		if strings.Contains(got, left) {
			t.Errorf("the new Proxier kept %q from the earlier run:\n%s", left, got)
		}
	}

	// A third run, from nothing, writes the same table.
	if err := serviceproxy.Cleanup(t.Context(), n.config()); err != nil {
		t.Fatal(err)
	}
	if out, _ := n.node.Exec("nft", "list", "tables"); strings.TrimSpace(out) != "" {
		t.Errorf("tables left after Cleanup: %s", out)
	}
	if out, err := n.node.Exec("ip", "-o", "link", "show", serviceproxy.DefaultServiceDevice); err == nil {
		t.Errorf("device left after Cleanup: %s", out)
	}
	if out, _ := n.node.Exec("ip", "route", "show", serviceNet); strings.TrimSpace(out) != "" {
		t.Errorf("route left after Cleanup: %s", out)
	}
	if err := serviceproxy.Cleanup(t.Context(), n.config()); err != nil {
		t.Errorf("Cleanup with nothing to clean: %v", err)
	}
	p3 := n.newProxier(t)
	p3.UpdateService(service("a", "10.96.0.90"))
	p3.UpdateEndpointSlice(slice("a", "a-1", eps(n.pods[0])...))
	mustSync(t, p3)
	if fresh := n.nftList(t); !sameTable(fresh, got) {
		t.Errorf("taken-over table differs from a fresh one:\ntaken over:\n%s\nfresh:\n%s", got, fresh)
	}
}

// TestRouteServiceRanges: before any Proxier runs, RouteServiceRanges sends the Service range to
// the TUN device, so a cluster IP resolves to it and not to the default gateway; a second call
// changes nothing, a Proxier takes the route over, and Cleanup removes it.
func TestRouteServiceRanges(t *testing.T) {
	n := newTestNet(t, 0)
	routeOf := func() string {
		t.Helper()
		out, err := n.node.Exec("ip", "-o", "route", "get", "10.96.0.77")
		if err != nil {
			t.Fatalf("ip route get: %v: %s", err, out)
		}
		return out
	}
	if got := routeOf(); strings.Contains(got, serviceproxy.DefaultServiceDevice) {
		t.Fatalf("routed to the device before anything routed it: %s", got)
	}
	for range 2 {
		if err := serviceproxy.RouteServiceRanges(n.config()); err != nil {
			t.Fatal(err)
		}
		if got := routeOf(); !strings.Contains(got, "dev "+serviceproxy.DefaultServiceDevice) {
			t.Fatalf("a cluster IP after RouteServiceRanges: %s", got)
		}
	}
	mustSync(t, n.newProxier(t))
	if got := routeOf(); !strings.Contains(got, "dev "+serviceproxy.DefaultServiceDevice) {
		t.Fatalf("a cluster IP after the Proxier's first sync: %s", got)
	}
	if err := serviceproxy.Cleanup(t.Context(), n.config()); err != nil {
		t.Fatal(err)
	}
	if out, _ := n.node.Exec("ip", "route", "show", serviceNet); strings.TrimSpace(out) != "" {
		t.Errorf("route left after Cleanup: %s", out)
	}
}
