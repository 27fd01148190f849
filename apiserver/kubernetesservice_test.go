package apiserver_test

import (
	"net/netip"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/apiservertest"
)

// The `kubernetes` Service's endpoints are the API servers: each adds its advertised address
// to the Endpoints (marked not to be mirrored) and to the EndpointSlice it writes itself;
// a second server keeps the first one's address. The kube-dns Service is made at the range's
// tenth address.
func TestKubernetesServiceEndpoints(t *testing.T) {
	dir := t.TempDir()
	s := apiservertest.Start(t, apiservertest.Options{DataDir: dir, Configure: func(c *apiserver.Config) {
		c.AdvertiseAddress = netip.MustParseAddrPort("192.0.2.1:6443")
	}})
	cs := clientset(t, s)
	ep, err := cs.CoreV1().Endpoints("default").Get(t.Context(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Addresses[0].IP != "192.0.2.1" ||
		ep.Subsets[0].Ports[0].Port != 6443 || ep.Subsets[0].Ports[0].Name != "https" || ep.Labels[discoveryv1.LabelSkipMirror] != "true" {
		t.Errorf("kubernetes endpoints: %+v", ep)
	}
	es, err := cs.DiscoveryV1().EndpointSlices("default").Get(t.Context(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if es.Labels[discoveryv1.LabelServiceName] != "kubernetes" || len(es.Endpoints) != 1 || es.Endpoints[0].Addresses[0] != "192.0.2.1" ||
		!*es.Endpoints[0].Conditions.Ready || *es.Ports[0].Port != 6443 {
		t.Errorf("kubernetes endpointslice: %+v", es)
	}
	dnsSvc, err := cs.CoreV1().Services("kube-system").Get(t.Context(), "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dnsSvc.Spec.ClusterIP != "10.96.0.10" || dnsSvc.Spec.Selector != nil || len(dnsSvc.Spec.Ports) != 2 ||
		*dnsSvc.Spec.InternalTrafficPolicy != "Local" || apiserver.KubeDNSAddr().String() != "10.96.0.10" {
		t.Errorf("kube-dns service: %+v", dnsSvc.Spec)
	}
	s.Stop()
	s2 := apiservertest.Start(t, apiservertest.Options{DataDir: dir, Configure: func(c *apiserver.Config) {
		c.AdvertiseAddress = netip.MustParseAddrPort("192.0.2.2:6443")
	}})
	es, err = clientset(t, s2).DiscoveryV1().EndpointSlices("default").Get(t.Context(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es.Endpoints) != 2 {
		t.Errorf("after a second server, endpoints %+v", es.Endpoints)
	}
}
