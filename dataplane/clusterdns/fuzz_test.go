package clusterdns_test

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/clusterdns"
)

// FuzzAnswer feeds arbitrary wire messages to the query handler: whatever unpacks must get
// an answer that packs, with the query's ID, and nothing may panic. Its seed corpus (one
// query of every kind the server answers, and some malformed ones) runs as a plain test;
// `go test -fuzz FuzzAnswer ./dataplane/clusterdns` explores further.
func FuzzAnswer(f *testing.F) {
	seed := func(name string, qtype uint16, edit func(*dns.Msg)) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if edit != nil {
			edit(m)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"web.default.svc.cluster.local.", dns.TypeA}, {"db.default.svc.cluster.local.", dns.TypeAAAA},
		{"_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV}, {"db-0.db.default.svc.cluster.local.", dns.TypeA},
		{"ext.default.svc.cluster.local.", dns.TypeA}, {"alias.default.svc.cluster.local.", dns.TypeANY},
		{"20.0.96.10.in-addr.arpa.", dns.TypePTR}, {"1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR},
		{"10-244-0-1.default.pod.cluster.local.", dns.TypeA}, {"fd00--1.default.pod.cluster.local.", dns.TypeAAAA},
		{"dns-version.cluster.local.", dns.TypeTXT}, {"cluster.local.", dns.TypeSOA}, {"cluster.local.", dns.TypeNS},
		{"example.com.default.svc.cluster.local.", dns.TypeA}, {"www.example.com.", dns.TypeA}, {".", dns.TypeNS},
		{"a.b.c.d.e.f.cluster.local.", dns.TypeA}, {"cluster.local.", dns.TypeAXFR}, {"x.cluster.local.", dns.TypeOPT},
	} {
		seed(q.name, q.qtype, nil)
	}
	seed("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(4096, true) })
	seed("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(100, false) })
	seed("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) })
	seed("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Response = true })
	seed("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate })
	seed("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
	seed("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Question = nil })
	f.Add([]byte{0, 1, 2}, false)

	up := startUpstream(f, "www.example.com. 300 IN A 192.0.2.10", "example.com. 300 IN A 192.0.2.1")
	s, err := clusterdns.New(clusterdns.Config{Clock: clocktesting.NewFakeClock(epoch), Host: &clusterdns.ResolvConf{Nameservers: []string{up.Addr}}})
	if err != nil {
		f.Fatal(err)
	}
	feed(s)
	s.UpsertPod(podAt("default", "client", "127.0.0.1"))
	src := netip.MustParseAddr("127.0.0.1")

	f.Fuzz(func(t *testing.T, data []byte, udp bool) {
		q := new(dns.Msg)
		if err := q.Unpack(data); err != nil {
			return // the server's reader drops what does not unpack
		}
		r := s.Answer(t.Context(), src, q, udp)
		b, err := r.Pack()
		if err != nil {
			t.Fatalf("answer to %v does not pack: %v\n%v", q, err, r)
		}
		if r.Id != q.Id || !r.Response {
			t.Fatalf("answer header %v for query %v", r.MsgHdr, q.MsgHdr)
		}
		if udp && len(b) > 1232 {
			t.Fatalf("UDP answer of %d bytes", len(b))
		}
	})
}
