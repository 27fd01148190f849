package serviceproxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/serviceproxy"
)

// The test machine, all inside namespaces the test makes:
//
//	client ns (198.51.100.2) ──veth── node ns (uplink 198.51.100.1, bridge br0 10.244.7.1/24)
//	                                      └── br0 ── pod ns i (10.244.7.(10+i), default via 10.244.7.1)
//
// The node's default route points at the client ns, which stands for the
// default gateway: a packet for a cluster IP that leaves the node shows there.
const (
	nodeName   = "node-a"
	nodeUplink = "198.51.100.1"
	clientIP   = "198.51.100.2"
	bridgeIP   = "10.244.7.1"
	podCIDR    = "10.244.7.0/24"
	clusterNet = "10.244.0.0/16"
	serviceNet = "10.96.0.0/16"
	serverPort = 8080
)

type testNet struct {
	t      *testing.T
	node   *dataplanetest.NetNS
	client *dataplanetest.NetNS
	pods   []*pod
}

type pod struct {
	name string
	ip   string
	ns   *dataplanetest.NetNS
}

func newTestNet(t *testing.T, pods int) *testNet {
	t.Helper()
	dataplanetest.RequireNetworking(t)
	n := &testNet{t: t}
	n.node = dataplanetest.NewNetNS(t, "node")
	n.client = dataplanetest.NewNetNS(t, "client")
	n.node.Sysctl("net/ipv4/ip_forward", "1")
	n.node.Sysctl("net/bridge/bridge-nf-call-iptables", "1")
	n.node.IP("link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", n.client.Name)
	n.node.IP("addr", "add", nodeUplink+"/24", "dev", "up0")
	n.node.IP("link", "set", "up0", "up")
	n.client.IP("addr", "add", clientIP+"/24", "dev", "eth0")
	n.client.IP("link", "set", "eth0", "up")
	n.client.IP("route", "add", "default", "via", nodeUplink)
	n.node.IP("route", "add", "default", "via", clientIP)
	n.node.IP("link", "add", "br0", "type", "bridge")
	n.node.IP("addr", "add", bridgeIP+"/24", "dev", "br0")
	n.node.IP("link", "set", "br0", "up")
	for i := range pods {
		n.addPod(t, i)
	}
	return n
}

func (n *testNet) addPod(t *testing.T, i int) *pod {
	p := &pod{name: fmt.Sprintf("pod%d", i), ip: fmt.Sprintf("10.244.7.%d", 10+i), ns: dataplanetest.NewNetNS(t, fmt.Sprintf("p%d", i))}
	host := fmt.Sprintf("vp%d", i)
	n.node.IP("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", p.ns.Name)
	n.node.IP("link", "set", host, "master", "br0")
	// As podnet's CNI bridge does (hairpinMode): a frame DNATed back to the
	// port it came from may leave by it.
	n.node.IP("link", "set", host, "type", "bridge_slave", "hairpin", "on")
	n.node.IP("link", "set", host, "up")
	p.ns.IP("addr", "add", p.ip+"/24", "dev", "eth0")
	p.ns.IP("link", "set", "eth0", "up")
	p.ns.IP("route", "add", "default", "via", bridgeIP)
	serve(t, p.ns, p.name, serverPort)
	n.pods = append(n.pods, p)
	return p
}

// serve answers, on TCP and UDP port, "<name> <source address>" to every
// connection or datagram.
func serve(t *testing.T, ns *dataplanetest.NetNS, name string, port int) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns.Name, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		pc.Close()
		wg.Wait()
	})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			src := c.RemoteAddr().(*net.TCPAddr).IP.String()
			fmt.Fprintf(c, "%s %s\n", name, src)
			c.Close()
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			_, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			src := addr.(*net.UDPAddr).IP.String()
			if _, err := pc.WriteTo([]byte(name+" "+src+"\n"), addr); err != nil {
				return
			}
		}
	}()
}

// answer is who answered a connection and the source address it saw.
type answer struct{ pod, source string }

// dialTCP connects from ns to addr and reads the answer.
func dialTCP(ns *dataplanetest.NetNS, addr string) (answer, error) {
	var conn net.Conn
	err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	})
	if err != nil {
		return answer{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return answer{}, err
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return answer{}, fmt.Errorf("bad answer %q", line)
	}
	return answer{f[0], f[1]}, nil
}

// udpClient is one UDP socket (one source port) in ns, connected to addr.
type udpClient struct{ conn net.Conn }

func newUDPClient(t *testing.T, ns *dataplanetest.NetNS, addr string) *udpClient {
	t.Helper()
	var conn net.Conn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.Dial("udp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpClient{conn}
}

func (u *udpClient) ask() (answer, error) {
	u.conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := u.conn.Write([]byte("who\n")); err != nil {
		return answer{}, err
	}
	buf := make([]byte, 200)
	n, err := u.conn.Read(buf)
	if err != nil {
		return answer{}, err
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) != 2 {
		return answer{}, fmt.Errorf("bad answer %q", buf[:n])
	}
	return answer{f[0], f[1]}, nil
}

// requireRefused asserts that a TCP connection from ns to addr is refused
// at once, not left to time out.
func requireRefused(t *testing.T, ns *dataplanetest.NetNS, addr string) {
	t.Helper()
	start := time.Now()
	a, err := dialTCP(ns, addr)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("%s from %s: answered by %s, want refused", addr, ns.Name, a.pod)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Fatalf("%s from %s: %v after %v, want connection refused at once", addr, ns.Name, err, took)
	}
	if took > time.Second {
		t.Fatalf("%s from %s: refused after %v, want at once", addr, ns.Name, took)
	}
}

func (n *testNet) config() serviceproxy.Config {
	return serviceproxy.Config{
		NodeName:     nodeName,
		NodeIPs:      []netip.Addr{netip.MustParseAddr(nodeUplink), netip.MustParseAddr(bridgeIP)},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(clusterNet)},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(serviceNet)},
		NetNS:        n.node.Path(),
		OnError:      func(err error) { n.t.Logf("serviceproxy: %v", err) },
	}
}

func (n *testNet) newProxier(t *testing.T) *serviceproxy.Proxier {
	t.Helper()
	p, err := serviceproxy.New(n.config())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustSync(t *testing.T, p *serviceproxy.Proxier) {
	t.Helper()
	if err := p.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// nftList is the table as nft prints it, in the node's namespace.
func (n *testNet) nftList(t *testing.T) string {
	t.Helper()
	out, err := n.node.Exec("nft", "list", "table", "ip", serviceproxy.DefaultTable)
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return out
}

// sameTable compares two listings of a table, whatever the order nft lists
// its chains in (a recreated base chain comes last).
func sameTable(a, b string) bool {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	slices.Sort(la)
	slices.Sort(lb)
	return slices.Equal(la, lb)
}

type svcOpt func(*corev1.Service)

func service(name, clusterIP string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  clusterIP,
			ClusterIPs: []string{clusterIP},
			Ports: []corev1.ServicePort{
				{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(serverPort)},
				{Name: "udp", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(serverPort)},
			},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

type ep struct {
	ip       string
	node     string
	notReady bool
	serving  *bool
	term     bool
}

func slice(svc, name string, eps ...ep) *discoveryv1.EndpointSlice {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := int32(serverPort)
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("tcp"), Protocol: &tcp, Port: &port},
			{Name: ptr("udp"), Protocol: &udp, Port: &port},
		},
	}
	for _, e := range eps {
		node := e.node
		if node == "" {
			node = nodeName
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{e.ip},
			NodeName:  ptr(node),
			Conditions: discoveryv1.EndpointConditions{
				Ready:       ptr(!e.notReady),
				Serving:     e.serving,
				Terminating: ptr(e.term),
			},
		})
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func eps(pods ...*pod) []ep {
	var out []ep
	for _, p := range pods {
		out = append(out, ep{ip: p.ip})
	}
	return out
}

// count connects n times from ns to addr and counts who answered.
func count(t *testing.T, ns *dataplanetest.NetNS, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		a, err := dialTCP(ns, addr)
		if err != nil {
			t.Fatalf("%s from %s: %v", addr, ns.Name, err)
		}
		got[a.pod]++
	}
	return got
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
