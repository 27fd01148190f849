package ingressproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The plain HTTP listener has a front end of its own for the requests
// most traffic is made of: HTTP/1.1, no body, no upgrade, a head that
// fits in 8 KiB and that a strict parser accepts. One goroutine per
// client connection reads the head in place, routes it, writes it to a
// pooled endpoint connection, and passes the response back as it comes,
// without building net/http's Request and Response (nginx works the same
// way). The first request it does not take (a body, an upgrade, HTTP/1.0,
// h2c, anything unusual or malformed) hands the connection, with what was
// read of it, to net/http's server, which serves it from there on
// (ReverseProxy, or the direct path). That front end costs about half the
// CPU of net/http's server for the same request (docs/ingress.md).

const (
	h1ReadBuffer    = 8 << 10  // the longest request head the front end takes
	h1WriteBuffer   = 4 << 10  // what is written to a client before a flush
	upReadBuffer    = 16 << 10 // the longest response head an endpoint may send
	maxHeaderFields = 64
)

// h1Head is a parsed request head; its slices point into the connection's
// read buffer and are valid until the next read.
type h1Head struct {
	size   int // bytes of the head, with the blank line
	method []byte
	target []byte
	path   string // the decoded path, for routing
	host   []byte
	lines  [maxHeaderFields][]byte // header lines without CRLF
	skip   [maxHeaderFields]bool   // lines not forwarded
	n      int
	close  bool // Connection: close
}

// errHandoff means the front end does not take this request: net/http's
// server does.
var errHandoff = errors.New("ingressproxy: handed to net/http")

// readHead reads a request head from br without consuming it. It returns
// errHandoff for what the front end does not take, or the read's error.
func readHead(br *bufio.Reader, h *h1Head) error {
	var head []byte
	for {
		b, _ := br.Peek(br.Buffered()) //nolint:errcheck // what is buffered is always there
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			head = b[:i+2]
			h.size = i + 4
			break
		}
		if bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n")) || len(b) >= br.Size() {
			return errHandoff // bare LF line ends, or too long: net/http decides
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			if len(b) > 0 && errors.Is(err, bufio.ErrBufferFull) {
				return errHandoff
			}
			return err
		}
	}
	// Request line: METHOD SP origin-form SP HTTP/1.1
	eol := bytes.Index(head, []byte("\r\n"))
	line := head[:eol]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errHandoff
	}
	h.method = line[:sp1]
	for _, c := range h.method {
		if c < 'A' || c > 'Z' {
			return errHandoff
		}
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return errHandoff
	}
	h.target = rest[:sp2]
	if h.target[0] != '/' || (len(h.target) > 1 && h.target[1] == '/') {
		return errHandoff // not origin form ("//x" would parse as an authority)
	}
	for _, c := range h.target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return errHandoff
		}
	}
	if string(h.method) == http.MethodConnect {
		return errHandoff
	}
	rawPath := h.target
	if q := bytes.IndexByte(rawPath, '?'); q >= 0 {
		rawPath = rawPath[:q]
	}
	if bytes.IndexByte(rawPath, '%') >= 0 {
		p, err := url.PathUnescape(string(rawPath))
		if err != nil {
			return errHandoff
		}
		h.path = p
	} else {
		h.path = string(rawPath)
	}

	// Header fields.
	h.n, h.host, h.close = 0, nil, false
	hosts := 0
	for rest := head[eol+2:]; len(rest) > 0; {
		eol := bytes.Index(rest, []byte("\r\n"))
		line := rest[:eol]
		rest = rest[eol+2:]
		if h.n == maxHeaderFields {
			return errHandoff
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errHandoff // also obs-fold: a line starting with a space has no token before ':'
		}
		name := line[:colon]
		for _, c := range name {
			if !tokenByte(c) {
				return errHandoff
			}
		}
		value := bytes.TrimRight(bytes.TrimLeft(line[colon+1:], " \t"), " \t")
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return errHandoff
			}
		}
		h.lines[h.n] = line
		h.skip[h.n] = false
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			hosts++
			h.host = value
			h.skip[h.n] = true // written first, once
		case bytes.EqualFold(name, []byte("Content-Length")):
			if string(value) != "0" {
				return errHandoff
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")), bytes.EqualFold(name, []byte("Upgrade")),
			bytes.EqualFold(name, []byte("Expect")):
			return errHandoff
		case bytes.EqualFold(name, []byte("Connection")):
			for _, tok := range bytes.Split(value, []byte(",")) {
				tok = bytes.TrimSpace(tok)
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					h.close = true
				case len(tok) == 0, bytes.EqualFold(tok, []byte("keep-alive")):
				default:
					return errHandoff // a header of the connection to leave out: net/http's path does it
				}
			}
			h.skip[h.n] = true
		default:
			h.skip[h.n] = skipRequestHeader(name)
		}
		h.n++
	}
	if hosts != 1 || !validHost(h.host) {
		return errHandoff
	}
	return nil
}

// skipRequestHeader reports the headers never forwarded: those of the
// client's connection, and the forwarding headers the proxy sets itself.
func skipRequestHeader(name []byte) bool {
	for _, s := range [...]string{"Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Trailer",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-Ip"} {
		if len(name) == len(s) && bytes.EqualFold(name, []byte(s)) {
			return true
		}
	}
	return false
}

// tokenByte reports the bytes of an HTTP token (RFC 9110 5.6.2).
func tokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// validHost accepts what net/http accepts in a Host header.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case bytes.IndexByte([]byte("-._~!$&'()*+,;=:[]%"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

// frontEnd serves the plain HTTP listener's connections.
type frontEnd struct {
	p  *Proxy
	hl *handoffListener

	mu      sync.Mutex
	conns   map[net.Conn]bool // connection → busy with a request
	closing bool
	wg      sync.WaitGroup
	idle    *sync.Cond // signalled when a connection ends or goes idle
}

func newFrontEnd(p *Proxy, hl *handoffListener) *frontEnd {
	fe := &frontEnd{p: p, hl: hl, conns: map[net.Conn]bool{}}
	fe.idle = sync.NewCond(&fe.mu)
	return fe
}

// serve runs one client connection until it ends or is handed over.
func (fe *frontEnd) serve(c net.Conn) {
	defer fe.wg.Done()
	p := fe.p
	defer func() {
		// As net/http's server does for its handlers: a fault serving one
		// connection ends that connection, not the proxy.
		if v := recover(); v != nil {
			p.logf("ingressproxy: panic serving %v: %v\n%s", c.RemoteAddr(), v, debug.Stack())
			fe.end(c)
		}
	}()
	br := bufio.NewReaderSize(c, h1ReadBuffer)
	bw := bufio.NewWriterSize(c, h1WriteBuffer)
	var h h1Head
	ip, port := clientAndPort(c)
	for {
		if !fe.setBusy(c, false) {
			fe.end(c)
			return
		}
		c.SetReadDeadline(time.Now().Add(p.cfg.IdleTimeout)) //nolint:errcheck // a conn that cannot take deadlines fails its reads
		if _, err := br.Peek(1); err != nil {
			fe.end(c)
			return
		}
		if !fe.setBusy(c, true) {
			fe.end(c)
			return
		}
		c.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout)) //nolint:errcheck
		err := readHead(br, &h)
		if errors.Is(err, errHandoff) {
			fe.forget(c)
			c.SetReadDeadline(time.Time{}) //nolint:errcheck
			fe.hl.handoff(&replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(buffered(br)), c)})
			return
		}
		if err != nil {
			fe.end(c)
			return
		}
		c.SetReadDeadline(time.Time{}) //nolint:errcheck
		keep := p.serveH1(bw, &h, ip, port)
		br.Discard(h.size) //nolint:errcheck // the head is buffered
		if err := bw.Flush(); err != nil || !keep || h.close {
			fe.end(c)
			return
		}
	}
}

// buffered copies what br holds unread.
func buffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered()) //nolint:errcheck // what is buffered is always there
	return bytes.Clone(b)
}

func clientAndPort(c net.Conn) (ip, port string) {
	ip, port = c.RemoteAddr().String(), "80"
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		port = strconv.Itoa(a.Port)
	}
	return ip, port
}

// setBusy records whether c is serving a request; false when the front
// end is closing and c should end (only between requests).
func (fe *frontEnd) setBusy(c net.Conn, busy bool) bool {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if fe.closing {
		return false
	}
	fe.conns[c] = busy
	if !busy {
		fe.idle.Broadcast()
	}
	return true
}

func (fe *frontEnd) forget(c net.Conn) {
	fe.mu.Lock()
	delete(fe.conns, c)
	fe.idle.Broadcast()
	fe.mu.Unlock()
}

func (fe *frontEnd) end(c net.Conn) {
	fe.forget(c)
	c.Close()
}

// track registers a new connection; false when closing.
func (fe *frontEnd) track(c net.Conn) bool {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if fe.closing {
		return false
	}
	fe.conns[c] = false
	fe.wg.Add(1)
	return true
}

// shutdown closes the idle connections and lets the busy ones finish
// their request, until ctx ends; then it closes everything.
func (fe *frontEnd) shutdown(ctx context.Context) {
	fe.mu.Lock()
	fe.closing = true
	stop := context.AfterFunc(ctx, func() {
		fe.mu.Lock()
		fe.idle.Broadcast()
		fe.mu.Unlock()
	})
	for {
		busy := 0
		for c, b := range fe.conns {
			if b {
				busy++
			} else {
				c.Close() // wakes its reader, which ends it
			}
		}
		if busy == 0 || ctx.Err() != nil {
			break
		}
		fe.idle.Wait()
	}
	for c := range fe.conns {
		c.Close()
	}
	fe.mu.Unlock()
	stop()
	fe.wg.Wait()
}

// serveH1 answers one request of the front end: the proxy's own answer,
// or the endpoint's. It reports whether the connection can go on.
func (p *Proxy) serveH1(bw *bufio.Writer, h *h1Head, ip, port string) bool {
	rt := p.routes.Load().match(requestHost(string(h.host)), h.path)
	switch {
	case rt == nil:
		return writeAnswer(bw, http.StatusNotFound, "no Ingress rule matches this host and path")
	case rt.backend == nil:
		return writeAnswer(bw, http.StatusServiceUnavailable, "the Ingress backend is not a Service")
	}
	set := rt.backend.endpoints.Load()
	if len(set.addrs) == 0 {
		return writeAnswer(bw, http.StatusServiceUnavailable, "the Service has no ready endpoint")
	}
	method := methodName(h.method)
	tries := 1
	if idempotent(method) {
		tries = min(p.cfg.MaxTries, len(set.addrs))
	}
	start := set.pick()
	var (
		uc   *upConn
		resp upHead
		err  error
	)
	for i := range tries {
		uc, err = p.exchangeH1(h, method, set.addrs[(start+i)%len(set.addrs)], ip, port, &resp)
		if err == nil || !dialFailed(err) {
			break
		}
	}
	if err != nil {
		p.logf("ingressproxy: %s %s%s: %v", method, clip(string(h.host)), clip(h.path), err)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return writeAnswer(bw, http.StatusGatewayTimeout, "the Service's endpoint did not answer in time")
		}
		return writeAnswer(bw, http.StatusBadGateway, "the Service's endpoints could not be reached")
	}
	keep, reuse := p.relay(bw, uc, &resp, method == http.MethodHead, h.close)
	if reuse {
		p.pool.put(uc)
	} else {
		uc.Close()
	}
	return keep
}

// methodName is the method as a string, without allocating for the
// common ones.
func methodName(m []byte) string {
	for _, k := range [...]string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete, http.MethodTrace} {
		if string(m) == k {
			return k
		}
	}
	return string(m)
}

// writeAnswer writes the proxy's own short answer.
func writeAnswer(bw *bufio.Writer, code int, msg string) bool {
	body := fmt.Sprintf("%d %s: %s\n", code, http.StatusText(code), msg)
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(body), body)
	return true
}

// exchangeH1 writes the request to a connection to addr and reads the
// response head into resp (as exchange does for net/http's requests).
func (p *Proxy) exchangeH1(h *h1Head, method, addr, ip, port string, resp *upHead) (*upConn, error) {
	fresh := false
	for {
		var uc *upConn
		if !fresh {
			uc = p.pool.get(addr)
		}
		reused := uc != nil
		if uc == nil {
			var err error
			if uc, err = p.pool.dial(context.Background(), addr); err != nil {
				return nil, err
			}
		}
		err := writeH1Request(uc.bw, h, ip, port)
		if err == nil {
			err = readUpHead(uc.br, resp)
		}
		if err == nil {
			return uc, nil
		}
		uc.Close()
		if reused && stale(err) && (replayableMethod(method) || h.idempotencyKey()) {
			fresh = true
			continue
		}
		return nil, err
	}
}

func replayableMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

func (h *h1Head) idempotencyKey() bool {
	for i := 0; i < h.n; i++ {
		name, _, _ := bytes.Cut(h.lines[i], []byte(":"))
		if bytes.EqualFold(name, []byte("Idempotency-Key")) || bytes.EqualFold(name, []byte("X-Idempotency-Key")) {
			return true
		}
	}
	return false
}

func writeH1Request(bw *bufio.Writer, h *h1Head, ip, port string) error {
	bw.Write(h.method)
	bw.WriteByte(' ')
	bw.Write(h.target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(h.host)
	bw.WriteString("\r\n")
	for i := 0; i < h.n; i++ {
		if !h.skip[i] {
			bw.Write(h.lines[i])
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("X-Forwarded-For: ")
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Real-Ip: ")
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.Write(h.host)
	bw.WriteString("\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: ")
	bw.WriteString(port)
	bw.WriteString("\r\n\r\n")
	if err := bw.Flush(); err != nil {
		return &writeError{err}
	}
	return nil
}

// upHead is a parsed response head; its slices point into the endpoint
// connection's read buffer.
type upHead struct {
	size          int
	status        int
	statusLine    []byte // after "HTTP/1.x "
	lines         [maxHeaderFields][]byte
	skip          [maxHeaderFields]bool
	n             int
	contentLength int64 // -1 when none
	chunked       bool
	close         bool // the endpoint closes the connection after this response
}

var errBadResponse = errors.New("ingressproxy: malformed response from the endpoint")

// readUpHead reads a response head from br (1xx interim responses skipped)
// and consumes it.
func readUpHead(br *bufio.Reader, r *upHead) error {
	for {
		if err := parseUpHead(br, r); err != nil {
			return err
		}
		if r.status >= 100 && r.status < 200 {
			if r.status == http.StatusSwitchingProtocols {
				return errors.New("ingressproxy: 101 Switching Protocols to a request without Upgrade")
			}
			continue // parseUpHead consumed it
		}
		return nil
	}
}

func parseUpHead(br *bufio.Reader, r *upHead) error {
	var head []byte
	for {
		b, _ := br.Peek(br.Buffered()) //nolint:errcheck // buffered
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			head, r.size = b[:i+2], i+4
			break
		}
		if len(b) >= br.Size() {
			return fmt.Errorf("%w: a head longer than %d bytes", errBadResponse, br.Size())
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			if len(b) > 0 && errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	eol := bytes.Index(head, []byte("\r\n"))
	line := head[:eol]
	http10 := bytes.HasPrefix(line, []byte("HTTP/1.0 "))
	if !http10 && !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return fmt.Errorf("%w: status line %q", errBadResponse, clip(string(line)))
	}
	r.statusLine = line[len("HTTP/1.1 "):]
	if len(r.statusLine) < 3 || (len(r.statusLine) > 3 && r.statusLine[3] != ' ') {
		return fmt.Errorf("%w: status line %q", errBadResponse, clip(string(line)))
	}
	code, err := strconv.Atoi(string(r.statusLine[:3]))
	if err != nil || code < 100 {
		return fmt.Errorf("%w: status line %q", errBadResponse, clip(string(line)))
	}
	for _, c := range r.statusLine {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("%w: status line %q", errBadResponse, clip(string(line)))
		}
	}
	r.status, r.n, r.contentLength, r.chunked, r.close = code, 0, -1, false, http10
	var named [][]byte // headers the Connection header names
	for rest := head[eol+2:]; len(rest) > 0; {
		eol := bytes.Index(rest, []byte("\r\n"))
		line := rest[:eol]
		rest = rest[eol+2:]
		if r.n == maxHeaderFields {
			return fmt.Errorf("%w: more than %d header fields", errBadResponse, maxHeaderFields)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fmt.Errorf("%w: header line %q", errBadResponse, clip(string(line)))
		}
		name := line[:colon]
		for _, c := range name {
			if !tokenByte(c) {
				return fmt.Errorf("%w: header line %q", errBadResponse, clip(string(line)))
			}
		}
		value := bytes.Trim(line[colon+1:], " \t")
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return fmt.Errorf("%w: header line %q", errBadResponse, clip(string(line)))
			}
		}
		r.lines[r.n] = line
		r.skip[r.n] = false
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (r.contentLength >= 0 && r.contentLength != n) {
				return fmt.Errorf("%w: Content-Length %q", errBadResponse, clip(string(value)))
			}
			r.contentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if !bytes.EqualFold(value, []byte("chunked")) || r.chunked {
				return fmt.Errorf("%w: Transfer-Encoding %q", errBadResponse, clip(string(value)))
			}
			r.chunked = true
		case bytes.EqualFold(name, []byte("Connection")):
			r.skip[r.n] = true
			for _, tok := range bytes.Split(value, []byte(",")) {
				tok = bytes.TrimSpace(tok)
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					r.close = true
				case bytes.EqualFold(tok, []byte("keep-alive")):
					r.close = false
				case len(tok) > 0:
					named = append(named, tok)
				}
			}
		case bytes.EqualFold(name, []byte("Keep-Alive")), bytes.EqualFold(name, []byte("Proxy-Connection")),
			bytes.EqualFold(name, []byte("Upgrade")), bytes.EqualFold(name, []byte("Proxy-Authenticate")):
			r.skip[r.n] = true
		}
		r.n++
	}
	if r.chunked {
		if r.contentLength >= 0 {
			return fmt.Errorf("%w: both Content-Length and chunked", errBadResponse)
		}
		if http10 {
			return fmt.Errorf("%w: chunked in HTTP/1.0", errBadResponse)
		}
	}
	for i := 0; i < r.n && len(named) > 0; i++ {
		name, _, _ := bytes.Cut(r.lines[i], []byte(":"))
		for _, t := range named {
			if bytes.EqualFold(name, t) {
				r.skip[i] = true
			}
		}
	}
	br.Discard(r.size) //nolint:errcheck // buffered
	return nil
}

// relay writes the response to the client: the head (less the endpoint's
// connection headers) and the body as it comes, flushed whenever nothing
// more is buffered from the endpoint. It reports whether the client's
// connection can go on and whether the endpoint's can serve again.
func (p *Proxy) relay(bw *bufio.Writer, uc *upConn, r *upHead, head, clientClose bool) (keep, reuse bool) {
	noBody := head || r.status == http.StatusNoContent || r.status == http.StatusNotModified
	closeDelimited := !noBody && !r.chunked && r.contentLength < 0
	bw.WriteString("HTTP/1.1 ")
	bw.Write(r.statusLine)
	bw.WriteString("\r\n")
	for i := 0; i < r.n; i++ {
		if !r.skip[i] {
			bw.Write(r.lines[i])
			bw.WriteString("\r\n")
		}
	}
	if clientClose || closeDelimited {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if noBody {
		return true, !r.close
	}
	buf := p.buffers.Get()
	defer p.buffers.Put(buf)
	ubr := uc.br
	// pass copies n bytes (all when n < 0: until the end of the stream).
	pass := func(n int64) error {
		for n != 0 {
			if ubr.Buffered() == 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
			}
			b := buf
			if n > 0 && int64(len(b)) > n {
				b = b[:n]
			}
			k, err := ubr.Read(b)
			if k > 0 {
				if _, werr := bw.Write(b[:k]); werr != nil {
					return werr
				}
				if n > 0 {
					n -= int64(k)
				}
			}
			if err != nil {
				if n < 0 && errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
		return nil
	}
	switch {
	case r.contentLength >= 0:
		if err := pass(r.contentLength); err != nil {
			return false, false
		}
		return true, !r.close
	case r.chunked:
		if err := passChunked(bw, ubr, pass); err != nil {
			return false, false
		}
		return true, !r.close
	default:
		pass(-1) //nolint:errcheck // the end of the stream ends the response either way
		return false, false
	}
}

// passChunked copies a chunked body, reading its framing to find its end:
// each chunk's size line (rewritten without extensions), data and CRLF,
// then the trailer section.
func passChunked(bw *bufio.Writer, br *bufio.Reader, pass func(int64) error) error {
	for {
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, ok := chunkSize(line)
		if !ok {
			return fmt.Errorf("%w: chunk size line %q", errBadResponse, clip(string(line)))
		}
		// The size alone (extensions dropped, written as strict parsers
		// want it).
		bw.WriteString(strconv.FormatInt(size, 16))
		bw.WriteString("\r\n")
		if size == 0 {
			break
		}
		if err := pass(size); err != nil {
			return err
		}
		crlf, err := br.Peek(2)
		if err != nil {
			return err
		}
		if string(crlf) != "\r\n" {
			return fmt.Errorf("%w: no CRLF after a chunk", errBadResponse)
		}
		bw.Write(crlf)
		br.Discard(2) //nolint:errcheck // peeked
	}
	for { // the trailer section, up to its blank line
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if !validTrailerLine(line) {
			return fmt.Errorf("%w: trailer line %q", errBadResponse, clip(string(line)))
		}
		bw.Write(line)
		if len(line) == 2 {
			return nil
		}
	}
}

// validTrailerLine accepts "\r\n" (the end) and "name: value\r\n".
func validTrailerLine(line []byte) bool {
	line, ok := bytes.CutSuffix(line, []byte("\r\n"))
	if !ok {
		return false
	}
	if len(line) == 0 {
		return true
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	for _, c := range line[:colon] {
		if !tokenByte(c) {
			return false
		}
	}
	for _, c := range line[colon+1:] {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// chunkSize parses "HEX[;ext]\r\n".
func chunkSize(line []byte) (int64, bool) {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | int64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// handoffListener is the listener net/http's server serves: the
// connections the front end hands over.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

func (l *handoffListener) handoff(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// replayConn is a connection whose first bytes were already read: it
// reads them again first.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// accept takes the listener's connections until it is closed (nil) or
// fails for good.
func (fe *frontEnd) accept(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) {
				// As net/http: out of descriptors or a connection gone
				// before it was accepted; wait a little and go on.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				fe.p.logf("ingressproxy: accept: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !fe.track(c) {
			c.Close()
			continue
		}
		go fe.serve(c)
	}
}
