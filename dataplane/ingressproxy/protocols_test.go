package ingressproxy_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// HTTP/2: h2 over TLS by ALPN, and h2c with prior knowledge on the plain
// listener; many concurrent streams on one connection; the backend gets
// HTTP/1.1.
func TestHTTP2(t *testing.T) {
	e := newEnv(t)
	e.services(t, "web")
	e.p.UpdateSecret(e.tlsSecret(t, "web-tls", "web.example"))
	ing := ingress("web", 1, rule("web.example", "Prefix / web"))
	ing.Spec.TLS = append(ing.Spec.TLS, tlsFor("web-tls", "web.example"))
	e.p.UpdateIngress(ing)

	h2 := e.client(true)
	conns := 0
	h2.Transport.(*http.Transport).DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns++
		d := &tls.Dialer{Config: &tls.Config{RootCAs: e.ca, ServerName: "web.example", NextProtos: []string{"h2", "http/1.1"}}}
		return d.DialContext(ctx, network, e.httpsAddr)
	}
	r := get(t, h2, http.MethodGet, "https://web.example/")
	if r.resp.Proto != "HTTP/2.0" || r.echo.Proto != "HTTP/1.1" || r.echo.Backend != "web" {
		t.Errorf("h2: client got %s, backend %q got %s", r.resp.Proto, r.echo.Backend, r.echo.Proto)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://web.example/", nil)
			resp, err := h2.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 {
				t.Errorf("%s %d", resp.Proto, resp.StatusCode)
			}
			drain(resp)
		}()
	}
	wg.Wait()
	if conns != 1 {
		t.Errorf("51 HTTP/2 requests used %d connections, want 1", conns)
	}

	// h2c with prior knowledge.
	r = get(t, h2cClient(e), http.MethodGet, "http://web.example/")
	if r.resp.Proto != "HTTP/2.0" || r.echo.Backend != "web" {
		t.Errorf("h2c: client got %s from %q", r.resp.Proto, r.echo.Backend)
	}
}

// WebSocket (an Upgrade request) through the proxy, over HTTP.
func TestWebSocket(t *testing.T) {
	e := newEnv(t)
	e.services(t, "ws")
	e.p.UpdateIngress(ingress("ws", 1, rule("ws.example", "Prefix / ws")))
	c := e.wsDial(t, "ws.example", "/ws")
	for i := range 20 {
		msg := "hello " + strconv.Itoa(i)
		got, err := wsEcho(c, msg)
		if err != nil || got != "ws:"+msg {
			t.Fatalf("echo %d: %q %v", i, got, err)
		}
	}
}

// The backend learns who the client is and what it asked for, from the
// proxy alone: a client's own X-Forwarded-* are not trusted.
func TestForwardedHeaders(t *testing.T) {
	e := newEnv(t)
	e.services(t, "web")
	e.p.UpdateSecret(e.tlsSecret(t, "web-tls", "web.example"))
	ing := ingress("web", 1, rule("web.example", "Prefix / web"))
	ing.Spec.TLS = append(ing.Spec.TLS, tlsFor("web-tls", "web.example"))
	e.p.UpdateIngress(ing)
	_, httpPort, _ := net.SplitHostPort(e.httpAddr)
	_, httpsPort, _ := net.SplitHostPort(e.httpsAddr)

	for _, tc := range []struct{ url, proto, port string }{
		{"http://web.example/", "http", httpPort},
		{"https://web.example/", "https", httpsPort},
	} {
		r := get(t, e.client(false), http.MethodGet, tc.url,
			"X-Forwarded-For", "203.0.113.9", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "gopher", "X-Real-IP", "203.0.113.9", "User-Agent", "test-agent/1")
		h := r.echo.Header
		for k, want := range map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Real-Ip":         "127.0.0.1",
			"X-Forwarded-Host":  "web.example",
			"X-Forwarded-Proto": tc.proto,
			"X-Forwarded-Port":  tc.port,
			"User-Agent":        "test-agent/1",
		} {
			if got := h.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("%s: %s = %q, want %q", tc.url, k, got, want)
			}
		}
		if r.echo.Host != "web.example" {
			t.Errorf("%s: Host %q", tc.url, r.echo.Host)
		}
	}
}

// h2cClient speaks HTTP/2 with prior knowledge to the proxy's HTTP
// listener (net/http's server, behind the front end).
func h2cClient(e *env) *http.Client {
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Protocols: protos,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, e.httpAddr)
		},
	}}
}
