package clusterdns_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/clusterdns"
)

// TestForwardCache: names outside the cluster domain go to the upstream once, then come
// from the cache with TTLs counting down until they expire; NXDOMAIN is kept for the SOA's
// negative TTL.
func TestForwardCache(t *testing.T) {
	up := startUpstream(t, "www.example.com. 300 IN A 192.0.2.10", "zero.example.com. 0 IN A 192.0.2.11")
	clk := clocktesting.NewFakeClock(epoch)
	e := start(t, clusterdns.Config{Clock: clk}, up)

	ttl := func(name string) uint32 {
		r := query(t, "udp", e.UDP, name, dns.TypeA, 0)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s: %v", name, r)
		}
		return r.Answer[0].Header().Ttl
	}
	if got := ttl("www.example.com."); got != 300 {
		t.Errorf("first answer TTL %d, want 300", got)
	}
	clk.Step(100 * time.Second)
	if got := ttl("WWW.example.com."); got != 200 {
		t.Errorf("cached answer TTL %d, want 200", got)
	}
	if n := up.count("www.example.com.", dns.TypeA); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
	clk.Step(200 * time.Second)
	if got := ttl("www.example.com."); got != 300 {
		t.Errorf("answer after expiry TTL %d, want 300 (asked again)", got)
	}
	if n := up.count("www.example.com.", dns.TypeA); n != 2 {
		t.Errorf("upstream asked %d times after expiry, want 2", n)
	}

	// TTL 0 is never kept.
	ttl("zero.example.com.")
	ttl("zero.example.com.")
	if n := up.count("zero.example.com.", dns.TypeA); n != 2 {
		t.Errorf("TTL 0 answer: upstream asked %d times, want 2", n)
	}

	// NXDOMAIN is kept for min(SOA TTL 60, minimum 45) = 45 s.
	for range 2 {
		if r := query(t, "udp", e.UDP, "nope.example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
			t.Fatalf("nope.example.com: %v", r)
		}
	}
	clk.Step(44 * time.Second)
	query(t, "udp", e.UDP, "nope.example.com.", dns.TypeA, 0)
	if n := up.count("nope.example.com.", dns.TypeA); n != 1 {
		t.Errorf("NXDOMAIN within its negative TTL: upstream asked %d times, want 1", n)
	}
	clk.Step(2 * time.Second)
	query(t, "udp", e.UDP, "nope.example.com.", dns.TypeA, 0)
	if n := up.count("nope.example.com.", dns.TypeA); n != 2 {
		t.Errorf("NXDOMAIN past its negative TTL: upstream asked %d times, want 2", n)
	}
}

// TestForwardFailover: an upstream that does not answer is skipped for the next.
func TestForwardFailover(t *testing.T) {
	up := startUpstream(t, "www.example.com. 300 IN A 192.0.2.10")
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	e := start(t, clusterdns.Config{UpstreamTimeout: 200 * time.Millisecond,
		Host: &clusterdns.ResolvConf{Nameservers: []string{dead.LocalAddr().String(), up.Addr}}}, up)
	if r := query(t, "udp", e.UDP, "www.example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("got %v", r)
	}
}

// TestNeverForwardsToItself: a nameserver that is the server itself (its listener, or an
// address in Config.Self) is not an upstream; with no other, external names get SERVFAIL
// at once instead of looping.
func TestNeverForwardsToItself(t *testing.T) {
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ { // a port free for UDP may be taken for TCP
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
	s, err := clusterdns.New(clusterdns.Config{
		Self: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Host: &clusterdns.ResolvConf{Nameservers: []string{pc.LocalAddr().String(), "10.96.0.10"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 2)
	go func() { errs <- s.ServePacket(ctx, pc) }()
	go func() { errs <- s.ServeStream(ctx, ln) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}()
	var r *dns.Msg
	for i := 0; ; i++ {
		m := new(dns.Msg)
		m.SetQuestion("www.example.com.", dns.TypeA)
		r, _, err = (&dns.Client{Timeout: time.Second}).Exchange(m, pc.LocalAddr().String())
		if err == nil || i > 50 {
			break
		}
		time.Sleep(20 * time.Millisecond) // the server is starting
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

// TestResolvConfUpstreams: with no Host, the server reads the nameservers and search
// domains of the resolv.conf it is given.
func TestResolvConfUpstreams(t *testing.T) {
	up := startUpstream(t, "www.example.com. 300 IN A 192.0.2.10")
	path := t.TempDir() + "/resolv.conf"
	host, port, _ := net.SplitHostPort(up.Addr) // an address the test made
	writeFile(t, path, fmt.Sprintf("# generated\nsearch corp.example.\nnameserver %s:%s\noptions edns0\n", host, port))
	s, err := clusterdns.New(clusterdns.Config{ResolvConf: path})
	if err != nil {
		t.Fatal(err)
	}
	udp, _ := serve(t, s)
	if r := query(t, "udp", udp, "www.example.com.", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Fatalf("got %v", r)
	}
	// The host's search domain is in a pod's search path, after the cluster's.
	s.UpsertPod(podAt("default", "p", "127.0.0.1"))
	up.add(t, "db.corp.example. 300 IN A 192.0.2.20")
	r := query(t, "udp", udp, "db.default.svc.cluster.local.", dns.TypeA, 0)
	if len(r.Answer) != 2 || r.Answer[1].Header().Name != "db.corp.example." {
		t.Fatalf("autopath through the host's search domain: %v", r.Answer)
	}
}

// TestTruncation: a UDP answer larger than the client's buffer (512 bytes without EDNS0,
// its EDNS0 size up to the server's 1232 with it) is truncated with TC set; over TCP the
// whole answer comes.
func TestTruncation(t *testing.T) {
	e := start(t, clusterdns.Config{}, nil)
	e.S.UpsertService(svc("default", "big", corev1.ClusterIPNone))
	var eps []ep
	for i := range 200 {
		eps = append(eps, ep{addr: fmt.Sprintf("10.244.%d.%d", i/250, i%250+1)})
	}
	e.S.UpsertEndpointSlice(slice("default", "big-1", "big", []discoveryv1.EndpointPort{epPort("http", 80)}, eps...))

	for _, c := range []struct {
		net  string
		edns uint16
		tc   bool
		max  int
	}{{"udp", 0, true, 512}, {"udp", 1232, true, 1232}, {"udp", 4096, true, 1232}, {"tcp", 0, false, 65535}} {
		r := query(t, c.net, map[string]string{"udp": e.UDP, "tcp": e.TCP}[c.net], "big.default.svc.cluster.local.", dns.TypeA, c.edns)
		if r.Truncated != c.tc {
			t.Errorf("%s edns %d: TC %v, want %v", c.net, c.edns, r.Truncated, c.tc)
		}
		r.Compress = true // as it was sent
		if r.Len() > c.max {
			t.Errorf("%s edns %d: %d bytes, more than %d", c.net, c.edns, r.Len(), c.max)
		}
		if !c.tc && len(r.Answer) != 200 {
			t.Errorf("%s: %d records, want 200", c.net, len(r.Answer))
		}
		if c.edns != 0 {
			if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != 1232 {
				t.Errorf("%s edns %d: OPT %v, want one advertising 1232", c.net, c.edns, opt)
			}
		}
	}
}

// TestEDNSVersion: an EDNS version other than 0 gets BADVERS.
func TestEDNSVersion(t *testing.T) {
	e := start(t, clusterdns.Config{}, nil)
	m := new(dns.Msg)
	m.SetQuestion("dns-version.cluster.local.", dns.TypeTXT)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, e.UDP)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeBadVers {
		t.Errorf("rcode %s, want BADVERS", dns.RcodeToString[r.Rcode])
	}
}

// TestUpstreamWrongQuestion: an upstream answer to another question than the one asked (a
// confused or spoofing server) is not taken, nor cached.
func TestUpstreamWrongQuestion(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Question[0].Name = "evil.example."
		rr, _ := dns.NewRR("evil.example. 300 IN A 192.0.2.66") // a constant record
		m.Answer = []dns.RR{rr}
		_ = w.WriteMsg(m) // the test's client is the only one asking
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }() // ends at Shutdown
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	e := start(t, clusterdns.Config{Host: &clusterdns.ResolvConf{Nameservers: []string{pc.LocalAddr().String()}}}, nil)
	if r := query(t, "udp", e.UDP, "www.example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Errorf("got %s %v, want SERVFAIL", dns.RcodeToString[r.Rcode], r.Answer)
	}
}
