package ingressproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The direct path forwards the requests most traffic is made of — those
// without a body and without an upgrade — on the handler's own goroutine:
// it writes the request to a pooled keep-alive connection, reads the
// response and copies it to the client. net/http's Transport does the
// same through two goroutines per connection and channels between them,
// which cost about as much CPU as the proxying itself (BenchmarkIngress,
// docs/ingress.md). Requests with a body, upgrades (WebSocket) and
// anything unusual go through httputil.ReverseProxy and the Transport.

// upConn is a keep-alive connection to an endpoint.
type upConn struct {
	net.Conn
	addr string
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it was last put back
}

// connPool keeps idle connections to endpoints, the most recently used
// first, at most max per endpoint, for at most timeout.
type connPool struct {
	dialer  net.Dialer
	max     int
	timeout time.Duration
	now     func() time.Time

	mu   sync.Mutex
	idle map[string][]*upConn
}

func newConnPool(cfg Config) *connPool {
	return &connPool{
		dialer:  net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		max:     cfg.MaxIdleConnsPerEndpoint,
		timeout: cfg.BackendIdleTimeout,
		now:     cfg.Clock.Now,
		idle:    map[string][]*upConn{},
	}
}

// get takes an idle connection to addr, nil when there is none.
func (cp *connPool) get(addr string) *upConn {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	s := cp.idle[addr]
	if len(s) == 0 {
		return nil
	}
	c := s[len(s)-1]
	if cp.now().Sub(c.used) > cp.timeout {
		// This one and every one below it has been idle too long.
		for _, old := range s {
			old.Close()
		}
		delete(cp.idle, addr)
		return nil
	}
	s[len(s)-1] = nil
	cp.idle[addr] = s[:len(s)-1]
	return c
}

func (cp *connPool) put(c *upConn) {
	c.used = cp.now()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	s := cp.idle[c.addr]
	if len(s) >= cp.max {
		s[0].Close()
		copy(s, s[1:])
		s = s[:len(s)-1]
	}
	cp.idle[c.addr] = append(s, c)
}

func (cp *connPool) dial(ctx context.Context, addr string) (*upConn, error) {
	c, err := cp.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &upConn{Conn: c, addr: addr, br: bufio.NewReaderSize(c, upReadBuffer), bw: bufio.NewWriterSize(c, 4096)}, nil
}

// retain closes the idle connections to addresses keep refuses (the
// endpoints that are gone).
func (cp *connPool) retain(keep func(addr string) bool) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for addr, s := range cp.idle {
		if !keep(addr) {
			for _, c := range s {
				c.Close()
			}
			delete(cp.idle, addr)
		}
	}
}

func (cp *connPool) closeIdle() {
	cp.retain(func(string) bool { return false })
}

// direct reports whether r can take the direct path: no body, no
// upgrade, a request-target in origin form.
func direct(r *http.Request) bool {
	return r.ContentLength == 0 && len(r.TransferEncoding) == 0 &&
		r.Header["Upgrade"] == nil && r.Method != http.MethodConnect &&
		strings.HasPrefix(r.RequestURI, "/")
}

// forward sends r to an endpoint of set and copies the answer to w. An
// endpoint that cannot be reached is skipped for another (idempotent
// requests); a pooled connection the endpoint closed meanwhile is replaced
// by a new one.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, set *endpointSet) {
	ctx := r.Context()
	tries := 1
	if idempotent(r.Method) {
		tries = min(p.cfg.MaxTries, len(set.addrs))
	}
	start := set.pick()
	var (
		uc   *upConn
		resp *http.Response
		err  error
	)
	for i := range tries {
		uc, resp, err = p.exchange(ctx, r, set.addrs[(start+i)%len(set.addrs)])
		if err == nil || !dialFailed(err) {
			break
		}
	}
	if err != nil {
		p.proxyError(w, r, err)
		return
	}
	// A client that goes away ends the exchange: the connection's
	// deadline passes at once and the copy fails.
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) }) //nolint:errcheck // a failed deadline leaves the copy to end by itself
	ok := p.copyResponse(w, resp)
	if stop() && ok && !resp.Close {
		p.pool.put(uc)
		return
	}
	uc.Close()
}

// exchange writes r to a connection to addr and reads the response's head.
func (p *Proxy) exchange(ctx context.Context, r *http.Request, addr string) (*upConn, *http.Response, error) {
	fresh := false
	for {
		var uc *upConn
		if !fresh {
			uc = p.pool.get(addr)
		}
		reused := uc != nil
		if uc == nil {
			var err error
			if uc, err = p.pool.dial(ctx, addr); err != nil {
				return nil, nil, err
			}
		}
		resp, err := roundTrip(ctx, uc, r)
		if err == nil {
			return uc, resp, nil
		}
		uc.Close()
		if reused && replayable(r) && stale(err) && ctx.Err() == nil {
			fresh = true // the endpoint closed the idle connection: once more on a new one
			continue
		}
		return nil, nil, err
	}
}

// roundTrip writes r on uc and reads the response head, skipping 1xx
// interim responses.
func roundTrip(ctx context.Context, uc *upConn, r *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) }) //nolint:errcheck // as in forward
	defer stop()
	writeRequest(uc.bw, r)
	if err := uc.bw.Flush(); err != nil {
		return nil, &writeError{err}
	}
	// Nothing at all from the endpoint (a kept-alive connection it had
	// closed) is told apart from a broken response: ReadResponse would
	// call both an unexpected EOF.
	if _, err := uc.br.Peek(1); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(uc.br, r)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("ingressproxy: 101 Switching Protocols to a request without Upgrade")
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			continue
		}
		return resp, nil
	}
}

// writeError is a failure to send the request.
type writeError struct{ err error }

func (e *writeError) Error() string { return "ingressproxy: writing the request: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// stale reports whether err is what a reused keep-alive connection that
// the endpoint had closed gives: a failed write, or an end of the
// connection before any byte of the response.
func stale(err error) bool {
	var we *writeError
	return errors.As(err, &we) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// replayable requests may be sent again when a reused connection turns
// out dead (as net/http's Transport decides).
func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return r.Header["Idempotency-Key"] != nil || r.Header["X-Idempotency-Key"] != nil
}

// hopByHop are the headers of one connection (RFC 9110 7.6.1), never
// forwarded; with those the Connection header names.
var hopByHop = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// forwarded are the headers the proxy sets itself; a client's own are
// dropped.
var forwarded = map[string]bool{
	"Forwarded":         true,
	"X-Forwarded-For":   true,
	"X-Forwarded-Host":  true,
	"X-Forwarded-Proto": true,
	"X-Forwarded-Port":  true,
	"X-Real-Ip":         true,
	"Host":              true,
}

// connectionTokens are the header names a Connection header lists.
func connectionTokens(h http.Header) map[string]bool {
	vv := h["Connection"]
	if len(vv) == 0 {
		return nil
	}
	var m map[string]bool
	for _, v := range vv {
		for _, f := range strings.Split(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				if m == nil {
					m = map[string]bool{}
				}
				m[textproto.CanonicalMIMEHeaderKey(f)] = true
			}
		}
	}
	return m
}

// writeRequest writes r in HTTP/1.1 as the endpoint gets it: the client's
// request-target and headers, less those of the client's connection, with
// the client's Host and the proxy's forwarding headers (see rewrite).
func writeRequest(bw *bufio.Writer, r *http.Request) {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(r.RequestURI)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	conn := connectionTokens(r.Header)
	for k, vv := range r.Header {
		if hopByHop[k] || forwarded[k] || conn[k] {
			if k == "Te" && len(vv) == 1 && vv[0] == "trailers" {
				bw.WriteString("Te: trailers\r\n")
			}
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	ip, proto, port := forwardedFor(r)
	bw.WriteString("X-Forwarded-For: ")
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Real-Ip: ")
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	bw.WriteString(proto)
	bw.WriteString("\r\nX-Forwarded-Port: ")
	bw.WriteString(port)
	bw.WriteString("\r\n\r\n")
}

// forwardedFor gives the client's address, the scheme and the port it
// connected to.
func forwardedFor(r *http.Request) (ip, proto, port string) {
	ip = r.RemoteAddr
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	proto, port = "http", "80"
	if r.TLS != nil {
		proto, port = "https", "443"
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		port = strconv.Itoa(a.Port)
	}
	return ip, proto, port
}

// copyResponse copies resp to w (headers less those of the endpoint's
// connection, the body, trailers) and reports whether all of it was read,
// so that the connection can serve again.
func (p *Proxy) copyResponse(w http.ResponseWriter, resp *http.Response) bool {
	h := w.Header()
	conn := connectionTokens(resp.Header)
	for k, vv := range resp.Header {
		if hopByHop[k] || conn[k] {
			continue
		}
		h[k] = vv
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	buf := p.buffers.Get()
	defer p.buffers.Put(buf)
	var flush func()
	if f, ok := w.(http.Flusher); ok && resp.ContentLength == -1 {
		flush = f.Flush // a stream: pass each piece on at once, as ReverseProxy does
	}
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return false
			}
			if flush != nil {
				flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return false
		}
	}
	resp.Body.Close()
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	return true
}
