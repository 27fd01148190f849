package ingressproxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

// Changes of routes, certificates and endpoints take effect for the next
// request and handshake, while a long request, a WebSocket and a kept-alive
// client connection stay open through them.
func TestChangesKeepOpenConnections(t *testing.T) {
	e := newEnv(t)
	old := newBackend(t, "old", "127.0.0.41")
	neu := newBackend(t, "new", "127.0.0.42")
	e.expose(t, "old", old)
	e.expose(t, "new", neu)
	e.p.UpdateSecret(e.tlsSecret(t, "live-tls", "live.example"))
	ing := ingress("live", 1, rule("live.example", "Prefix / old"))
	ing.Spec.TLS = append(ing.Spec.TLS, tlsFor("live-tls", "live.example"))
	e.p.UpdateIngress(ing)

	// A long request: the first line arrives, the last only on release.
	c := e.client(false)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://live.example/slow", nil)
	slowResp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer slowResp.Body.Close()
	slow := bufio.NewReader(slowResp.Body)
	if line, err := slow.ReadString('\n'); err != nil || line != "old: first\n" {
		t.Fatalf("slow request: %q %v", line, err)
	}
	// A WebSocket, over plain HTTP.
	ws := e.wsDial(t, "live.example", "/ws")
	if got, err := wsEcho(ws, "before"); err != nil || got != "old:before" {
		t.Fatalf("websocket: %q %v", got, err)
	}
	// A kept-alive client connection (HTTPS, HTTP/1.1).
	tlsClient := e.client(false)
	served(t, tlsClient, "https://live.example/", "old")

	// Change everything: the route goes to another Service, the
	// certificate is replaced, the old Service's endpoints change.
	ing2 := ingress("live", 1, rule("live.example", "Prefix / new"))
	ing2.Spec.TLS = ing.Spec.TLS
	e.p.UpdateIngress(ing2)
	e.p.UpdateSecret(e.tlsSecret(t, "live-tls", "live.example", "renewed.live.example"))
	e.expose(t, "old", old, old) // same endpoint, new slice object

	reused := false
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	r2, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://live.example/", nil)
	resp, err := tlsClient.Do(r2)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp)
	if !reused {
		t.Error("the kept-alive HTTPS connection was not reused after the change")
	}
	served(t, c, "http://live.example/", "new")
	if got := e.handshake(t, "live.example"); len(got.DNSNames) != 2 {
		t.Errorf("a new handshake got the old certificate: %v", got.DNSNames)
	}
	if got, err := wsEcho(ws, "during"); err != nil || got != "old:during" {
		t.Errorf("websocket after the change: %q %v", got, err)
	}
	ws2 := e.wsDial(t, "live.example", "/ws")
	if got, err := wsEcho(ws2, "x"); err != nil || got != "new:x" {
		t.Errorf("new websocket after the change: %q %v", got, err)
	}

	// Even with the Ingress gone and the old Service's endpoints gone.
	e.p.DeleteIngress(ns, "live")
	e.p.DeleteEndpointSlice(ns, "old-1")
	status(t, c, "http://live.example/", http.StatusNotFound)
	if got, err := wsEcho(ws, "after"); err != nil || got != "old:after" {
		t.Errorf("websocket after the Ingress's deletion: %q %v", got, err)
	}
	close(old.release)
	done := make(chan string, 1)
	go func() {
		line, _ := slow.ReadString('\n')
		done <- line
	}()
	select {
	case line := <-done:
		if line != "old: last\n" {
			t.Errorf("the long request's end: %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long request did not end")
	}
}

// Serve ends with its context: requests in flight finish first, upgraded
// connections are closed.
func TestShutdown(t *testing.T) {
	e := newEnv(t)
	b := newBackend(t, "web", "127.0.0.51")
	e.expose(t, "web", b)
	e.p.UpdateIngress(ingress("web", 1, rule("web.example", "Prefix / web")))
	ws := e.wsDial(t, "web.example", "/ws")
	if _, err := wsEcho(ws, "x"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ln := listen(t)
	errc := make(chan error, 1)
	go func() { errc <- e.p.Serve(ctx, ln) }()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
	}}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://web.example/slow", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wsOwn := dialWS(t, ln.Addr().String(), "web.example", "/ws")
	if _, err := wsEcho(wsOwn, "y"); err != nil {
		t.Fatal(err)
	}
	cancel()
	// Shutdown has begun when the listener is closed; the request is
	// still in flight.
	for {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		conn.Close()
		time.Sleep(time.Millisecond)
	}
	close(b.release)
	body, err := io.ReadAll(resp.Body)
	if err != nil || !strings.HasSuffix(string(body), "web: last\n") {
		t.Errorf("the request in flight at shutdown: %q %v", body, err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := wsEcho(wsOwn, "z"); err == nil {
		t.Error("the WebSocket of a stopped listener still works")
	}
	// The other listener's WebSocket is not affected.
	if _, err := wsEcho(ws, "x"); err != nil {
		t.Errorf("another listener's WebSocket: %v", err)
	}
}
