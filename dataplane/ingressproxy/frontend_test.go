package ingressproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend answers each request with the raw bytes scripted for its
// path, so that tests control every byte of a response; it records the
// requests it got. A script ending in "\x00close" closes the connection
// after writing.
type rawBackend struct {
	addr    *net.TCPAddr
	scripts map[string]string
	conns   atomic.Int64

	mu   sync.Mutex
	reqs []*http.Request
}

func newRawBackend(t *testing.T, ip string, scripts map[string]string) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rb := &rawBackend{addr: ln.Addr().(*net.TCPAddr), scripts: scripts}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rb.conns.Add(1)
			go rb.serve(t, c)
		}
	}()
	return rb
}

func (rb *rawBackend) serve(t *testing.T, c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body) //nolint:errcheck // drained to find the next request
		rb.mu.Lock()
		rb.reqs = append(rb.reqs, req)
		rb.mu.Unlock()
		script, ok := rb.scripts[req.URL.Path]
		if !ok {
			script = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		}
		body, closeAfter := strings.CutSuffix(script, "\x00close")
		if req.Method == http.MethodHead {
			head, _, _ := strings.Cut(body, "\r\n\r\n")
			body = head + "\r\n\r\n"
		}
		if _, err := io.WriteString(c, body); err != nil || closeAfter {
			return
		}
	}
}

func (rb *rawBackend) last() *http.Request {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if len(rb.reqs) == 0 {
		return nil
	}
	return rb.reqs[len(rb.reqs)-1]
}

// exposeRaw makes rb the endpoint of Service name and routes host to it.
func (e *env) exposeRaw(t *testing.T, name, host string, rb *rawBackend) {
	t.Helper()
	e.p.UpdateService(service(name))
	if err := e.p.UpdateEndpointSlice(slice(name, name+"-1", rb.addr.Port, endpoint(rb.addr.IP.String(), true))); err != nil {
		t.Fatal(err)
	}
	e.p.UpdateIngress(ingress(name, 1, rule(host, "Prefix / "+name)))
}

// rawConn is a client connection to the proxy's HTTP listener that
// writes bytes as given and reads responses with net/http's parser.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (e *env) rawConn(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", e.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck // a failed deadline shows as a hang the test's timeout catches
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response (to a request of method) and its body.
func (rc *rawConn) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading a body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the proxy closed the connection.
func (rc *rawConn) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	_, err := rc.br.ReadByte()
	return err == io.EOF
}

// One keep-alive connection carries requests the front end takes and
// requests it hands to net/http (a body, HTTP/1.0, an upgrade), in order,
// pipelined too.
func TestFrontEndAndHandoff(t *testing.T) {
	e := newEnv(t)
	e.services(t, "web")
	e.p.UpdateIngress(ingress("web", 1, rule("web.example", "Prefix / web")))
	rc := e.rawConn(t)
	rc.send("GET /one HTTP/1.1\r\nHost: web.example\r\n\r\nGET /two HTTP/1.1\r\nHost: web.example\r\n\r\n")
	for _, want := range []string{"/one", "/two"} {
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || !strings.Contains(body, `"uri":"`+want+`"`) {
			t.Errorf("pipelined %s: %d %s", want, resp.StatusCode, body)
		}
	}
	rc.send("POST /three HTTP/1.1\r\nHost: web.example\r\nContent-Length: 5\r\n\r\nhello")
	if resp, body := rc.read("POST"); resp.StatusCode != 200 || !strings.Contains(body, `"method":"POST"`) {
		t.Errorf("POST with a body after the handoff: %d %s", resp.StatusCode, body)
	}
	rc.send("GET /four HTTP/1.1\r\nHost: web.example\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(body, `"uri":"/four"`) {
		t.Errorf("GET after the handoff: %d %s", resp.StatusCode, body)
	}

	rc = e.rawConn(t)
	rc.send("GET /old HTTP/1.0\r\nHost: web.example\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(body, `"uri":"/old"`) {
		t.Errorf("HTTP/1.0: %d %s", resp.StatusCode, body)
	}

	// Requests the strict parser leaves to net/http, which answers them as
	// it answers any client: 400 for the malformed, the route otherwise.
	for _, tc := range []struct {
		req  string
		code int
	}{
		{"GET /a b HTTP/1.1\r\nHost: web.example\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: web.example\r\nHost: other.example\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: web.example\r\nX: a\x00b\r\n\r\n", 400},
		{"GET /%zz HTTP/1.1\r\nHost: web.example\r\n\r\n", 400},
		{"GET / HTTP/1.1\nHost: web.example\n\n", 200},
		{"GET / HTTP/1.1\r\nHost: web.example\r\nX-Long: " + strings.Repeat("x", 10000) + "\r\n\r\n", 200},
		{"GET / HTTP/1.1\r\nHost: web.example\r\nX-Folded: a\r\n b\r\n\r\n", 200},
		{"get / HTTP/1.1\r\nHost: web.example\r\n\r\n", 200},
		{"GET http://web.example/abs HTTP/1.1\r\nHost: web.example\r\n\r\n", 200},
		{"GET / HTTP/1.1\r\nHost: web.example\r\nContent-Length: 0\r\n\r\n", 200},
		{"GET / HTTP/1.1\r\nHost: web.example\r\nContent-Length: 00\r\n\r\n", 200},
		{"GET / HTTP/1.1\r\nHost: web.example\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200},
		{"GET / HTTP/1.1\r\nHost: web.example\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n\r\n", 200},
	} {
		rc := e.rawConn(t)
		rc.send(tc.req)
		if resp, body := rc.read("GET"); resp.StatusCode != tc.code {
			t.Errorf("%q: %d %s, want %d", clipBody(tc.req), resp.StatusCode, clipBody(body), tc.code)
		}
	}

	// A client's Connection: close is honoured.
	rc = e.rawConn(t)
	rc.send("GET / HTTP/1.1\r\nHost: web.example\r\nConnection: close\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 || !resp.Close {
		t.Errorf("Connection: close: %d, close=%v", resp.StatusCode, resp.Close)
	}
	if !rc.closed() {
		t.Error("the connection stayed open after Connection: close")
	}
}

// The request an endpoint gets from the front end: the client's target and
// headers, less those of the client's connection and its own forwarding
// headers, with the proxy's.
func TestFrontEndRequestHeaders(t *testing.T) {
	e := newEnv(t)
	rb := newRawBackend(t, "127.0.0.61", nil)
	e.exposeRaw(t, "raw", "raw.example", rb)
	rc := e.rawConn(t)
	rc.send("GET /p%20q/../r?x=%41&y HTTP/1.1\r\nhost: raw.example\r\nUser-Agent: ua\r\nCookie: a=1\r\nCookie: b=2\r\n" +
		"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTe: trailers\r\nX-Forwarded-For: 203.0.113.1\r\nX-Real-IP: 203.0.113.1\r\nForwarded: for=x\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	got := rb.last()
	if got.RequestURI != "/p%20q/../r?x=%41&y" || got.Host != "raw.example" {
		t.Errorf("target %q host %q", got.RequestURI, got.Host)
	}
	for k, want := range map[string][]string{
		"User-Agent":       {"ua"},
		"Cookie":           {"a=1", "b=2"},
		"X-Forwarded-For":  {"127.0.0.1"},
		"X-Real-Ip":        {"127.0.0.1"},
		"Keep-Alive":       nil,
		"Proxy-Connection": nil,
		"Te":               nil,
		"Forwarded":        nil,
	} {
		if g := got.Header.Values(k); fmt.Sprint(g) != fmt.Sprint(want) && !(len(g) == 0 && len(want) == 0) {
			t.Errorf("%s = %q, want %q", k, g, want)
		}
	}
}

// Responses pass through as the endpoint framed them (length, chunks with
// trailers, to the end of the connection, no body), less the endpoint's
// connection headers; a malformed one is answered 502; a connection the
// endpoint closes is not used again.
func TestFrontEndResponses(t *testing.T) {
	e := newEnv(t)
	rb := newRawBackend(t, "127.0.0.62", map[string]string{
		"/length":  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nConnection: X-Hop, keep-alive\r\nX-Hop: gone\r\nKeep-Alive: timeout=9\r\n\r\nhello",
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: done\r\n\r\n",
		"/eof":     "HTTP/1.1 200 OK\r\n\r\nuntil the end\x00close",
		"/nobody":  "HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n",
		"/304":     "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"/interim": "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/close":   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok\x00close",
		"/http10":  "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok\x00close",
		"/bad":     "HTTP/1.1 2000 Nope\r\n\r\n\x00close",
		"/twocl":   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk\x00close",
		"/clte":    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\x00close",
		"/huge":    "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 20000) + "\r\nContent-Length: 0\r\n\r\n\x00close",
		"/ctl":     "HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 0\r\n\r\n\x00close",
		"/upgrade": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n\x00close",
	})
	e.exposeRaw(t, "raw", "raw.example", rb)
	rc := e.rawConn(t)
	req := func(method, path string) (*http.Response, string) {
		t.Helper()
		rc.send(method + " " + path + " HTTP/1.1\r\nHost: raw.example\r\n\r\n")
		return rc.read(method)
	}
	resp, body := req("GET", "/length")
	if body != "hello" || resp.Header.Get("X-A") != "1" || resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Close {
		t.Errorf("/length: %q %v", body, resp.Header)
	}
	resp, body = req("GET", "/chunked")
	if body != "hello world" || resp.Trailer.Get("X-T") != "done" || len(resp.TransferEncoding) != 1 {
		t.Errorf("/chunked: %q trailer %v te %v", body, resp.Trailer, resp.TransferEncoding)
	}
	if resp, body = req("HEAD", "/length"); body != "" || resp.ContentLength != 5 {
		t.Errorf("HEAD /length: %q %d", body, resp.ContentLength)
	}
	if resp, body = req("GET", "/nobody"); resp.StatusCode != 204 || body != "" || resp.Header.Get("X-B") != "2" {
		t.Errorf("/nobody: %d %q", resp.StatusCode, body)
	}
	if resp, body = req("GET", "/304"); resp.StatusCode != 304 || body != "" {
		t.Errorf("/304: %d %q", resp.StatusCode, body)
	}
	if resp, body = req("GET", "/interim"); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("/interim: %d %q", resp.StatusCode, body)
	}
	if rb.conns.Load() != 1 {
		t.Errorf("%d connections to the endpoint for 6 requests, want 1 (kept alive)", rb.conns.Load())
	}
	for _, path := range []string{"/close", "/http10"} {
		if resp, body = req("GET", path); resp.StatusCode != 200 || body != "ok" {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
		before := rb.conns.Load()
		req("GET", "/length")
		if rb.conns.Load() != before+1 {
			t.Errorf("after %s, the endpoint's closed connection was used again", path)
		}
	}
	for _, path := range []string{"/bad", "/twocl", "/clte", "/huge", "/ctl", "/upgrade"} {
		if resp, body = req("GET", path); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: %d %q, want 502", path, resp.StatusCode, clipBody(body))
		}
	}
	// Read to the end of the endpoint's connection: the client's is
	// closed after it.
	if resp, body = req("GET", "/eof"); body != "until the end" || !resp.Close {
		t.Errorf("/eof: %q close=%v", body, resp.Close)
	}
	if !rc.closed() {
		t.Error("the client's connection stayed open after a body delimited by the end of the endpoint's")
	}
}

// A kept-alive connection that the endpoint closed meanwhile is replaced
// by a new one for a GET, on the front end and on net/http's path (TLS).
func TestStaleKeepAlive(t *testing.T) {
	e := newEnv(t)
	rb := newRawBackend(t, "127.0.0.63", map[string]string{
		// Answers, then closes without saying so: the proxy keeps the
		// connection and learns at the next request.
		"/": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\x00close",
	})
	e.exposeRaw(t, "raw", "raw.example", rb)
	e.p.UpdateSecret(e.tlsSecret(t, "raw-tls", "raw.example"))
	ing := ingress("raw", 1, rule("raw.example", "Prefix / raw"))
	ing.Spec.TLS = append(ing.Spec.TLS, tlsFor("raw-tls", "raw.example"))
	e.p.UpdateIngress(ing)
	for _, scheme := range []string{"http", "https"} {
		c := e.client(false)
		for i := range 5 {
			r := get(t, c, http.MethodGet, scheme+"://raw.example/")
			if r.code != 200 || r.body != "ok" {
				t.Errorf("%s request %d: %d %q", scheme, i, r.code, r.body)
			}
		}
	}
}
