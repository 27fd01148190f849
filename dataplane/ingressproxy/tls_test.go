package ingressproxy_test

import (
	"net/http"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/dataplane/ingressproxy"
)

const fakeCN = "logplane Ingress Controller Fake Certificate"

// Certificates are chosen by SNI among the Ingresses' TLS Secrets (exact
// names, then wildcards covering one label); the default self-signed one
// answers everything else, and Ingresses whose Secret is missing or bad,
// with a Warning. A Secret's change is used from the next handshake.
func TestTLSBySNI(t *testing.T) {
	e := newEnv(t)
	e.services(t, "a", "wild", "bad", "implicit")
	e.p.UpdateSecret(e.tlsSecret(t, "a-tls", "a.example.com"))
	e.p.UpdateSecret(e.tlsSecret(t, "wild-tls", "*.wild.example.com"))
	e.p.UpdateSecret(e.tlsSecret(t, "implicit-tls", "implicit.example.com"))
	ing := ingress("tls", 1, rule("a.example.com", "Prefix / a"), rule("*.wild.example.com", "Prefix / wild"))
	ing.Spec.TLS = []networkingv1.IngressTLS{
		{Hosts: []string{"a.example.com"}, SecretName: "a-tls"},
		{Hosts: []string{"*.wild.example.com"}, SecretName: "wild-tls"},
	}
	e.p.UpdateIngress(ing)
	// A TLS section without hosts covers the rules' hosts its certificate
	// is valid for.
	imp := ingress("implicit", 2, rule("implicit.example.com", "Prefix / implicit"), rule("other.example.com", "Prefix / implicit"))
	imp.Spec.TLS = []networkingv1.IngressTLS{{SecretName: "implicit-tls"}}
	e.p.UpdateIngress(imp)

	for _, tc := range []struct{ sni, cn string }{
		{"a.example.com", "a.example.com"},
		{"A.Example.COM", "a.example.com"},
		{"x.wild.example.com", "*.wild.example.com"},
		{"y.x.wild.example.com", fakeCN},
		{"wild.example.com", fakeCN},
		{"implicit.example.com", "implicit.example.com"},
		{"other.example.com", fakeCN},
		{"unknown.example.com", fakeCN},
		{"", fakeCN},
	} {
		if got := e.handshake(t, tc.sni).Subject.CommonName; got != tc.cn {
			t.Errorf("SNI %q: certificate %q, want %q", tc.sni, got, tc.cn)
		}
	}
	if ws := e.takeWarnings(); len(ws) != 0 {
		t.Errorf("warnings for good Secrets: %v", ws)
	}
	// Verified HTTPS through the proxy (the conformance host_rules TLS
	// scenario), over HTTP/1.1 and HTTP/2.
	for _, h2 := range []bool{false, true} {
		c := e.client(h2)
		got := served(t, c, "https://a.example.com/", "a")
		if got.Header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("X-Forwarded-Proto %q over TLS", got.Header.Get("X-Forwarded-Proto"))
		}
		served(t, c, "https://x.wild.example.com/", "wild")
	}

	// Missing, unreadable, and not valid for the host: the default
	// certificate, and a Warning for each.
	bad := ingress("bad", 3, rule("missing.example.com", "Prefix / bad"), rule("garbage.example.com", "Prefix / bad"), rule("mismatch.example.com", "Prefix / bad"))
	bad.Spec.TLS = []networkingv1.IngressTLS{
		{Hosts: []string{"missing.example.com"}, SecretName: "nope"},
		{Hosts: []string{"garbage.example.com"}, SecretName: "garbage"},
		{Hosts: []string{"mismatch.example.com"}, SecretName: "a-tls"},
	}
	e.p.UpdateSecret(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "garbage"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), corev1.TLSPrivateKeyKey: []byte("x")},
	})
	e.p.UpdateIngress(bad)
	for _, sni := range []string{"missing.example.com", "garbage.example.com", "mismatch.example.com"} {
		if got := e.handshake(t, sni).Subject.CommonName; got != fakeCN {
			t.Errorf("SNI %q: certificate %q, want the default", sni, got)
		}
	}
	var reasons []string
	for _, w := range e.takeWarnings() {
		if w.Ingress.Name != "bad" {
			t.Errorf("warning for %v: %v", w.Ingress, w)
		}
		reasons = append(reasons, w.Reason)
	}
	slices.Sort(reasons)
	if want := []string{ingressproxy.ReasonTLSCertificateMismatch, ingressproxy.ReasonTLSSecretInvalid, ingressproxy.ReasonTLSSecretNotFound}; !slices.Equal(reasons, want) {
		t.Errorf("warnings %v, want %v", reasons, want)
	}
	// Still served over HTTPS with the default certificate (a client that
	// does not verify it gets through).
	r := get(t, insecureClient(e), http.MethodGet, "https://garbage.example.com/")
	if r.code != 200 || r.echo.Backend != "bad" {
		t.Errorf("HTTPS with the default certificate: %d %q", r.code, r.echo.Backend)
	}

	// Fixing the Secrets takes effect at the next handshake; the Warnings
	// in force go.
	e.p.UpdateSecret(e.tlsSecret(t, "garbage", "garbage.example.com"))
	e.p.UpdateSecret(e.tlsSecret(t, "nope", "missing.example.com"))
	for _, sni := range []string{"missing.example.com", "garbage.example.com"} {
		if got := e.handshake(t, sni).Subject.CommonName; got != sni {
			t.Errorf("after the fix, SNI %q: certificate %q", sni, got)
		}
	}
	if ws := e.p.Warnings(); len(ws) != 1 || ws[0].Reason != ingressproxy.ReasonTLSCertificateMismatch {
		t.Errorf("Warnings() after the fix: %v, want only the mismatch", ws)
	}
	// A certificate replaced in place.
	e.p.UpdateSecret(e.tlsSecret(t, "a-tls", "a.example.com", "alt.example.com"))
	if got := e.handshake(t, "a.example.com"); !slices.Contains(got.DNSNames, "alt.example.com") {
		t.Errorf("the replaced certificate is not served: %v", got.DNSNames)
	}
	e.p.DeleteSecret(ns, "a-tls")
	if got := e.handshake(t, "a.example.com").Subject.CommonName; got != fakeCN {
		t.Errorf("after the Secret's deletion: %q", got)
	}
}

func insecureClient(e *env) *http.Client {
	c := e.client(false)
	c.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true
	return c
}
