package apiserver_test

import (
	"testing"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

const webPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
    - namespaceSelector: {matchLabels: {team: blue}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - port: http
    - port: 8000
      endPort: 8080
`

// TestKubectlNetworkPolicy: NetworkPolicy is served (networking.k8s.io/v1, netpol), defaulted
// and printed as Kubernetes does, and what Kubernetes refuses gets its 422.
func TestKubectlNetworkPolicy(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	must(t, s, webPolicy, []string{"networkpolicy.networking.k8s.io/web created"}, "apply", "-f", "-")
	must(t, s, "", []string{"NAME", "POD-SELECTOR", "web", "app=web"}, "get", "netpol")
	must(t, s, "", []string{"policyTypes:\n  - Ingress", "protocol: TCP", "endPort: 8080"}, "get", "networkpolicy", "web", "-o", "yaml")
	must(t, s, "", []string{"PodSelector:     app=web", "Allowing ingress traffic:", "IPBlock:", "Except: 10.1.0.0/16"}, "describe", "netpol", "web")
	bad := webPolicy + "      protocol: ICMP\n"
	fails(t, s, bad, []string{"is invalid", `spec.ingress[0].ports[1].protocol: Unsupported value: "ICMP"`}, "apply", "-f", "-")
	fails(t, s, webPolicy[:len(webPolicy)-len("      endPort: 8080\n")]+"      endPort: 80\n", []string{"is invalid", "spec.ingress[0].ports[1].endPort: Invalid value: 80: must be greater than or equal to `port`"}, "apply", "-f", "-")
	must(t, s, "", []string{"endPort: 8080"}, "get", "networkpolicy", "web", "-o", "yaml")
	must(t, s, "", []string{`networkpolicy.networking.k8s.io "web" deleted`}, "delete", "netpol", "web")
}
