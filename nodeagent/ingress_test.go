package nodeagent_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/dataplane/ingressproxy"
	"github.com/logplane/logplane/nodeagent"
)

// The agent feeds the Ingress proxy from the log and serves it: an Ingress, its Service and
// EndpointSlice written through the API route requests to the endpoint (a server on a
// loopback address of the test's own); an endpoint change applies; a missing Secret is a
// Warning Event on the Ingress; a TLS Secret is served by SNI once an Ingress names it (the
// Secret written first, the Ingress changed afterwards); a deleted Ingress: 404.
func TestIngressProxyFedFromTheLog(t *testing.T) {
	backend := func(addr, name string) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("no loopback address %s: %v", addr, err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) })}
		go srv.Serve(ln) //nolint:errcheck // ends with Close below
		t.Cleanup(func() { srv.Close() })
	}
	backend("127.0.0.31:8080", "one")
	backend("127.0.0.32:8080", "two")

	var agent atomic.Pointer[nodeagent.Agent]
	p, err := ingressproxy.New(ingressproxy.Config{OnWarning: func(w ingressproxy.Warning) {
		if a := agent.Load(); a != nil {
			a.IngressWarning(w)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, apiservertest.Options{})
	f := startFleet(t, c, 1, func(f *nodeagent.FleetConfig) {
		f.Template.Ingress = &nodeagent.Ingress{Proxy: p, HTTP: httpLn, HTTPS: httpsLn}
	})
	agent.Store(f.Agents()[0])
	ctx := t.Context()
	cs := c.client

	if _, err := cs.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "lp"}, Spec: networkingv1.IngressClassSpec{Controller: ingressproxy.DefaultController}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.31"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if slice, err = cs.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, roots := selfSignedPair(t, "secure.example.com")
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "secure-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	prefix := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: networkingv1.IngressSpec{
		IngressClassName: ptr.To("lp"),
		TLS:              []networkingv1.IngressTLS{{Hosts: []string{"other.example.com"}, SecretName: "missing-tls"}},
		Rules: []networkingv1.IngressRule{{Host: "secure.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Name: "http"}}}}}}}}}}}
	if ing, err = cs.NetworkingV1().Ingresses("default").Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	get := func() (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpLn.Addr().String()+"/", nil)
		if err != nil {
			return "", err
		}
		req.Host = "secure.example.com"
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b), err
	}
	waitGet := func(want string) {
		t.Helper()
		waitFor(t, 20*time.Second, func() (bool, string) {
			got, err := get()
			return err == nil && got == want, fmt.Sprintf("GET: %q %v, want %q", got, err, want)
		})
	}
	waitGet("200 one")
	slice.Endpoints[0].Addresses = []string{"127.0.0.32"}
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGet("200 two")
	c.waitEvent("default", "web", ingressproxy.ReasonTLSSecretNotFound, 20*time.Second)

	cert := func() string {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", httpsLn.Addr().String(),
			&tls.Config{ServerName: "secure.example.com", InsecureSkipVerify: true})
		if err != nil {
			return err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	// The Secret, written before any Ingress named it, is served once the Ingress names it.
	ing.Spec.TLS = append(ing.Spec.TLS, networkingv1.IngressTLS{Hosts: []string{"secure.example.com"}, SecretName: "secure-tls"})
	if _, err := cs.NetworkingV1().Ingresses("default").Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		got := cert()
		return got == "secure.example.com", "certificate for secure.example.com: " + got
	})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "secure.example.com"}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+httpsLn.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "secure.example.com"
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "two" {
		t.Errorf("verified HTTPS: %s %q", resp.Status, b)
	}

	if err := cs.NetworkingV1().Ingresses("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGet("404 404 Not Found: no Ingress rule matches this host and path\n")
}

// selfSignedPair makes a self-signed certificate for host: its PEM, its key's PEM, and a pool
// trusting it.
func selfSignedPair(t *testing.T, host string) (certPEM, keyPEM []byte, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), roots
}
