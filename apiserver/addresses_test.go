package apiserver_test

import (
	"strings"
	"testing"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// TestServiceAddressesWithKubectl: the real kubectl sees the default ServiceCIDR and one
// IPAddress per cluster IP, naming its Service (the kubernetes Service's 10.96.0.1 included);
// a second Service asking for a taken cluster IP or node port is refused with Kubernetes'
// message; deleting a Service deletes its IPAddress.
func TestServiceAddressesWithKubectl(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	must(t, s, "", []string{"kubernetes", "10.96.0.0/16"}, "get", "servicecidrs")
	must(t, s, "", []string{"10.96.0.1", "services/default/kubernetes"}, "get", "ipaddresses")
	must(t, s, "", []string{"service/web created"}, "create", "service", "nodeport", "web", "--tcp=80:8080", "--node-port=30500")
	ip := must(t, s, "", nil, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
	must(t, s, "", []string{ip, "services/default/web"}, "get", "ipaddress", ip)
	fails(t, s, "", []string{"provided port is already allocated"}, "create", "service", "nodeport", "other", "--tcp=80:8080", "--node-port=30500")
	fails(t, s, "", []string{"the provided IP is already allocated"}, "create", "service", "clusterip", "other", "--tcp=80:8080", "--clusterip="+ip)
	must(t, s, "", []string{`service "web" deleted`}, "delete", "service", "web")
	fails(t, s, "", []string{"NotFound"}, "get", "ipaddress", ip)
	if out := must(t, s, "", nil, "get", "ipaddresses", "-o", "name"); strings.Contains(out, ip) {
		t.Fatalf("IPAddress %s listed after its Service was deleted:\n%s", ip, out)
	}
}
