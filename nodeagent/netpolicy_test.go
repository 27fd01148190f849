package nodeagent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/netpolicy"
	"github.com/logplane/logplane/nodeagent"
)

const clientOnly = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
`

// TestFollowNetworkPolicies: NetworkPolicies, pods and namespaces written
// through the API reach the Enforcer from the log: the policy's chain
// appears with the selected pod and its peer in its sets, a peer that
// loses its label leaves them, and a deleted policy leaves nothing.
func TestFollowNetworkPolicies(t *testing.T) {
	dataplanetest.RequireNetworking(t)
	c := newCluster(t, apiservertest.Options{})
	startFleet(t, c, 1, nil)
	node := dataplanetest.NewNetNS(t, "np")
	cfg := netpolicy.Config{NetNS: node.Path()}
	enf, err := netpolicy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- nodeagent.FollowNetworkPolicies(ctx, c.api.API.Store(), enf, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("FollowNetworkPolicies: %v", err)
		}
		if err := netpolicy.Cleanup(context.WithoutCancel(t.Context()), cfg); err != nil {
			t.Error(err)
		}
	})

	for name, labels := range map[string]map[string]string{"web": {"app": "web"}, "client": {"role": "client"}} {
		pod := podOn(name, "sim-0", "example/web:1", func(p *corev1.Pod) { p.Labels = labels })
		if _, err := c.client.CoreV1().Pods("default").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	web := c.waitPod("default", "web", 10*time.Second, "Running", running)
	client := c.waitPod("default", "client", 10*time.Second, "Running", running)
	c.must(clientOnly, []string{"networkpolicy.networking.k8s.io/web created"}, "apply", "-f", "-")

	table := func(want func(string) bool, what string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _ := node.Exec("nft", "list", "table", "ip", netpolicy.DefaultTable)
			if want(out) {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the table after 10s:\n%s", what, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	table(func(s string) bool {
		return strings.Contains(s, "jump p0-in") && strings.Contains(s, web.Status.PodIP) && strings.Contains(s, client.Status.PodIP)
	}, "policy with its pods")
	c.must("", []string{"pod/client unlabeled"}, "label", "pod", "client", "role-")
	table(func(s string) bool {
		return strings.Contains(s, "jump p0-in") && strings.Contains(s, web.Status.PodIP) && !strings.Contains(s, client.Status.PodIP)
	}, "peer relabelled")
	c.must("", []string{`networkpolicy.networking.k8s.io "web" deleted`}, "delete", "netpol", "web")
	table(func(s string) bool {
		return strings.Contains(s, "table ip "+netpolicy.DefaultTable) && !strings.Contains(s, "p0-in") && !strings.Contains(s, web.Status.PodIP)
	}, "policy deleted")
}
