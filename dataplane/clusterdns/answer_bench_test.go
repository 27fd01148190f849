package clusterdns_test

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/logplane/logplane/dataplane/clusterdns"
)

// BenchmarkAnswer is the handler alone, without sockets: the CPU one query costs.
func BenchmarkAnswer(b *testing.B) {
	up := startUpstream(b, "example.com. 300 IN A 192.0.2.1")
	s, err := clusterdns.New(clusterdns.Config{Host: &clusterdns.ResolvConf{Nameservers: []string{up.Addr}}})
	if err != nil {
		b.Fatal(err)
	}
	feed(s)
	s.UpsertPod(podAt("default", "client", "127.0.0.1"))
	src := netip.MustParseAddr("127.0.0.1")
	for _, c := range []struct{ name, q string }{
		{"service", "web.default.svc.cluster.local."},
		{"headless", "db.default.svc.cluster.local."},
		{"external", "example.com.default.svc.cluster.local."},
		{"nxdomain", "nope.svc.cluster.local."},
	} {
		b.Run("name="+c.name, func(b *testing.B) {
			q := new(dns.Msg)
			q.SetQuestion(c.q, dns.TypeA)
			b.ReportAllocs()
			for b.Loop() {
				r := s.Answer(b.Context(), src, q, true)
				if _, err := r.Pack(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
