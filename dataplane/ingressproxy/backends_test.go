package ingressproxy_test

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Requests go round-robin over the ready endpoints only; a Service with
// none, or no Service, is answered 503 at once; the Service port is found
// by number or by name and mapped to the slices' port of the same name.
func TestEndpointsAndUnavailable(t *testing.T) {
	e := newEnv(t)
	bs := newBackends(t, "web", 11, 3)
	e.expose(t, "web", bs...)
	e.p.UpdateIngress(ingress("web", 1,
		rule("web.example", "Prefix / web", "Prefix /named web:http", "Prefix /wrong-port web:nope"),
		rule("ghost.example", "Prefix / ghost"),
	))
	c := e.client(false)

	counts := func(url string, n int) map[string]int {
		t.Helper()
		m := map[string]int{}
		for range n {
			r := get(t, c, http.MethodGet, url)
			if r.code != 200 {
				t.Fatalf("GET %s: %d %q", url, r.code, r.body)
			}
			m[r.echo.Backend]++
		}
		return m
	}
	if got := counts("http://web.example/", 30); got["web-1"] != 10 || got["web-2"] != 10 || got["web-3"] != 10 {
		t.Errorf("30 requests went %v, want 10 to each endpoint (round-robin)", got)
	}
	if got := counts("http://web.example/named", 6); len(got) != 3 {
		t.Errorf("by port name: %v", got)
	}
	status(t, c, "http://web.example/wrong-port", http.StatusServiceUnavailable)
	r := status(t, c, "http://ghost.example/", http.StatusServiceUnavailable)
	if !strings.Contains(r.body, "503") {
		t.Errorf("503 body %q", r.body)
	}

	// web-2 not ready: it gets nothing; readiness unknown counts as ready.
	unknown := endpoint(bs[2].ip(), true)
	unknown.Conditions.Ready = nil
	if err := e.p.UpdateEndpointSlice(slice("web", "web-1", bs[0].addr.Port, endpoint(bs[0].ip(), true), endpoint(bs[1].ip(), false), unknown)); err != nil {
		t.Fatal(err)
	}
	if got := counts("http://web.example/", 20); got["web-1"] != 10 || got["web-3"] != 10 {
		t.Errorf("20 requests went %v, want 10 to web-1 and web-3, none to the unready web-2", got)
	}
	// Endpoints from several slices are merged.
	if err := e.p.UpdateEndpointSlice(slice("web", "web-2", bs[0].addr.Port, endpoint(bs[1].ip(), true))); err != nil {
		t.Fatal(err)
	}
	if got := counts("http://web.example/", 30); len(got) != 3 {
		t.Errorf("with a second slice: %v", got)
	}
	e.p.DeleteEndpointSlice(ns, "web-2")
	if got := counts("http://web.example/", 10); got["web-2"] != 0 {
		t.Errorf("after deleting the second slice: %v", got)
	}
	// No ready endpoint: 503.
	if err := e.p.UpdateEndpointSlice(slice("web", "web-1", bs[0].addr.Port, endpoint(bs[0].ip(), false))); err != nil {
		t.Fatal(err)
	}
	status(t, c, "http://web.example/", http.StatusServiceUnavailable)
	if err := e.p.UpdateEndpointSlice(slice("web", "web-1", bs[0].addr.Port, endpoint(bs[0].ip(), true))); err != nil {
		t.Fatal(err)
	}
	served(t, c, "http://web.example/", "web-1")
	e.p.DeleteEndpointSlice(ns, "web-1")
	status(t, c, "http://web.example/", http.StatusServiceUnavailable)
	e.expose(t, "web", bs[0])
	e.p.DeleteService(ns, "web")
	status(t, c, "http://web.example/", http.StatusServiceUnavailable)

	// A Service whose port 8080 targets the pods' named port: the backend
	// names the Service port; the slice carries the target.
	svc := service("web")
	svc.Spec.Ports = []corev1.ServicePort{{Name: "api", Port: 8080, TargetPort: intstr.FromString("api-port")}}
	e.p.UpdateService(svc)
	sl := slice("web", "web-1", bs[0].addr.Port, endpoint(bs[0].ip(), true))
	sl.Ports[0].Name = ptr.To("api")
	if err := e.p.UpdateEndpointSlice(sl); err != nil {
		t.Fatal(err)
	}
	e.p.UpdateIngress(ingress("web", 1, rule("web.example", "Prefix / web")))
	status(t, c, "http://web.example/", http.StatusServiceUnavailable) // port 80 is not a port of the Service
	ing := ingress("web", 1, rule("web.example", "Prefix / web"))
	ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Number = 8080
	e.p.UpdateIngress(ing)
	served(t, c, "http://web.example/", "web-1")

	if err := e.p.UpdateEndpointSlice(&discoveryv1.EndpointSlice{}); err == nil {
		t.Error("a slice without a service-name label was accepted")
	}
}

// An idempotent request that cannot connect to an endpoint is sent to
// another; a POST is not (502).
func TestRetryOnConnectFailure(t *testing.T) {
	e := newEnv(t)
	bs := newBackends(t, "web", 21, 2)
	bs[1].srv.Close() // 127.0.0.22 refuses connections
	e.expose(t, "web", bs...)
	e.p.UpdateIngress(ingress("web", 1, rule("web.example", "Prefix / web")))
	c := e.client(false)
	// Round-robin: half of these start on the endpoint that refuses.
	for range 10 {
		served(t, c, "http://web.example/", "web-1")
	}
	for range 10 {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, "http://web.example/put", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("PUT with a body: %d, want 200 after a retry", resp.StatusCode)
		}
	}
	// The same through net/http's server (h2c with prior knowledge).
	h2c := h2cClient(e)
	for range 10 {
		r := get(t, h2c, http.MethodGet, "http://web.example/")
		if r.code != 200 || r.resp.Proto != "HTTP/2.0" {
			t.Errorf("GET over h2c: %d %s, want 200 after a retry", r.code, r.resp.Proto)
		}
	}
	codes := map[int]int{}
	for range 10 {
		resp, err := c.Post("http://web.example/post", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[200] != 5 || codes[http.StatusBadGateway] != 5 {
		t.Errorf("10 POSTs: %v, want 5 answered and 5 502 (never retried)", codes)
	}
}

// Client connections are kept alive, and so are the connections to the
// endpoints (pooled): 100 requests on one client connection open one
// connection to the backend, and 20 concurrent clients about 20.
func TestKeepAlive(t *testing.T) {
	e := newEnv(t)
	b := newBackend(t, "web", "127.0.0.31")
	e.expose(t, "web", b)
	e.p.UpdateIngress(ingress("web", 1, rule("web.example", "Prefix / web")))
	c := e.client(false)
	reused := 0
	for range 100 {
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused++
			}
		}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://web.example/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		drain(resp)
	}
	if reused != 99 {
		t.Errorf("the client's connection was reused %d times of 99", reused)
	}
	if n := b.conns.Load(); n != 1 {
		t.Errorf("100 requests opened %d connections to the backend, want 1", n)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client(false)
			for range 20 {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://web.example/", nil)
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				drain(resp)
			}
		}()
	}
	wg.Wait()
	if n := b.conns.Load(); n > 21 {
		t.Errorf("20 clients × 20 requests opened %d connections to the backend, want at most 21", n)
	}
}

func drain(resp *http.Response) {
	buf := make([]byte, 4096)
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	resp.Body.Close()
}
