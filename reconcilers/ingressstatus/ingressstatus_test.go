package ingressstatus_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

func address(t *testing.T, c *reconcilerstest.Cluster, name string) string {
	t.Helper()
	ing, err := c.Client.NetworkingV1().Ingresses("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, i := range ing.Status.LoadBalancer.Ingress {
		ips = append(ips, i.IP)
	}
	return strings.Join(ips, ",")
}

// An Ingress of logplane's class (named, or none while logplane's class is the default) gets
// the nodes' addresses, which `kubectl get ingress` prints as ADDRESS; one of another
// controller's class gets none.
func TestIngressGetsNodeAddresses(t *testing.T) {
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
	c.MustKubectl("create", "ingress", "named", "--class=logplane", "--rule=foo.example.com/=web:80")
	c.MustKubectl("create", "ingress", "classless", "--rule=bar.example.com/*=web:80")
	c.MustApply(`
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: other}
spec: {controller: example.com/ingress}`)
	c.MustKubectl("create", "ingress", "others", "--class=other", "--rule=baz.example.com/=web:80")
	for _, name := range []string{"named", "classless"} {
		c.Eventually(10*time.Second, func() (bool, string) {
			got := address(t, c, name)
			return got == wantIPs, fmt.Sprintf("%s: address %q, want %q", name, got, wantIPs)
		})
	}
	c.WaitReconciled()
	if got := address(t, c, "others"); got != "" {
		t.Errorf("another controller's Ingress got address %q", got)
	}
	out := c.MustKubectl("get", "ingress", "named")
	if !strings.Contains(out, "NAME    CLASS      HOSTS             ADDRESS") || !strings.Contains(out, "named   logplane   foo.example.com   "+wantIPs+"   80 ") {
		t.Errorf("kubectl get ingress:\n%s", out)
	}
}
