package netpolicy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/netpolicy"
)

// The test machine, all inside namespaces the test makes:
//
//	node ns (bridge br0 10.244.7.1/24; the Enforcer turns bridge-nf-call-iptables on)
//	  └── br0 ── pod ns i (10.244.7.(10+i), default via 10.244.7.1)
//
// Every pod answers its name on TCP and UDP ports 8080, 8081 and 9090.
const bridgeIP = "10.244.7.1"

var podPorts = []int{8080, 8081, 9090}

type testNet struct {
	node *dataplanetest.NetNS
	pods map[string]*pod
}

type pod struct {
	name, namespace, ip string
	labels              map[string]string
	ns                  *dataplanetest.NetNS
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	dataplanetest.RequireNetworking(t)
	n := &testNet{pods: map[string]*pod{}}
	n.node = dataplanetest.NewNetNS(t, "node")
	n.node.Sysctl("net/ipv4/ip_forward", "1")
	n.node.IP("link", "add", "br0", "type", "bridge")
	n.node.IP("addr", "add", bridgeIP+"/24", "dev", "br0")
	n.node.IP("link", "set", "br0", "up")
	return n
}

// addPod makes pod namespace/name with labels, answering on podPorts.
func (n *testNet) addPod(t *testing.T, namespace, name string, labels map[string]string) *pod {
	t.Helper()
	i := len(n.pods)
	p := &pod{name: name, namespace: namespace, ip: fmt.Sprintf("10.244.7.%d", 10+i), labels: labels, ns: dataplanetest.NewNetNS(t, fmt.Sprintf("p%d", i))}
	host := fmt.Sprintf("vp%d", i)
	n.node.IP("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", p.ns.Name)
	n.node.IP("link", "set", host, "master", "br0")
	n.node.IP("link", "set", host, "up")
	p.ns.IP("addr", "add", p.ip+"/24", "dev", "eth0")
	p.ns.IP("link", "set", "eth0", "up")
	p.ns.IP("route", "add", "default", "via", bridgeIP)
	for _, port := range podPorts {
		serve(t, p, port)
		serveUDP(t, p, port)
	}
	n.pods[name] = p
	return p
}

// object is the pod as the API has it: its IP, and port 8080 named http.
func (p *pod) object() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.namespace, Name: p.name, Labels: p.labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: 9090},
		}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}}},
	}
}

// serve answers "<pod name>\n" to every TCP connection on port, and then
// echoes what it is sent until the client closes.
func serve(t *testing.T, p *pod, port int) {
	t.Helper()
	var ln net.Listener
	err := p.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", p.ns.Name, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprintf(c, "%s\n", p.name)
				io.Copy(c, c)
			}()
		}
	}()
}

// serveUDP answers "<pod name>\n" to every datagram on port.
func serveUDP(t *testing.T, p *pod, port int) {
	t.Helper()
	var pc net.PacketConn
	err := p.ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", p.ns.Name, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(p.name+"\n"), addr)
		}
	}()
}

// askUDP sends a datagram from one pod to another's port and waits for
// the answer; the timeout tells a dropped datagram.
func askUDP(from *pod, to *pod, port int, timeout time.Duration) error {
	var conn net.Conn
	err := from.ns.Do(func() error {
		var err error
		conn, err = net.Dial("udp4", net.JoinHostPort(to.ip, strconv.Itoa(port)))
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("who\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	k, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(string(buf[:k])); got != to.name {
		return fmt.Errorf("answered by %q", got)
	}
	return nil
}

// dial connects from one pod to another's port and reads its name; the
// timeout tells a dropped connection.
func dial(from *pod, to *pod, port int, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := from.ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", net.JoinHostPort(to.ip, strconv.Itoa(port)), timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	k, err := conn.Read(buf)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if got := strings.TrimSpace(string(buf[:k])); got != to.name {
		conn.Close()
		return nil, fmt.Errorf("answered by %q", got)
	}
	return conn, nil
}

// flow is one connection attempt (TCP, or one UDP datagram and its
// answer when udp) and whether policy allows it.
type flow struct {
	from, to string
	port     int
	allowed  bool
	udp      bool
}

// check tries every flow at once: an allowed one must connect, a denied
// one must time out (dropped, never answered).
func (n *testNet) check(t *testing.T, flows ...flow) {
	t.Helper()
	errs := make([]error, len(flows))
	var wg sync.WaitGroup
	for i, f := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := 5 * time.Second
			if !f.allowed {
				timeout = time.Second
			}
			var conn net.Conn
			var err error
			if f.udp {
				err = askUDP(n.pods[f.from], n.pods[f.to], f.port, timeout)
			} else {
				conn, err = dial(n.pods[f.from], n.pods[f.to], f.port, timeout)
			}
			if err == nil && conn == nil {
				conn = nopConn{}
			}
			switch {
			case f.allowed && err != nil:
				errs[i] = fmt.Errorf("%s -> %s:%d: %v, want allowed", f.from, f.to, f.port, err)
			case !f.allowed && err == nil:
				conn.Close()
				errs[i] = fmt.Errorf("%s -> %s:%d: connected, want denied", f.from, f.to, f.port)
			case !f.allowed && !isTimeout(err):
				errs[i] = fmt.Errorf("%s -> %s:%d: %v, want dropped (a timeout)", f.from, f.to, f.port, err)
			case err == nil:
				conn.Close()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// nopConn stands for the answered UDP exchange, which has nothing to close.
type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (n *testNet) newEnforcer(t *testing.T) (*netpolicy.Enforcer, netpolicy.Config) {
	t.Helper()
	cfg := netpolicy.Config{NetNS: n.node.Path()}
	e, err := netpolicy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netpolicy.Cleanup(context.WithoutCancel(t.Context()), cfg); err != nil {
			t.Error(err)
		}
	})
	for _, p := range n.pods {
		e.UpdatePod(p.object())
	}
	return e, cfg
}

func mustSync(t *testing.T, e *netpolicy.Enforcer) {
	t.Helper()
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func (n *testNet) nftList(t *testing.T) string {
	t.Helper()
	out, err := n.node.Exec("nft", "list", "table", "ip", netpolicy.DefaultTable)
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	return out
}

func nftTables(t *testing.T, ns *dataplanetest.NetNS) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	return string(out)
}

// Policy builders.

func policy(namespace, name string, selector map[string]string, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selector},
			PolicyTypes: types,
		},
	}
}

func podPeer(l map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: l}}
}

func nsPeer(ns, pods map[string]string) networkingv1.NetworkPolicyPeer {
	p := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: ns}}
	if pods != nil {
		p.PodSelector = &metav1.LabelSelector{MatchLabels: pods}
	}
	return p
}

func blockPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func tcpPort(port int) networkingv1.NetworkPolicyPort {
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &p}
}

func udpPort(port int) networkingv1.NetworkPolicyPort {
	p := tcpPort(port)
	udp := corev1.ProtocolUDP
	p.Protocol = &udp
	return p
}

func portRange(port, end int) networkingv1.NetworkPolicyPort {
	p := tcpPort(port)
	e := int32(end)
	p.EndPort = &e
	return p
}

func namedPort(name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Port: &p}
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	l := map[string]string{corev1.LabelMetadataName: name}
	for k, v := range labels {
		l[k] = v
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}
