// Package apiserver serves the Kubernetes REST API that kubectl and client-go use, over
// logplane's object log: discovery, OpenAPI, get/list/watch, create/update/patch (merge,
// strategic merge, JSON patch, server-side apply)/delete/deletecollection, Tables, the status,
// scale, binding and eviction subresources, authentication by client certificate and bearer
// token, health and metrics; and logplane's own endpoints beside it: object history, reads as of
// a past resourceVersion or time, and an audit query (see docs/apiserver.md).
//
// Writes go through the registry (the write path shared with reconcilers and node agents);
// reads are served from a projection; watches from one follower of the log that feeds every
// watcher. Embed it with New and Serve, or mount Handler after Start.
package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericrequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/apiserver/rbac"
	"github.com/logplane/logplane/apiserver/serviceaccount"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/nodefeed"
	"github.com/logplane/logplane/registry"
)

// Config configures a Server.
type Config struct {
	// Log is the object log. Required.
	Log *eventlog.Log
	// Store is a projection of Log. If nil, the server makes one and runs it from Start.
	// If set, whoever made it runs it (projections.Store.Run).
	Store *projections.Store
	// Registry is the write path. If nil, the server makes one over Log and Store, with
	// Admission.
	Registry *registry.Registry
	// Admission is the admission chain of the registry the server makes (registry.Config's).
	Admission admission.Interface
	// Catalog of the kinds served. Default builtin.Catalog().
	Catalog *kinds.Catalog
	// Sealer, when the server makes its own Store and Registry, encrypts Secrets in the log and
	// opens them (package encryption). Nil: they are written in clear (tests).
	Sealer registry.Sealer
	// TLS is the server's TLS configuration, with client CAs for certificate authentication.
	// Nil: Serve serves plain HTTP (then only bearer tokens authenticate). See pki.Load.
	TLS *tls.Config
	// Tokens authenticates bearer tokens, e.g. a token file read by
	// k8s.io/apiserver/pkg/authentication/token/tokenfile.NewCSV (kube-apiserver's
	// --token-auth-file). Nil: no token is valid.
	Tokens authenticator.Token
	// Anonymous, if true, lets requests without credentials in as the user "system:anonymous"
	// instead of answering 401. For tests and local experiments only.
	Anonymous bool
	// AuthorizeAll, if true, turns authorization off: every authenticated user may do
	// everything, as before RBAC. For benchmarks and experiments only. Default false: every
	// request is authorized by RBAC (system:masters may do anything).
	AuthorizeAll bool
	// Metrics receives the server's metrics. Nil: a registry of its own, served on /metrics.
	Metrics *prometheus.Registry
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// WatchCache is how many recent events the watch fan-out keeps in memory; watches from an
	// older resourceVersion read the log first. Default 16384.
	WatchCache int
	// BookmarkInterval is how often watches that allow bookmarks get one. Default 10s.
	BookmarkInterval time.Duration
	// MaxRequestBody bounds request bodies. Default 3 MiB, as Kubernetes.
	MaxRequestBody int64
	// KubeletTLS is the client TLS configuration towards node agents' streaming endpoints
	// (pods/log, exec, portforward; see KubeletClientTLS). Nil: those answer 503.
	KubeletTLS *tls.Config
	// ProxyTransport carries the pods/proxy and services/proxy requests to pods (kube-apiserver's
	// ProxyTransport). Default: an http.Transport with the defaults of k8s.io/apimachinery's
	// SetTransportDefaults that does not verify the pods' certificates, as kube-apiserver's.
	ProxyTransport http.RoundTripper
	// ServiceAccountKey signs service account tokens (serviceaccount.LoadKey of the pki
	// directory): the TokenRequest API, their authentication, the OIDC discovery documents.
	// Nil: none of them (serviceaccounts/token answers 503).
	ServiceAccountKey *serviceaccount.Key
	// ServiceAccountIssuer is the tokens' issuer and the API's audience (kube-apiserver's
	// --service-account-issuer). Default serviceaccount.DefaultIssuer.
	ServiceAccountIssuer string
	// ExternalAddress is the host:port clients reach the server at, for the OIDC jwks_uri.
	// Default: the address each request reached.
	ExternalAddress string
	// Clock times service account tokens. Default: the real clock.
	Clock clock.PassiveClock
	// Join, if set, serves the node join requests under JoinPath (a bootstrap token
	// authenticates them, not the API's authentication). See package nodejoin.
	Join http.Handler
	// AdvertiseAddress is the address and port at which pods reach this server
	// (kube-apiserver's --advertise-address and secure port): written as the endpoints of the
	// `kubernetes` Service at start. Zero: none written (a loopback listener is no endpoint).
	AdvertiseAddress netip.AddrPort
}

// JoinPath is where Config.Join is served: the requests of nodes joining with a bootstrap token.
const JoinPath = "/logplane/join"

// Server is the API server. It is safe for concurrent use.
type Server struct {
	cfg      Config
	log      *eventlog.Log
	store    *projections.Store
	ownStore bool
	reg      *registry.Registry
	catalog  *kinds.Catalog
	logger   *slog.Logger
	metrics  *metrics
	promReg  *prometheus.Registry
	hub      *hub
	encCache *encodingCache
	openapi  *openAPI
	watching atomic.Int64
	pages    pageSnapshots
	// stopping is closed when Serve starts shutting down: watches end cleanly, after the
	// server stopped taking connections, so that clients resume them from where they were.
	stopping     chan struct{}
	stoppingOnce sync.Once

	startOnce sync.Once
	startErr  error
	started   chan struct{}
	handler   http.Handler
	kubelet   kubeletClient
	proxyRT   proxyClient
	authn     authenticator.Request
	sa        *serviceAccounts
	rbac      *rbac.Authorizer
	authz     authorizer.Authorizer
	denials   *denials
}

// New returns a server; nothing runs until Start or Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		return nil, errors.New("apiserver: config needs a Log")
	}
	if cfg.Catalog == nil {
		cfg.Catalog = builtin.Catalog()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WatchCache <= 0 {
		cfg.WatchCache = 1 << 14
	}
	if cfg.BookmarkInterval <= 0 {
		cfg.BookmarkInterval = 10 * time.Second
	}
	if cfg.MaxRequestBody <= 0 {
		cfg.MaxRequestBody = 3 << 20
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Log,
		store:    cfg.Store,
		catalog:  cfg.Catalog,
		logger:   cfg.Logger,
		started:  make(chan struct{}),
		stopping: make(chan struct{}),
	}
	if s.store == nil {
		var opts []projections.Option
		if cfg.Sealer != nil {
			opts = append(opts, projections.WithOpener(cfg.Sealer))
		}
		s.store = projections.New(cfg.Catalog, cfg.Logger, opts...)
		s.ownStore = true
	}
	s.reg = cfg.Registry
	if s.reg == nil {
		reg, err := registry.New(registry.Config{Log: cfg.Log, Store: s.store, Catalog: cfg.Catalog, Logger: cfg.Logger, Admission: cfg.Admission, Sealer: cfg.Sealer})
		if err != nil {
			return nil, err
		}
		s.reg = reg
	}
	s.promReg = cfg.Metrics
	if s.promReg == nil {
		s.promReg = prometheus.NewRegistry()
	}
	m, err := newMetrics(s.promReg)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.encCache = newEncodingCache()
	s.hub = newHub(s, cfg.WatchCache)
	oa, err := newOpenAPI(s.catalog, s.reg.TypeConverter())
	if err != nil {
		return nil, err
	}
	s.openapi = oa
	if s.sa, err = newServiceAccounts(cfg, s.store); err != nil {
		return nil, err
	}
	s.authn = newAuthenticator(cfg.TLS, cfg.Tokens, s.sa.tokenAuthenticator(), cfg.Anonymous)
	s.rbac = rbac.New(s.store)
	s.authz = newAuthorizer(s.rbac, cfg.AuthorizeAll)
	s.denials = newDenials(4096)
	s.denials.dropped, s.denials.logger = s.metrics.deniedDropped, s.logger
	s.handler = s.buildHandler()
	if cfg.Join != nil {
		api := s.handler
		s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == JoinPath || strings.HasPrefix(r.URL.Path, JoinPath+"/") {
				cfg.Join.ServeHTTP(w, r)
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	return s, nil
}

// Registry returns the server's write path, for in-process writers.
func (s *Server) Registry() *registry.Registry { return s.reg }

// Store returns the projection the server reads from.
func (s *Server) Store() *projections.Store { return s.store }

// Start runs what the server needs in the background until ctx ends: the projection (if the
// server made it) and the watch fan-out. It returns once the projection has caught up with the
// log and the initial namespaces exist. Deleting a namespace only marks it Terminating: the
// namespace lifecycle reconciler (reconcilers/namespaces) deletes its content and removes it.
func (s *Server) Start(ctx context.Context) error {
	s.startOnce.Do(func() {
		s.startErr = s.start(ctx)
		close(s.started)
	})
	return s.startErr
}

func (s *Server) start(ctx context.Context) error {
	s.hub.start(ctx)
	if s.ownStore {
		go func() {
			err := s.store.Run(ctx, s.log)
			if err != nil && ctx.Err() == nil {
				s.logger.Error("apiserver: projection stopped", "err", err)
			}
		}()
	}
	if _, err := s.reg.ConsistentRead(ctx); err != nil {
		return fmt.Errorf("apiserver: catching up with the log: %w", err)
	}
	stopRBAC, err := s.rbac.Sync()
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, stopRBAC)
	if err := s.bootstrap(ctx); err != nil {
		return err
	}
	if err := s.bootstrapRBAC(ctx); err != nil {
		return err
	}
	go s.encCache.sweep(ctx, s.store)
	// Denials are recorded in the log beside it, and every server's are shown.
	dl, err := s.log.Denials(ctx)
	if err != nil {
		return err
	}
	s.denials.log = dl
	go func() {
		if err := s.denials.follow(ctx); err != nil {
			s.logger.Error("apiserver: following the denial record", "err", err)
		}
	}()
	// Nodes write through commands that the control plane checks (NodeRestriction) and appends.
	go func() {
		if err := s.log.ServeNodeCommands(ctx, s.reg.CheckNodeWrite); err != nil {
			s.logger.Error("apiserver: serving the nodes' writes", "err", err)
		}
	}()
	// Nodes read their feeds (reconcilers/nodefeed) and ask here to open the Secrets in them,
	// which only the control plane's key-encryption key unwraps.
	go func() {
		check := func(ctx context.Context, node string, key eventlog.Key) error {
			if nodefeed.CanRead(s.store, node, key) {
				return nil
			}
			// The feed may be ahead of this server's projection (a pod just bound): ask
			// again once it has applied what the log holds now.
			if _, err := s.reg.ConsistentRead(ctx); err != nil {
				return err
			}
			if !nodefeed.CanRead(s.store, node, key) {
				return fmt.Errorf("%w: node %q may not read %s: no pod bound to it uses it", eventlog.ErrForbidden, node, key)
			}
			return nil
		}
		if err := s.log.ServeNodeOpens(ctx, check, s.reg.OpenSealed); err != nil {
			s.logger.Error("apiserver: serving the nodes' opens", "err", err)
		}
	}()
	go s.serveNodeQueries(ctx)
	return nil
}

// Handler returns the HTTP handler of the whole API. Call Start first (Serve does).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve starts the server (see Start) and serves ln until ctx ends, with TLS when Config.TLS is
// set. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	// Requests do not inherit ctx: on shutdown the server first stops taking connections and
	// tells HTTP/2 clients to go away, then ends watches cleanly, then waits for the rest.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    readHeadBytes, // what is over maxHeadBytes gets a Status (checkHead)
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 2000},
	}
	hs.RegisterOnShutdown(func() {
		time.Sleep(100 * time.Millisecond) // let the GOAWAY frames go out first
		s.stoppingOnce.Do(func() { close(s.stopping) })
	})
	if s.cfg.TLS != nil {
		hs.TLSConfig = s.cfg.TLS.Clone()
		if len(hs.TLSConfig.NextProtos) == 0 {
			hs.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("apiserver: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		cancelBase()
		_ = hs.Close() // what is left is cut; the listener is gone either way
	}
	<-errc
	return nil
}

// buildHandler puts the routes behind the head's size limits (checkHead), authentication,
// metrics and panic recovery.
func (s *Server) buildHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if checkHead(w, r) {
			return // not counted: kube-apiserver never sees these requests
		}
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		start := time.Now()
		info := s.parse(r)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("apiserver: panic serving a request", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				if !rec.wrote {
					writeError(rec, r, apierrors.NewInternalError(fmt.Errorf("internal error: %v", p)))
				}
			}
			s.metrics.observe(r, info, rec.code, time.Since(start))
		}()
		select {
		case <-s.started:
		default:
			if !info.health {
				writeError(rec, r, apierrors.NewServiceUnavailable("the server is starting"))
				return
			}
		}
		r = r.WithContext(warning.WithWarningRecorder(r.Context(), &headerWarnings{w: rec}))
		if u, ok := s.authenticate(r); ok {
			r = r.WithContext(genericrequest.WithUser(r.Context(), u))
		} else if !info.public {
			writeError(rec, r, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		if !info.public {
			ir, ok := s.impersonate(rec, r)
			if !ok {
				return
			}
			r = ir
			// logplane's endpoints authorize what they read themselves (logplane.go).
			if !info.logplane && !s.authorize(rec, r, attributesOf(userFrom(r.Context()), r, info.ri)) {
				return
			}
		}
		s.route(rec, r, info)
	})
}

// recorder remembers the status code of a response, for metrics and recovery.
type recorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		r.wrote = true
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
