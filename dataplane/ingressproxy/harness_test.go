package ingressproxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/dataplane/ingressproxy"
)

const ns = "default"

// echo is what a test backend answers: who it is and what it received.
type echo struct {
	Backend string      `json:"backend"`
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	URI     string      `json:"uri"`
	Proto   string      `json:"proto"`
	Header  http.Header `json:"header"`
	Remote  string      `json:"remote"`
}

// backend is an HTTP server on a loopback address of its own (127.0.0.x),
// standing for one pod: it echoes requests as JSON, echoes WebSocket
// messages on /ws, and streams slowly on /slow until /slow/release.
type backend struct {
	name    string
	addr    *net.TCPAddr
	conns   atomic.Int64 // connections accepted
	release chan struct{}
	srv     *http.Server
}

var upgrader = websocket.Upgrader{}

func newBackend(t *testing.T, name, ip string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	return serveBackend(t, name, ln)
}

// newBackends starts n backends named name-1... on 127.0.0.first,
// 127.0.0.first+1... all on one port, as the pods of one Service.
func newBackends(t *testing.T, name string, first, n int) []*backend {
	t.Helper()
	for range 20 {
		var lns []net.Listener
		port := 0
		for i := range n {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", first+i, port))
			if err != nil {
				break
			}
			port = ln.Addr().(*net.TCPAddr).Port
			lns = append(lns, ln)
		}
		if len(lns) == n {
			var bs []*backend
			for i, ln := range lns {
				bs = append(bs, serveBackend(t, fmt.Sprintf("%s-%d", name, i+1), ln))
			}
			return bs
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	t.Fatalf("no port free on 127.0.0.%d-%d", first, first+n-1)
	return nil
}

func serveBackend(t *testing.T, name string, ln net.Listener) *backend {
	b := &backend{name: name, addr: ln.Addr().(*net.TCPAddr), release: make(chan struct{})}
	// Not a ServeMux: it would clean paths and redirect, and the tests
	// want to see the request as the proxy sent it.
	ws := func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, append([]byte(b.name+":"), msg...)); err != nil {
				return
			}
		}
	}
	slow := func(w http.ResponseWriter, r *http.Request) {
		// One line at once, the last one when the test releases it.
		fmt.Fprintf(w, "%s: first\n", b.name)
		w.(http.Flusher).Flush()
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "%s: last\n", b.name)
	}
	handler := func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			ws(w, r)
			return
		case "/slow":
			slow(w, r)
			return
		}
		if r.Body != nil {
			io.Copy(io.Discard, r.Body) //nolint:errcheck // the echo does not care
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echo{Backend: b.name, Method: r.Method, Host: r.Host, URI: r.RequestURI, Proto: r.Proto, Header: r.Header, Remote: r.RemoteAddr}) //nolint:errcheck
	}
	b.srv = &http.Server{
		Handler: http.HandlerFunc(handler),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go b.srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *backend) ip() string { return b.addr.IP.String() }

// env is a proxy serving HTTP and HTTPS on 127.0.0.1, with clients that
// reach it whatever host a URL names.
type env struct {
	p         *ingressproxy.Proxy
	httpAddr  string
	httpsAddr string
	ca        *x509.CertPool
	caCert    *x509.Certificate
	caKey     *ecdsa.PrivateKey

	mu       sync.Mutex
	warnings []ingressproxy.Warning
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{}
	e.caCert, e.caKey = newCA(t)
	e.ca = x509.NewCertPool()
	e.ca.AddCert(e.caCert)
	p, err := ingressproxy.New(ingressproxy.Config{
		OnWarning: func(w ingressproxy.Warning) {
			e.mu.Lock()
			e.warnings = append(e.warnings, w)
			e.mu.Unlock()
		},
		ErrorLog: log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, tlsOn := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		serve := p.Serve
		if tlsOn {
			e.httpsAddr = ln.Addr().String()
			serve = p.ServeTLS
		} else {
			e.httpAddr = ln.Addr().String()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(ctx, ln); err != nil {
				t.Errorf("serve: %v", err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		p.Close()
	})
	p.UpdateIngressClass(&networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "logplane", Annotations: map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}},
		Spec:       networkingv1.IngressClassSpec{Controller: ingressproxy.DefaultController},
	})
	return e
}

func (e *env) takeWarnings() []ingressproxy.Warning {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.warnings
	e.warnings = nil
	return w
}

// client is an HTTP client whose connections all go to the proxy (HTTP or
// HTTPS by the URL's scheme), trusting the test CA.
func (e *env) client(h2 bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if strings.HasSuffix(addr, ":443") {
				return d.DialContext(ctx, network, e.httpsAddr)
			}
			return d.DialContext(ctx, network, e.httpAddr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: e.ca},
		ForceAttemptHTTP2: h2,
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

type result struct {
	code int
	body string
	echo echo
	resp *http.Response
}

// get sends one request through c and reads the answer.
func get(t *testing.T, c *http.Client, method, url string, hdr ...string) result {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, url, err)
	}
	r := result{code: resp.StatusCode, body: string(body), resp: resp}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &r.echo); err != nil {
			t.Fatalf("%s %s: %v in %q", method, url, err, body)
		}
	}
	return r
}

// served asserts that url is answered 200 by backend want.
func served(t *testing.T, c *http.Client, url, want string) echo {
	t.Helper()
	r := get(t, c, http.MethodGet, url)
	if r.code != http.StatusOK || r.echo.Backend != want {
		t.Errorf("GET %s: %d from %q (%q), want 200 from %q", url, r.code, r.echo.Backend, clipBody(r.body), want)
	}
	return r.echo
}

// status asserts that url is answered code by the proxy itself.
func status(t *testing.T, c *http.Client, url string, code int) result {
	t.Helper()
	r := get(t, c, http.MethodGet, url)
	if r.code != code || r.echo.Backend != "" {
		t.Errorf("GET %s: %d from %q (%q), want %d from the proxy", url, r.code, r.echo.Backend, clipBody(r.body), code)
	}
	return r
}

func clipBody(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// expose gives the proxy a Service name with one port 80 ("http") and an
// EndpointSlice of ready endpoints at the backends' addresses.
func (e *env) expose(t *testing.T, name string, bs ...*backend) {
	t.Helper()
	e.p.UpdateService(service(name))
	var eps []discoveryv1.Endpoint
	port := 0
	for _, b := range bs {
		eps = append(eps, endpoint(b.ip(), true))
		if port != 0 && port != b.addr.Port {
			t.Fatalf("backends of %s on different ports", name)
		}
		port = b.addr.Port
	}
	if err := e.p.UpdateEndpointSlice(slice(name, name+"-1", port, eps...)); err != nil {
		t.Fatal(err)
	}
}

func service(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.50",
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
}

func endpoint(ip string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
}

func slice(svc, name string, port int, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
}

// ingress makes an Ingress of class logplane created at second age (older
// first), with the given rules.
func ingress(name string, age int, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         ns,
			Name:              name,
			CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, age, 0, time.UTC)),
		},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To("logplane"), Rules: rules},
	}
}

// rule is a host rule with paths given as "TYPE /path svc" triples.
func rule(host string, paths ...string) networkingv1.IngressRule {
	r := networkingv1.IngressRule{Host: host}
	if len(paths) == 0 {
		return r
	}
	r.HTTP = &networkingv1.HTTPIngressRuleValue{}
	for _, p := range paths {
		f := strings.Fields(p)
		r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{
			Path:     f[1],
			PathType: ptr.To(networkingv1.PathType(f[0])),
			Backend:  svcBackend(f[2]),
		})
	}
	return r
}

// svcBackend is a backend to Service name's port 80, or to the port
// named after a colon ("web:http").
func svcBackend(name string) networkingv1.IngressBackend {
	port := networkingv1.ServiceBackendPort{Number: 80}
	if n, p, ok := strings.Cut(name, ":"); ok {
		name, port = n, networkingv1.ServiceBackendPort{Name: p}
	}
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: port}}
}

// services starts one backend per name (on 127.0.0.1) and exposes each as
// the Service of that name.
func (e *env) services(t *testing.T, names ...string) map[string]*backend {
	t.Helper()
	m := map[string]*backend{}
	for _, n := range names {
		b := newBackend(t, n, "127.0.0.1")
		e.expose(t, n, b)
		m[n] = b
	}
	return m
}

// newCA makes a test certificate authority.
func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ingressproxy test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

var serial atomic.Int64

// tlsSecret makes a kubernetes.io/tls Secret holding a certificate for
// names, signed by the test CA.
func (e *env) tlsSecret(t *testing.T, name string, names ...string) *corev1.Secret {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.caCert, &key.PublicKey, e.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		},
	}
}

// handshake connects to the HTTPS listener with SNI name (none when "")
// and returns the certificate the proxy presented.
func (e *env) handshake(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: name, InsecureSkipVerify: true}) //nolint:gosec // the test inspects what is presented
	if err != nil {
		t.Fatalf("handshake for %q: %v", name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// wsDial opens a WebSocket through the proxy's HTTP listener.
func (e *env) wsDial(t *testing.T, host, path string) *websocket.Conn {
	t.Helper()
	return dialWS(t, e.httpAddr, host, path)
}

// dialWS opens a WebSocket to ws://host/path through the listener at addr.
func dialWS(t *testing.T, addr, host, path string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{NetDial: func(network, _ string) (net.Conn, error) { return net.Dial(network, addr) }, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial("ws://"+host+path, nil)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("websocket %s%s: %v (%d)", host, path, err, code)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wsEcho sends msg and returns the reply.
func wsEcho(c *websocket.Conn, msg string) (string, error) {
	c.NetConn().SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // a failed deadline shows as a failed read
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return "", err
	}
	_, b, err := c.ReadMessage()
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func tlsFor(secret string, hosts ...string) networkingv1.IngressTLS {
	return networkingv1.IngressTLS{Hosts: hosts, SecretName: secret}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
