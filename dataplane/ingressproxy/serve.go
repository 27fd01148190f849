package ingressproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// Serve serves plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge
// unless Config.DisableH2C) on ln until ctx ends, then waits up to
// Config.ShutdownTimeout for requests in flight and closes everything. It
// returns nil after a shutdown, or why serving failed.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	hl := newHandoffListener(ln.Addr())
	srv := p.newServer()
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(!p.cfg.DisableH2C)
	fe := newFrontEnd(p, hl)
	accepted := make(chan error, 1)
	go func() { accepted <- fe.accept(ln) }()
	stopFrontEnd := func(sctx context.Context) {
		ln.Close() // the handoff listener is srv's: its Shutdown closes it
		fe.shutdown(sctx)
	}
	err := p.run(ctx, srv, func() error { return srv.Serve(hl) }, accepted, stopFrontEnd)
	if aerr := <-accepted; err == nil && aerr != nil {
		err = fmt.Errorf("ingressproxy: accepting: %w", aerr)
	}
	return err
}

// ServeTLS serves HTTPS on ln (HTTP/1.1, and HTTP/2 by ALPN) as Serve
// serves HTTP, with the certificate of each connection chosen by its SNI
// name among the Ingresses' TLS Secrets at the time of the handshake.
func (p *Proxy) ServeTLS(ctx context.Context, ln net.Listener) error {
	srv := p.newServer()
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.TLSConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: p.getCertificate,
	}
	return p.run(ctx, srv, func() error { return srv.ServeTLS(ln, "", "") }, nil, nil)
}

func (p *Proxy) newServer() *http.Server {
	return &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.IdleTimeout,
		ErrorLog:          p.cfg.ErrorLog,
	}
}

// run serves srv until ctx ends (or serving fails), then shuts it down,
// and with it, when there is one, the front end (stop) whose accept loop
// reports on accepted.
func (p *Proxy) run(ctx context.Context, srv *http.Server, serve func() error, accepted chan error, stop func(context.Context)) error {
	// Requests live in a context of their own: ending ctx first lets them
	// finish (Shutdown), then ends those still there, upgraded
	// connections among them (ReverseProxy closes an upgraded connection
	// when its request's context ends).
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	srv.BaseContext = func(net.Listener) context.Context { return base }
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	var failed error
	select {
	case err := <-errc:
		failed = fmt.Errorf("ingressproxy: serving: %w", err)
	case err := <-accepted:
		accepted <- err // for the caller
		failed = fmt.Errorf("ingressproxy: accepting: %w", err)
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(base, p.cfg.ShutdownTimeout)
	var wg sync.WaitGroup
	if stop != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop(sctx)
		}()
	}
	err := srv.Shutdown(sctx)
	wg.Wait()
	scancel()
	cancel()
	if err != nil {
		// What did not finish in time is closed.
		if cerr := srv.Close(); !errors.Is(cerr, net.ErrClosed) && cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil // a listener closed twice: Serve's own return races with Shutdown
	}
	if failed != nil {
		return failed
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && !errors.Is(serr, net.ErrClosed) && err == nil {
		err = serr
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("ingressproxy: shutting down: %w", err)
	}
	return nil
}

// logf reports an error of serving to Config.ErrorLog.
func (p *Proxy) logf(format string, args ...any) {
	if p.cfg.ErrorLog != nil {
		p.cfg.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// ServeHTTP routes one request: it is the handler of Serve's and
// ServeTLS's servers, and may be mounted elsewhere.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		answer(w, http.StatusMethodNotAllowed, "CONNECT is not proxied")
		return
	}
	rt := p.routes.Load().match(requestHost(r.Host), r.URL.Path)
	if rt == nil {
		answer(w, http.StatusNotFound, "no Ingress rule matches this host and path")
		return
	}
	if rt.backend == nil {
		answer(w, http.StatusServiceUnavailable, "the Ingress backend is not a Service")
		return
	}
	set := rt.backend.endpoints.Load()
	if len(set.addrs) == 0 {
		answer(w, http.StatusServiceUnavailable, "the Service has no ready endpoint")
		return
	}
	if direct(r) {
		p.forward(w, r, set)
		return
	}
	p.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), endpointsKey{}, set)))
}

// answer writes the proxy's own short answers (404, 502, 503...).
func answer(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s: %s\n", code, http.StatusText(code), msg)
}

// rewrite makes the request sent to an endpoint (the balancer sets the
// endpoint's address): the client's Host kept, and the X-Forwarded
// headers and X-Real-IP set as ingress-nginx sets them by default
// (incoming X-Forwarded-* are not trusted: ReverseProxy removes them).
func rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = "endpoint"
	out.Host = in.Host
	ip, proto, port := forwardedFor(in)
	h := out.Header
	h["X-Forwarded-For"] = []string{ip}
	h["X-Real-Ip"] = []string{ip}
	h["X-Forwarded-Host"] = []string{in.Host}
	h["X-Forwarded-Proto"] = []string{proto}
	h["X-Forwarded-Port"] = []string{port}
}

// proxyError answers a request that no endpoint answered: 504 when the
// endpoint timed out, 502 otherwise (nothing when the client went away).
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	p.logf("ingressproxy: %s %s%s: %v", r.Method, clip(r.Host), clip(r.URL.Path), err)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		answer(w, http.StatusGatewayTimeout, "the Service's endpoint did not answer in time")
		return
	}
	answer(w, http.StatusBadGateway, "the Service's endpoints could not be reached")
}

func newTransport(cfg Config) *http.Transport {
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		// No Proxy: never a proxy from the environment.
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerEndpoint,
		IdleConnTimeout:     cfg.BackendIdleTimeout,
		// Pass Accept-Encoding and bodies through as they are.
		DisableCompression: true,
	}
}

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{ pool *sync.Pool }

func newBufferPool() bufferPool {
	return bufferPool{pool: &sync.Pool{New: func() any { return new([32 * 1024]byte) }}}
}

func (b bufferPool) Get() []byte { return b.pool.Get().(*[32 * 1024]byte)[:] }
func (b bufferPool) Put(s []byte) {
	if len(s) == 32*1024 {
		b.pool.Put((*[32 * 1024]byte)(s))
	}
}
