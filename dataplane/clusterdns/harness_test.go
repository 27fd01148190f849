package clusterdns_test

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/dataplane/clusterdns"
)

// upstream is a fake upstream DNS server on 127.0.0.1 (UDP and TCP, same port). It answers
// from its records, NXDOMAIN with an SOA otherwise, and counts the questions it gets.
type upstream struct {
	Addr string

	mu      sync.Mutex
	records map[string][]dns.RR // by lowercased name, all types
	asked   map[string]int      // "name type" → count
}

func startUpstream(t testing.TB, records ...string) *upstream {
	t.Helper()
	u := &upstream{records: map[string][]dns.RR{}, asked: map[string]int{}}
	for _, r := range records {
		u.add(t, r)
	}
	// UDP and TCP on one port: a port free for UDP may be taken for TCP, so try a few.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if attempt == 10 {
			t.Fatal(err)
		}
	}
	u.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(u.serve)
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }() // ends when Shutdown closes it
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

func (u *upstream) add(t testing.TB, s string) {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("fake upstream record %q: %v", s, err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	n := strings.ToLower(rr.Header().Name)
	u.records[n] = append(u.records[n], rr)
}

func (u *upstream) count(name string, qtype uint16) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.asked[strings.ToLower(name)+" "+dns.TypeToString[qtype]]
}

func (u *upstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.asked {
		n += c
	}
	return n
}

func (u *upstream) serve(w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	u.mu.Lock()
	u.asked[name+" "+dns.TypeToString[q.Qtype]]++
	rrs, found := u.records[name]
	u.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	if !found {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		soa, _ := dns.NewRR("example. 60 IN SOA ns.example. hostmaster.example. 1 7200 1800 86400 45") // a constant record
		m.Ns = []dns.RR{soa}
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m) // the test client is the only one asking; a failed write fails its test
}

// env is a running cluster DNS server on 127.0.0.1 with a fake upstream.
type env struct {
	S        *clusterdns.Server
	UDP, TCP string
	Up       *upstream
}

func start(t testing.TB, cfg clusterdns.Config, up *upstream) *env {
	t.Helper()
	if cfg.Host == nil {
		cfg.Host = &clusterdns.ResolvConf{}
		if up != nil {
			cfg.Host.Nameservers = []string{up.Addr}
		}
	}
	s, err := clusterdns.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{S: s, Up: up}
	e.UDP, e.TCP = serve(t, s)
	return e
}

// serve runs s on new UDP and TCP listeners on 127.0.0.1 until the test ends.
func serve(t testing.TB, s *clusterdns.Server) (udp, tcp string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- s.ServePacket(ctx, pc) }()
	go func() { errs <- s.ServeStream(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	})
	// Wait until both answer.
	for _, n := range []struct{ net, addr string }{{"udp", pc.LocalAddr().String()}, {"tcp", ln.Addr().String()}} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			c := &dns.Client{Net: n.net, Timeout: 200 * time.Millisecond}
			m := new(dns.Msg)
			m.SetQuestion("dns-version.cluster.local.", dns.TypeTXT)
			if _, _, err := c.Exchange(m, n.addr); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("server on %s %s does not answer: %v", n.net, n.addr, err)
			}
		}
	}
	return pc.LocalAddr().String(), ln.Addr().String()
}

func query(t testing.TB, network, addr, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns != 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: edns}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

// rrs renders records as zone-file lines, sorted.
func rrs(rs []dns.RR) []string {
	var out []string
	for _, r := range rs {
		if r.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.ReplaceAll(r.String(), "\t", " "))
	}
	sort.Strings(out)
	return out
}

// Fixtures.

func svc(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP, Ports: ports}}
	if clusterIP != "" && clusterIP != corev1.ClusterIPNone {
		s.Spec.ClusterIPs = strings.Split(clusterIP, ",")
		s.Spec.ClusterIP = s.Spec.ClusterIPs[0]
	}
	return s
}

func svcPort(name string, p int32, proto corev1.Protocol) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, Protocol: proto}
}

type ep struct {
	addr     string
	hostname string
	ready    *bool
}

func slice(ns, name, service string, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: service}}, AddressType: discoveryv1.AddressTypeIPv4, Ports: ports}
	for _, e := range eps {
		d := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if netip.MustParseAddr(e.addr).Is6() {
			es.AddressType = discoveryv1.AddressTypeIPv6
		}
		if e.hostname != "" {
			d.Hostname = ptr.To(e.hostname)
		}
		es.Endpoints = append(es.Endpoints, d)
	}
	return es
}

func epPort(name string, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(p), Protocol: ptr.To(corev1.ProtocolTCP)}
}

func podAt(ns, name, ip string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:   corev1.PodSpec{DNSPolicy: corev1.DNSClusterFirst},
		Status: corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}}
}
