package clusterdns_test

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/dataplane/clusterdns"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpdates: answers follow the objects as they change and go.
func TestUpdates(t *testing.T) {
	e := start(t, clusterdns.Config{}, nil)
	s := e.S
	a := func(name string) (int, []string) {
		r := query(t, "tcp", e.TCP, name, dns.TypeA, 0)
		var ips []string
		for _, rr := range r.Answer {
			ips = append(ips, rr.(*dns.A).A.String())
		}
		slices.Sort(ips)
		return r.Rcode, ips
	}
	ptrOf := func(name string) []string {
		r := query(t, "udp", e.UDP, name, dns.TypePTR, 0)
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.(*dns.PTR).Ptr)
		}
		return out
	}
	expect := func(what string, rcode int, ips []string, wantRcode int, want ...string) {
		t.Helper()
		if rcode != wantRcode || !slices.Equal(ips, want) {
			t.Errorf("%s: %s %v, want %s %v", what, dns.RcodeToString[rcode], ips, dns.RcodeToString[wantRcode], want)
		}
	}
	ports := []discoveryv1.EndpointPort{epPort("http", 80)}

	// Slices before their Service: nothing until the Service comes.
	s.UpsertEndpointSlice(slice("default", "h-1", "h", ports, ep{addr: "10.244.0.1", hostname: "h-0"}))
	rc, ips := a("h.default.svc.cluster.local.")
	expect("slice without Service", rc, ips, dns.RcodeNameError)
	s.UpsertService(svc("default", "h", corev1.ClusterIPNone, svcPort("http", 80, corev1.ProtocolTCP)))
	rc, ips = a("h.default.svc.cluster.local.")
	expect("Service after its slice", rc, ips, dns.RcodeSuccess, "10.244.0.1")

	// A second slice adds; a slice that changes replaces.
	s.UpsertEndpointSlice(slice("default", "h-2", "h", ports, ep{addr: "10.244.0.2", hostname: "h-1"}))
	rc, ips = a("h.default.svc.cluster.local.")
	expect("two slices", rc, ips, dns.RcodeSuccess, "10.244.0.1", "10.244.0.2")
	s.UpsertEndpointSlice(slice("default", "h-1", "h", ports, ep{addr: "10.244.0.3", hostname: "h-0"}))
	rc, ips = a("h-0.h.default.svc.cluster.local.")
	expect("endpoint moved", rc, ips, dns.RcodeSuccess, "10.244.0.3")
	if got := ptrOf("1.0.244.10.in-addr.arpa."); got != nil {
		t.Errorf("PTR of an address no endpoint has any more: %v", got)
	}
	if got := ptrOf("3.0.244.10.in-addr.arpa."); !slices.Equal(got, []string{"h-0.h.default.svc.cluster.local."}) {
		t.Errorf("PTR of the new address: %v", got)
	}
	// Readiness changes.
	s.UpsertEndpointSlice(slice("default", "h-2", "h", ports, ep{addr: "10.244.0.2", hostname: "h-1", ready: ptr.To(false)}))
	rc, ips = a("h.default.svc.cluster.local.")
	expect("endpoint not ready", rc, ips, dns.RcodeSuccess, "10.244.0.3")
	// A slice relabelled to another Service leaves the first.
	s.UpsertService(svc("default", "other", corev1.ClusterIPNone))
	s.UpsertEndpointSlice(slice("default", "h-1", "other", ports, ep{addr: "10.244.0.3", hostname: "h-0"}))
	rc, ips = a("h.default.svc.cluster.local.")
	expect("slice moved away", rc, ips, dns.RcodeNameError)
	rc, ips = a("other.default.svc.cluster.local.")
	expect("slice moved in", rc, ips, dns.RcodeSuccess, "10.244.0.3")
	s.DeleteEndpointSlice("default", "h-1")
	rc, ips = a("other.default.svc.cluster.local.")
	expect("slice deleted", rc, ips, dns.RcodeNameError)

	// A Service that changes its cluster IP, then goes.
	s.UpsertService(svc("default", "c", "10.96.0.50"))
	s.UpsertService(svc("default", "c", "10.96.0.51"))
	rc, ips = a("c.default.svc.cluster.local.")
	expect("new cluster IP", rc, ips, dns.RcodeSuccess, "10.96.0.51")
	if got := ptrOf("50.0.96.10.in-addr.arpa."); got != nil {
		t.Errorf("PTR of the old cluster IP: %v", got)
	}
	s.DeleteService("default", "c")
	rc, ips = a("c.default.svc.cluster.local.")
	expect("Service deleted", rc, ips, dns.RcodeNameError)
	if got := ptrOf("51.0.96.10.in-addr.arpa."); got != nil {
		t.Errorf("PTR of a deleted Service: %v", got)
	}

	// Namespaces.
	rc, _ = a("team.svc.cluster.local.")
	expect("unknown namespace", rc, nil, dns.RcodeNameError)
	s.UpsertNamespace("team")
	rc, _ = a("team.svc.cluster.local.")
	expect("namespace", rc, nil, dns.RcodeSuccess)
	s.DeleteNamespace("team")
	rc, _ = a("team.svc.cluster.local.")
	expect("namespace deleted", rc, nil, dns.RcodeNameError)
}

// TestPodsVerified: only addresses of known pods, in their own namespace, are answered.
func TestPodsVerified(t *testing.T) {
	e := start(t, clusterdns.Config{Pods: clusterdns.PodsVerified}, nil)
	e.S.UpsertNamespace("default")
	e.S.UpsertNamespace("other")
	e.S.UpsertPod(podAt("default", "p", "10.244.0.9"))
	for _, c := range []struct {
		name  string
		rcode int
	}{
		{"10-244-0-9.default.pod.cluster.local.", dns.RcodeSuccess},
		{"10-244-0-8.default.pod.cluster.local.", dns.RcodeNameError},
		{"10-244-0-9.other.pod.cluster.local.", dns.RcodeNameError},
	} {
		if r := query(t, "udp", e.UDP, c.name, dns.TypeA, 0); r.Rcode != c.rcode {
			t.Errorf("%s: %s, want %s", c.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
		}
	}
	d := start(t, clusterdns.Config{Pods: clusterdns.PodsDisabled}, nil)
	d.S.UpsertNamespace("default")
	if r := query(t, "udp", d.UDP, "10-244-0-9.default.pod.cluster.local.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("pods disabled: %s", dns.RcodeToString[r.Rcode])
	}
	if _, err := clusterdns.New(clusterdns.Config{Pods: "sometimes", Host: &clusterdns.ResolvConf{}}); err == nil {
		t.Error("an unknown pod mode is accepted")
	}
}

// TestConcurrentFeedAndQueries: queries keep being answered while the index changes under
// them (run with -race).
func TestConcurrentFeedAndQueries(t *testing.T) {
	e := start(t, clusterdns.Config{}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 300 {
			e.S.UpsertService(svc("default", "web", fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)))
			e.S.UpsertEndpointSlice(slice("default", "web-1", "web", []discoveryv1.EndpointPort{epPort("http", 80)},
				ep{addr: fmt.Sprintf("10.244.%d.%d", i/250, i%250+1), hostname: "w"}))
			e.S.UpsertPod(podAt("default", "client", "127.0.0.1"))
			if i%3 == 0 {
				e.S.DeleteService("default", "web")
				e.S.DeleteEndpointSlice("default", "web-1")
				e.S.DeletePod("default", "client")
			}
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		for _, q := range []struct {
			name  string
			qtype uint16
		}{{"web.default.svc.cluster.local.", dns.TypeA}, {"w.web.default.svc.cluster.local.", dns.TypeA}, {"1.0.96.10.in-addr.arpa.", dns.TypePTR}} {
			if r := query(t, "udp", e.UDP, q.name, q.qtype, 0); r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError && r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("%s: %s", q.name, dns.RcodeToString[r.Rcode])
			}
		}
	}
}
