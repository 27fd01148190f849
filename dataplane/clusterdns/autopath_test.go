package clusterdns_test

import (
	"slices"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/clusterdns"
)

// TestAutopath: a pod's resolver asks "<name>.<ns>.svc.cluster.local" first; the server
// walks the rest of the pod's search path itself and answers at once behind a CNAME.
func TestAutopath(t *testing.T) {
	up := startUpstream(t, "example.com. 300 IN A 192.0.2.1")
	e := start(t, clusterdns.Config{Clock: clocktesting.NewFakeClock(epoch)}, up)
	feed(e.S)
	e.S.UpsertPod(podAt("default", "client", "127.0.0.1")) // the test's queries come from 127.0.0.1

	cases := []struct {
		name   string
		rcode  int
		answer []string
	}{
		// An external name: one exchange instead of four.
		{"example.com.default.svc.cluster.local.", dns.RcodeSuccess, []string{
			"example.com. 300 IN A 192.0.2.1", "example.com.default.svc.cluster.local. 300 IN CNAME example.com."}},
		// A Service in another namespace, asked by "web.ns2".
		{"web.ns2.default.svc.cluster.local.", dns.RcodeSuccess, []string{
			"web.ns2.default.svc.cluster.local. 30 IN CNAME web.ns2.svc.cluster.local.", "web.ns2.svc.cluster.local. 30 IN A 10.96.1.20"}},
		// A Service of the pod's own namespace answers as asked, with no CNAME.
		{"web.default.svc.cluster.local.", dns.RcodeSuccess, []string{"web.default.svc.cluster.local. 30 IN A 10.96.0.20"}},
		// Nothing found anywhere: the first NXDOMAIN, and the client goes on as usual.
		{"nope.example.com.default.svc.cluster.local.", dns.RcodeNameError, nil},
	}
	for _, c := range cases {
		r := query(t, "udp", e.UDP, c.name, dns.TypeA, 0)
		if r.Rcode != c.rcode || !slices.Equal(rrs(r.Answer), c.answer) {
			t.Errorf("%s: %s %v, want %s %v", c.name, dns.RcodeToString[r.Rcode], rrs(r.Answer), dns.RcodeToString[c.rcode], c.answer)
		}
		if len(r.Answer) > 1 && r.Answer[0].Header().Rrtype != dns.TypeCNAME {
			t.Errorf("%s: the CNAME is not first: %v", c.name, r.Answer)
		}
		if r.Question[0].Name != c.name {
			t.Errorf("%s: question %s", c.name, r.Question[0].Name)
		}
	}
	if n := up.total(); n != 2 {
		t.Errorf("upstream asked %d questions (example.com, nope.example.com), want 2", n)
	}

	// A pod of another namespace gets no autopath for default's names.
	e.S.UpsertPod(podAt("ns2", "client", "127.0.0.1"))
	e.S.DeletePod("default", "client")
	if r := query(t, "udp", e.UDP, "example.com.default.svc.cluster.local.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("other namespace: %s %v, want NXDOMAIN", dns.RcodeToString[r.Rcode], r.Answer)
	}
	// A pod whose search path does not start with its namespace's (dnsPolicy None) neither.
	none := podAt("default", "none", "127.0.0.1")
	none.Spec.DNSPolicy = corev1.DNSNone
	none.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}}
	e.S.DeletePod("ns2", "client")
	e.S.UpsertPod(none)
	if r := query(t, "udp", e.UDP, "example.com.default.svc.cluster.local.", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess {
		t.Errorf("dnsPolicy None with the same first search domain: %s, want autopath", dns.RcodeToString[r.Rcode])
	}
	e.S.DeletePod("default", "none")
	if r := query(t, "udp", e.UDP, "example.com.default.svc.cluster.local.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("deleted pod: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}

	// Autopath off.
	off := start(t, clusterdns.Config{NoAutopath: true}, up)
	off.S.UpsertPod(podAt("default", "client", "127.0.0.1"))
	if r := query(t, "udp", off.UDP, "example.com.default.svc.cluster.local.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("NoAutopath: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}
