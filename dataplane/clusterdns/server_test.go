package clusterdns_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/dataplane/clusterdns"
)

var epoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

const soaLine = "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1796083200 7200 1800 86400 30"

// feed gives the server the cluster every record test asks about.
func feed(s *clusterdns.Server) {
	for _, ns := range []string{"default", "ns2", "kube-system"} {
		s.UpsertNamespace(ns)
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	s.UpsertService(svc("default", "web", "10.96.0.20", svcPort("http", 80, tcp), svcPort("metrics", 9090, tcp), svcPort("dns", 53, udp)))
	s.UpsertService(svc("default", "unnamed", "10.96.0.22", svcPort("", 8080, tcp)))
	s.UpsertService(svc("default", "dual", "10.96.0.21,fd00::21", svcPort("http", 80, tcp)))
	s.UpsertService(svc("ns2", "web", "10.96.1.20", svcPort("http", 80, tcp)))
	s.UpsertEndpointSlice(slice("default", "web-abc", "web", []discoveryv1.EndpointPort{epPort("http", 8080)},
		ep{addr: "10.244.0.10"}, ep{addr: "10.244.0.11", ready: ptr.To(false)}))

	// A StatefulSet's headless Service: pods web-0, web-1 carry hostnames (pod hostname +
	// subdomain), db-2 is not ready, one endpoint has no hostname.
	s.UpsertService(svc("default", "db", corev1.ClusterIPNone, svcPort("pg", 5432, tcp)))
	s.UpsertEndpointSlice(slice("default", "db-v4", "db", []discoveryv1.EndpointPort{epPort("pg", 5432)},
		ep{addr: "10.244.0.5", hostname: "db-0", ready: ptr.To(true)}, ep{addr: "10.244.0.6", hostname: "db-1"},
		ep{addr: "10.244.0.7", hostname: "db-2", ready: ptr.To(false)}, ep{addr: "10.244.0.8"}))
	s.UpsertEndpointSlice(slice("default", "db-v6", "db", []discoveryv1.EndpointPort{epPort("pg", 5432)},
		ep{addr: "fd00::5", hostname: "db-0"}))

	// publishNotReadyAddresses publishes the endpoint that is not ready.
	pub := svc("default", "pub", corev1.ClusterIPNone, svcPort("http", 80, tcp))
	pub.Spec.PublishNotReadyAddresses = true
	s.UpsertService(pub)
	s.UpsertEndpointSlice(slice("default", "pub-1", "pub", []discoveryv1.EndpointPort{epPort("http", 80)},
		ep{addr: "10.244.0.30", hostname: "p-0", ready: ptr.To(false)}))
	s.UpsertService(svc("default", "empty", corev1.ClusterIPNone))
	s.UpsertEndpointSlice(slice("default", "empty-1", "empty", nil, ep{addr: "10.244.0.40", ready: ptr.To(false)}))

	ext := &corev1.Service{}
	ext.Namespace, ext.Name = "default", "ext"
	ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeExternalName, "www.example.com"
	s.UpsertService(ext)
	inner := ext.DeepCopy()
	inner.Name, inner.Spec.ExternalName = "alias", "web.ns2.svc.cluster.local"
	s.UpsertService(inner)
	byIP := ext.DeepCopy()
	byIP.Name, byIP.Spec.ExternalName = "byip", "192.0.2.1"
	s.UpsertService(byIP)
}

func TestRecords(t *testing.T) {
	up := startUpstream(t, "www.example.com. 300 IN A 192.0.2.10", "www.example.com. 300 IN AAAA 2001:db8::10",
		"10.2.0.192.in-addr.arpa. 300 IN PTR www.example.com.")
	e := start(t, clusterdns.Config{Clock: clocktesting.NewFakeClock(epoch)}, up)
	feed(e.S)

	type tc struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
		soa    bool // the authority section holds the zone's SOA
	}
	A, AAAA, SRV, PTR, TXT, CNAME, MX := dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR, dns.TypeTXT, dns.TypeCNAME, dns.TypeMX
	ok, nx := dns.RcodeSuccess, dns.RcodeNameError
	cases := []tc{
		// Services with a cluster IP (2.3.1).
		{"web.default.svc.cluster.local.", A, ok, []string{"web.default.svc.cluster.local. 30 IN A 10.96.0.20"}, nil, false},
		{"web.default.svc.cluster.local.", AAAA, ok, nil, nil, true},
		{"web.default.svc.cluster.local.", MX, ok, nil, nil, true},
		{"dual.default.svc.cluster.local.", AAAA, ok, []string{"dual.default.svc.cluster.local. 30 IN AAAA fd00::21"}, nil, false},
		{"web.ns2.svc.cluster.local.", A, ok, []string{"web.ns2.svc.cluster.local. 30 IN A 10.96.1.20"}, nil, false},
		{"nope.default.svc.cluster.local.", A, nx, nil, nil, true},
		{"web.nope.svc.cluster.local.", A, nx, nil, nil, true},
		// SRV of named ports (2.3.2).
		{"_http._tcp.web.default.svc.cluster.local.", SRV, ok,
			[]string{"_http._tcp.web.default.svc.cluster.local. 30 IN SRV 0 100 80 web.default.svc.cluster.local."},
			[]string{"web.default.svc.cluster.local. 30 IN A 10.96.0.20"}, false},
		{"_dns._udp.web.default.svc.cluster.local.", SRV, ok,
			[]string{"_dns._udp.web.default.svc.cluster.local. 30 IN SRV 0 100 53 web.default.svc.cluster.local."},
			[]string{"web.default.svc.cluster.local. 30 IN A 10.96.0.20"}, false},
		{"_dns._tcp.web.default.svc.cluster.local.", SRV, nx, nil, nil, true},
		{"_nope._tcp.web.default.svc.cluster.local.", SRV, nx, nil, nil, true},
		{"_http._tcp.web.default.svc.cluster.local.", A, ok, nil, nil, true},
		{"web.default.svc.cluster.local.", SRV, ok, []string{
			"web.default.svc.cluster.local. 30 IN SRV 0 33 53 web.default.svc.cluster.local.",
			"web.default.svc.cluster.local. 30 IN SRV 0 33 80 web.default.svc.cluster.local.",
			"web.default.svc.cluster.local. 30 IN SRV 0 33 9090 web.default.svc.cluster.local.",
		}, []string{"web.default.svc.cluster.local. 30 IN A 10.96.0.20"}, false},
		// An unnamed port has no _port._proto name.
		{"_._tcp.unnamed.default.svc.cluster.local.", SRV, nx, nil, nil, true},
		// Headless Services (2.4.1): one record per ready endpoint.
		{"db.default.svc.cluster.local.", A, ok, []string{
			"db.default.svc.cluster.local. 30 IN A 10.244.0.5", "db.default.svc.cluster.local. 30 IN A 10.244.0.6",
			"db.default.svc.cluster.local. 30 IN A 10.244.0.8"}, nil, false},
		{"db.default.svc.cluster.local.", AAAA, ok, []string{"db.default.svc.cluster.local. 30 IN AAAA fd00::5"}, nil, false},
		{"pub.default.svc.cluster.local.", A, ok, []string{"pub.default.svc.cluster.local. 30 IN A 10.244.0.30"}, nil, false},
		{"empty.default.svc.cluster.local.", A, nx, nil, nil, true},
		// Pod hostname and subdomain records.
		{"db-0.db.default.svc.cluster.local.", A, ok, []string{"db-0.db.default.svc.cluster.local. 30 IN A 10.244.0.5"}, nil, false},
		{"db-0.db.default.svc.cluster.local.", AAAA, ok, []string{"db-0.db.default.svc.cluster.local. 30 IN AAAA fd00::5"}, nil, false},
		{"db-1.db.default.svc.cluster.local.", AAAA, ok, nil, nil, true},
		{"db-2.db.default.svc.cluster.local.", A, nx, nil, nil, true},
		{"10-244-0-8.db.default.svc.cluster.local.", A, ok, []string{"10-244-0-8.db.default.svc.cluster.local. 30 IN A 10.244.0.8"}, nil, false},
		{"p-0.pub.default.svc.cluster.local.", A, ok, []string{"p-0.pub.default.svc.cluster.local. 30 IN A 10.244.0.30"}, nil, false},
		{"10-244-0-10.web.default.svc.cluster.local.", A, ok, []string{"10-244-0-10.web.default.svc.cluster.local. 30 IN A 10.244.0.10"}, nil, false},
		{"10-244-0-11.web.default.svc.cluster.local.", A, nx, nil, nil, true},
		// SRV of a headless Service: one per endpoint (2.4.2).
		{"_pg._tcp.db.default.svc.cluster.local.", SRV, ok, []string{
			"_pg._tcp.db.default.svc.cluster.local. 30 IN SRV 0 33 5432 10-244-0-8.db.default.svc.cluster.local.",
			"_pg._tcp.db.default.svc.cluster.local. 30 IN SRV 0 33 5432 db-0.db.default.svc.cluster.local.",
			"_pg._tcp.db.default.svc.cluster.local. 30 IN SRV 0 33 5432 db-1.db.default.svc.cluster.local.",
		}, []string{
			"10-244-0-8.db.default.svc.cluster.local. 30 IN A 10.244.0.8",
			"db-0.db.default.svc.cluster.local. 30 IN A 10.244.0.5",
			"db-0.db.default.svc.cluster.local. 30 IN AAAA fd00::5",
			"db-1.db.default.svc.cluster.local. 30 IN A 10.244.0.6",
		}, false},
		// ExternalName (2.5): a CNAME, followed through the upstream.
		{"ext.default.svc.cluster.local.", A, ok, []string{
			"ext.default.svc.cluster.local. 30 IN CNAME www.example.com.", "www.example.com. 300 IN A 192.0.2.10"}, nil, false},
		{"ext.default.svc.cluster.local.", AAAA, ok, []string{
			"ext.default.svc.cluster.local. 30 IN CNAME www.example.com.", "www.example.com. 300 IN AAAA 2001:db8::10"}, nil, false},
		{"ext.default.svc.cluster.local.", CNAME, ok, []string{"ext.default.svc.cluster.local. 30 IN CNAME www.example.com."}, nil, false},
		{"alias.default.svc.cluster.local.", A, ok, []string{
			"alias.default.svc.cluster.local. 30 IN CNAME web.ns2.svc.cluster.local.", "web.ns2.svc.cluster.local. 30 IN A 10.96.1.20"}, nil, false},
		{"byip.default.svc.cluster.local.", A, nx, nil, nil, true},
		// PTR (2.3.3, 2.4.3): cluster IPs, endpoints; unknown addresses go upstream.
		{"20.0.96.10.in-addr.arpa.", PTR, ok, []string{"20.0.96.10.in-addr.arpa. 30 IN PTR web.default.svc.cluster.local."}, nil, false},
		{"5.0.244.10.in-addr.arpa.", PTR, ok, []string{"5.0.244.10.in-addr.arpa. 30 IN PTR db-0.db.default.svc.cluster.local."}, nil, false},
		{"8.0.244.10.in-addr.arpa.", PTR, ok, []string{"8.0.244.10.in-addr.arpa. 30 IN PTR 10-244-0-8.db.default.svc.cluster.local."}, nil, false},
		{"1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", PTR, ok,
			[]string{"1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 30 IN PTR dual.default.svc.cluster.local."}, nil, false},
		{"10.2.0.192.in-addr.arpa.", PTR, ok, []string{"10.2.0.192.in-addr.arpa. 300 IN PTR www.example.com."}, nil, false},
		// Pods (pods insecure).
		{"10-244-0-99.default.pod.cluster.local.", A, ok, []string{"10-244-0-99.default.pod.cluster.local. 30 IN A 10.244.0.99"}, nil, false},
		{"fd00--99.default.pod.cluster.local.", AAAA, ok, []string{"fd00--99.default.pod.cluster.local. 30 IN AAAA fd00::99"}, nil, false},
		{"10-244-0-99.nope.pod.cluster.local.", A, nx, nil, nil, true},
		{"not-an-ip.default.pod.cluster.local.", A, nx, nil, nil, true},
		// The schema version, the apex, namespaces, and names that cannot exist.
		{"dns-version.cluster.local.", TXT, ok, []string{`dns-version.cluster.local. 28800 IN TXT "1.1.0"`}, nil, false},
		{"cluster.local.", dns.TypeSOA, ok, []string{soaLine}, nil, false},
		{"cluster.local.", dns.TypeNS, ok, []string{"cluster.local. 30 IN NS ns.dns.cluster.local."}, nil, false},
		{"cluster.local.", A, ok, nil, nil, true},
		{"svc.cluster.local.", A, ok, nil, nil, true},
		{"default.svc.cluster.local.", A, ok, nil, nil, true},
		{"nope.svc.cluster.local.", A, nx, nil, nil, true},
		{"a.b.c.web.default.svc.cluster.local.", A, nx, nil, nil, true},
		{"web.default.nope.cluster.local.", A, nx, nil, nil, true},
		{"example.com.default.svc.cluster.local.", A, nx, nil, nil, true},
		// Names that differ only in case are the same names (2.1); answers keep the asked case.
		{"WEB.Default.SVC.Cluster.Local.", A, ok, []string{"WEB.Default.SVC.Cluster.Local. 30 IN A 10.96.0.20"}, nil, false},
		// Everything else is forwarded.
		{"www.example.com.", A, ok, []string{"www.example.com. 300 IN A 192.0.2.10"}, nil, false},
		{"nope.example.com.", A, nx, nil, nil, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s %s", c.name, dns.TypeToString[c.qtype]), func(t *testing.T) {
			r := query(t, "udp", e.UDP, c.name, c.qtype, 0)
			if r.Rcode != c.rcode {
				t.Fatalf("rcode %s, want %s; answer %v", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode], r.Answer)
			}
			if got := rrs(r.Answer); !slices.Equal(got, c.answer) {
				t.Errorf("answer\n %s\nwant\n %s", strings.Join(got, "\n "), strings.Join(c.answer, "\n "))
			}
			if got := rrs(r.Extra); !slices.Equal(got, c.extra) {
				t.Errorf("additional\n %s\nwant\n %s", strings.Join(got, "\n "), strings.Join(c.extra, "\n "))
			}
			gotSOA := len(r.Ns) == 1 && rrs(r.Ns)[0] == soaLine
			if gotSOA != c.soa {
				t.Errorf("authority %v, want the zone's SOA: %v", r.Ns, c.soa)
			}
			inZone := strings.HasSuffix(strings.ToLower(c.name), "cluster.local.") || c.answer != nil && strings.Contains(c.answer[0], "cluster.local.")
			if r.Authoritative != inZone {
				t.Errorf("authoritative %v, want %v", r.Authoritative, inZone)
			}
		})
	}
}
