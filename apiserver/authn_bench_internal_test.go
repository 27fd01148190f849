package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/logplane/logplane/apiserver/pki"
)

// BenchmarkAuthenticate is what authenticating one request by its client certificate costs:
// verified=handshake when the TLS handshake verified the chain (the server's own TLS),
// verified=request when the x509 authenticator verifies it on every request.
func BenchmarkAuthenticate(b *testing.B) {
	dir := b.TempDir()
	mat, err := pki.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	a := newAuthenticator(mat.TLS, nil, nil, false)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		b.Fatal(err)
	}
	chain := []*x509.Certificate{cert.Leaf, mat.CA.Cert}
	for _, tc := range []struct {
		name  string
		state tls.ConnectionState
	}{
		{"verified=handshake", tls.ConnectionState{PeerCertificates: chain[:1], VerifiedChains: [][]*x509.Certificate{chain}}},
		{"verified=request", tls.ConnectionState{PeerCertificates: chain[:1]}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/api/v1/namespaces", nil)
			r.TLS = &tc.state
			b.ReportAllocs()
			for b.Loop() {
				if resp, ok, err := a.AuthenticateRequest(r); !ok || err != nil || resp.User.GetName() != pki.AdminUser {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
