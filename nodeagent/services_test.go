package nodeagent_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/serviceproxy"
	"github.com/logplane/logplane/nodeagent"
)

// The agent feeds the service proxy from the log: the Service range is routed to the machine
// before any Service exists, a Service and its EndpointSlice written through the API become
// rules, and a deleted Service leaves none. The proxy programs a network namespace of the
// test's own.
func TestServiceProxyFedFromTheLog(t *testing.T) {
	dataplanetest.RequireNetworking(t)
	ns := dataplanetest.NewNetNS(t, "svc")
	p, err := serviceproxy.New(serviceproxy.Config{NodeName: "sim-1", NetNS: ns.Path(),
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, apiservertest.Options{})
	startFleet(t, c, 1, func(f *nodeagent.FleetConfig) { f.Template.Services = p })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := p.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Exec("ip", "route", "show", "10.96.0.0/16"); err != nil || !strings.Contains(out, "dev lpsvc0") {
		t.Fatalf("the service range is not routed to lpsvc0 at start: %q %v", out, err)
	}

	svc, err := c.client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}, Selector: map[string]string{"app": "web"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.client.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.3.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip := svc.Spec.ClusterIP
	table := func() string {
		out, err := ns.Exec("nft", "list", "table", "ip", serviceproxy.DefaultTable)
		if err != nil {
			t.Fatalf("nft list table: %v: %s", err, out)
		}
		return out
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		out := table()
		return strings.Contains(out, ip+" . tcp . 80") && strings.Contains(out, "10.244.3.7 . 8080"), out
	})
	if err := c.client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		out := table()
		return !strings.Contains(out, ip+" . tcp . 80") && !strings.Contains(out, "10.244.3.7"), out
	})
}

func waitFor(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
