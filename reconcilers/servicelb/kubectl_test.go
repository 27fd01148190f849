package servicelb_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/servicelb"
)

func ingress(t *testing.T, c *reconcilerstest.Cluster, name string) string {
	t.Helper()
	s, err := c.Client.CoreV1().Services("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, i := range s.Status.LoadBalancer.Ingress {
		ips = append(ips, i.IP)
	}
	return strings.Join(ips, ",")
}

// A LoadBalancer Service gets the nodes' addresses as its ingress (kubectl shows them as
// EXTERNAL-IP); a second one on the same port stays <pending> with a PortInUse Warning, and
// gets the addresses once the first is gone.
func TestLoadBalancerGetsNodeAddresses(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 2})
	nodes, err := c.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && !strings.Contains(strings.Join(want, ","), a.Address) {
				want = append(want, a.Address)
			}
		}
	}
	wantIPs := strings.Join(want, ",")
	c.MustKubectl("create", "service", "loadbalancer", "first", "--tcp=80:8080")
	c.Eventually(10*time.Second, func() (bool, string) {
		got := ingress(t, c, "first")
		return got == wantIPs, fmt.Sprintf("ingress %q, want %q", got, wantIPs)
	})
	out := c.MustKubectl("get", "svc", "first")
	if !strings.Contains(out, wantIPs) || !strings.Contains(out, "80:3") {
		t.Errorf("kubectl get svc:\n%s", out)
	}
	c.MustKubectl("create", "service", "loadbalancer", "second", "--tcp=80:9090")
	c.Eventually(10*time.Second, func() (bool, string) {
		evs, err := c.Client.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=second"})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Reason == servicelb.ReasonPortInUse && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "default/first") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("events %v", evs.Items)
	})
	c.WaitReconciled()
	if got := ingress(t, c, "second"); got != "" {
		t.Errorf("second has ingress %q while first holds port 80", got)
	}
	if out := c.MustKubectl("get", "svc", "second"); !strings.Contains(out, "<pending>") {
		t.Errorf("kubectl get svc second:\n%s", out)
	}
	c.MustKubectl("delete", "svc", "first")
	c.Eventually(10*time.Second, func() (bool, string) {
		got := ingress(t, c, "second")
		return got == wantIPs, fmt.Sprintf("ingress %q, want %q", got, wantIPs)
	})
}
