package e2e_test

import (
	"bufio"
	"context"
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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIngressWalkthrough is issue 14's Ingress as a user meets it: `logplane up` serves the
// Ingresses of the default IngressClass logplane on the node's ports (here ports of the test's
// own, --ingress-http-port and --ingress-https-port); Deployments exposed as Services and an
// Ingress made with `kubectl create ingress` are reached through 127.0.0.1 with Host headers:
// exact and wildcard hosts, Prefix and Exact paths, 404 for an unmatched host; TLS by SNI from
// a Secret made after the Ingress (the default certificate and a Warning Event until then);
// the Ingress's status gets the node's address; a route change applies on a kept-alive
// connection without closing it.
func TestIngressWalkthrough(t *testing.T) {
	m := newMachine(t)
	m.loadImages()
	port := func() string {
		_, p, err := net.SplitHostPort(freeAddr(t))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	httpPort, httpsPort := port(), port()
	flags := slices.DeleteFunc(m.nodeFlags(), func(f string) bool { return strings.HasPrefix(f, "--ingress-") })
	flags = append(flags, "--ingress-http-port="+httpPort, "--ingress-https-port="+httpsPort)
	m.start("up", slices.Concat([]string{"up", "--data-dir", m.dir}, m.apiFlags(), flags)...)
	m.waitAPI()
	m.waitNodeReady()

	if out := m.k("get", "ingressclass"); !strings.Contains(out, "NAME       CONTROLLER            PARAMETERS   AGE") ||
		!strings.Contains(out, "logplane   logplane.io/ingress   <none>") {
		t.Errorf("kubectl get ingressclass:\n%s", out)
	}

	// web answers / with "Hello from web-…"; api (busybox httpd) answers "api" at /, /api/x
	// and /exact. A path that reaches web but not / gets Go's "404 page not found".
	m.k("create", "deployment", "web", "--image=logplane.local/hello:latest", "--port=8080")
	m.k("create", "deployment", "api", "--image=logplane.local/busybox:latest", "--port=8080", "--",
		"sh", "-c", "mkdir -p /www/api && for f in index.html api/x exact; do echo api > /www/$f; done && exec httpd -f -p 8080 -h /www")
	for _, d := range []string{"web", "api"} {
		m.k("rollout", "status", "deployment/"+d, "--timeout=180s")
		m.k("expose", "deployment", d, "--port=80", "--target-port=8080")
	}
	if out := m.k("create", "ingress", "web",
		"--rule=foo.example.com/*=web:80", "--rule=foo.example.com/api*=api:80", "--rule=foo.example.com/exact=api:80",
		"--rule=*.wild.example.com/*=api:80", "--rule=secure.example.com/*=web:80,tls=secure-tls"); out != "ingress.networking.k8s.io/web created\n" {
		t.Fatalf("kubectl create ingress printed %q", out)
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(host, path string) (int, string, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://127.0.0.1:"+httpPort+path, nil)
		if err != nil {
			return 0, "", err
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	const web, api, webNotFound, noRule = "Hello from web-", "api\n", "404 page not found\n", "404 Not Found: no Ingress rule matches"
	for _, c := range []struct {
		host, path string
		code       int
		body       string // prefix
	}{
		{"foo.example.com", "/", 200, web},
		{"FOO.example.com:" + httpPort, "/", 200, web},
		{"foo.example.com", "/api/x", 200, api},
		{"foo.example.com", "/apix", 404, webNotFound},
		{"foo.example.com", "/exact", 200, api},
		{"foo.example.com", "/exact/more", 404, webNotFound},
		{"a.wild.example.com", "/", 200, api},
		{"a.b.wild.example.com", "/", 404, noRule},
		{"wild.example.com", "/", 404, noRule},
		{"other.example.com", "/", 404, noRule},
	} {
		until(t, 60*time.Second, func() (bool, string) {
			code, body, err := get(c.host, c.path)
			if err != nil {
				return false, fmt.Sprintf("GET %s%s: %v", c.host, c.path, err)
			}
			return code == c.code && strings.HasPrefix(body, c.body),
				fmt.Sprintf("GET %s%s: %d %q, want %d %q…", c.host, c.path, code, body, c.code, c.body)
		})
	}

	// The status, and kubectl's columns.
	until(t, 30*time.Second, func() (bool, string) {
		ip := m.jsonpath("ingress/web", "{.status.loadBalancer.ingress[*].ip}")
		return ip == "127.0.0.1", "status.loadBalancer.ingress: " + ip
	})
	ings := m.get("ingress")
	expect(t, ings, ings.row(t, "web"), map[string]string{"CLASS": "logplane",
		"HOSTS": "foo.example.com,*.wild.example.com,secure.example.com", "ADDRESS": "127.0.0.1", "PORTS": "80, 443"})

	// TLS: the Secret does not exist yet: the default certificate, and a Warning.
	handshake := func(roots *x509.CertPool) (*x509.Certificate, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+httpsPort,
			&tls.Config{ServerName: "secure.example.com", RootCAs: roots, InsecureSkipVerify: roots == nil})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	until(t, 30*time.Second, func() (bool, string) {
		c, err := handshake(nil)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(c.Subject.CommonName, "Fake Certificate"), "certificate " + c.Subject.String()
	})
	until(t, 30*time.Second, func() (bool, string) {
		out := m.k("describe", "ingress", "web")
		return strings.Contains(out, "Warning  TLSSecretNotFound") && strings.Contains(out, "secure-tls"), out
	})
	certFile, keyFile, roots := selfSigned(t, "secure.example.com")
	m.k("create", "secret", "tls", "secure-tls", "--cert="+certFile, "--key="+keyFile)
	until(t, 30*time.Second, func() (bool, string) {
		c, err := handshake(roots)
		if err != nil {
			return false, err.Error()
		}
		return c.Subject.CommonName == "secure.example.com", "certificate " + c.Subject.String()
	})
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+httpsPort)
		},
	}}
	resp, err := tlsClient.Get("https://secure.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), web) || resp.Proto != "HTTP/2.0" {
		t.Errorf("GET https://secure.example.com/: %s %s %q", resp.Proto, resp.Status, b)
	}
	describe := m.k("describe", "ingress", "web")
	for _, want := range []string{"Ingress Class:", "logplane", "secure-tls terminates secure.example.com", "*.wild.example.com", "/exact", "api:80"} {
		if !strings.Contains(describe, want) {
			t.Errorf("kubectl describe ingress lacks %q:\n%s", want, describe)
		}
	}

	// A route change on a kept-alive connection: the connection stays, the next request
	// goes the new way.
	m.k("create", "ingress", "moving", "--rule=move.example.com/*=web:80")
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+httpPort, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	ask := func() (int, string) {
		t.Helper()
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: move.example.com\r\n\r\n"); err != nil {
			t.Fatalf("the kept-alive connection: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the kept-alive connection: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.Close {
			t.Fatalf("the kept-alive connection: %v, close %v", err, resp.Close)
		}
		return resp.StatusCode, string(b)
	}
	until(t, 30*time.Second, func() (bool, string) {
		code, body := ask()
		return code == 200 && strings.HasPrefix(body, web), fmt.Sprintf("%d %q", code, body)
	})
	m.k("patch", "ingress", "moving", "--type=json", "-p",
		`[{"op": "replace", "path": "/spec/rules/0/http/paths/0/backend/service/name", "value": "api"}]`)
	until(t, 30*time.Second, func() (bool, string) {
		code, body := ask()
		return code == 200 && body == api, fmt.Sprintf("%d %q", code, body)
	})

	// Deleted: 404.
	m.k("delete", "ingress", "web")
	until(t, 30*time.Second, func() (bool, string) {
		code, body, err := get("foo.example.com", "/")
		return err == nil && code == 404 && strings.HasPrefix(body, noRule), fmt.Sprintf("%d %q %v", code, body, err)
	})
}

// selfSigned writes a self-signed certificate for host and its key, and returns their files
// and a pool that trusts the certificate.
func selfSigned(t *testing.T, host string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
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
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}
