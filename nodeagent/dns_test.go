package nodeagent_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/dataplane/clusterdns"
	"github.com/logplane/logplane/nodeagent"
)

// The agent feeds the cluster DNS server from the log: a Service created through the API
// resolves to its cluster IP, and stops resolving once deleted.
func TestClusterDNSFedFromTheLog(t *testing.T) {
	srv, err := clusterdns.New(clusterdns.Config{Host: &clusterdns.ResolvConf{}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.ServePacket(ctx, pc) }()
	t.Cleanup(func() { cancel(); pc.Close(); <-served })

	c := newCluster(t, apiservertest.Options{})
	startFleet(t, c, 1, func(f *nodeagent.FleetConfig) { f.Template.DNS = srv })
	svc, err := c.client.CoreV1().Services("default").Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}, Selector: map[string]string{"app": "web"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func() (int, string) {
		m := new(dns.Msg)
		m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
		r, _, err := new(dns.Client).Exchange(m, pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) == 1 {
			return r.Rcode, r.Answer[0].(*dns.A).A.String()
		}
		return r.Rcode, ""
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		rc, ip := lookup()
		return rc == dns.RcodeSuccess && ip == svc.Spec.ClusterIP, dns.RcodeToString[rc] + " " + ip
	})
	if err := c.client.CoreV1().Services("default").Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		rc, ip := lookup()
		return rc == dns.RcodeNameError, dns.RcodeToString[rc] + " " + ip
	})
}
