// Package ingressproxy is logplane's Ingress controller on the machine
// side: an HTTP and HTTPS reverse proxy that serves the
// networking.k8s.io/v1 Ingresses of its IngressClasses. It takes the
// desired state as Kubernetes objects (IngressClass, Ingress, Service,
// EndpointSlice, Secret) through Update and Delete methods and serves the
// listeners it is given; it knows nothing of the event log (the node agent
// feeds it).
//
// Routing follows the Ingress spec and ingress-nginx: host rules (exact,
// case-insensitive, and wildcards covering one label), path rules (Exact;
// Prefix element by element; ImplementationSpecific as Prefix), the
// longest match first and Exact before Prefix at equal length, the oldest
// Ingress first when two claim the same host and path, defaultBackend, and
// 404 for what nothing matches. Requests go to the ready endpoints of the
// backend Service's port, round-robin over pooled keep-alive connections,
// an idempotent request moving to another endpoint when one cannot be
// reached; 503 when the Service has no ready endpoint. TLS certificates
// come from Secrets chosen by SNI (wildcards too), with a self-signed
// default when none matches or a Secret is missing or bad (reported as a
// Warning). HTTP/2 (h2 over TLS, h2c with prior knowledge), WebSocket and
// other upgrades, and X-Forwarded-For/Proto/Host/Port and X-Real-IP.
//
// Every change builds a new immutable routing table and certificate table
// and swaps them atomically; endpoint changes swap a backend's endpoint
// list in place. Open connections and requests in flight are never
// touched: a change takes effect for the next request and the next TLS
// handshake.
//
// Three paths carry requests. On the plain HTTP listener, a front end of
// its own (h1.go) takes the bodiless HTTP/1.1 requests that a strict
// parser accepts and relays them without net/http's Request and Response;
// any other request hands its connection to net/http's server. There (and
// on the TLS listener), requests without a body go to the endpoint on the
// handler's goroutine (direct.go); the rest, upgrades included, through
// httputil.ReverseProxy. All three share the routing table, the endpoint
// choice and the retry rules.
package ingressproxy

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"log"
	"maps"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Defaults of Config.
const (
	// DefaultController is the spec.controller of the IngressClasses this
	// proxy serves.
	DefaultController = "logplane.io/ingress"
	// DefaultDialTimeout bounds a connection to an endpoint
	// (ingress-nginx's proxy-connect-timeout).
	DefaultDialTimeout = 5 * time.Second
	// DefaultMaxTries is how many endpoints an idempotent request tries
	// when it cannot connect (ingress-nginx's proxy-next-upstream-tries).
	DefaultMaxTries = 3
	// DefaultMaxIdleConnsPerEndpoint is how many idle keep-alive
	// connections are kept to each endpoint.
	DefaultMaxIdleConnsPerEndpoint = 128
	// DefaultBackendIdleTimeout closes idle connections to endpoints
	// (ingress-nginx's upstream-keepalive-timeout).
	DefaultBackendIdleTimeout = 60 * time.Second
	// DefaultReadHeaderTimeout bounds the reading of a client's request
	// headers (nginx's client_header_timeout).
	DefaultReadHeaderTimeout = 60 * time.Second
	// DefaultIdleTimeout closes idle client connections (ingress-nginx's
	// keep-alive).
	DefaultIdleTimeout = 75 * time.Second
	// DefaultShutdownTimeout is how long Serve waits for requests in
	// flight when its context ends.
	DefaultShutdownTimeout = 10 * time.Second
)

// IngressClass annotations and the Ingress annotation the proxy reads.
const (
	// AnnotationDefaultClass marks an IngressClass as the default, for
	// Ingresses that name no class.
	AnnotationDefaultClass = networkingv1.AnnotationIsDefaultIngressClass
	// AnnotationIngressClass is the deprecated class annotation of an
	// Ingress, honoured when spec.ingressClassName is unset, as the
	// Ingress API asks controllers to.
	AnnotationIngressClass = "kubernetes.io/ingress.class"
)

// Reasons of Warnings.
const (
	ReasonTLSSecretNotFound      = "TLSSecretNotFound"
	ReasonTLSSecretInvalid       = "TLSSecretInvalid"
	ReasonTLSCertificateMismatch = "TLSCertificateMismatch"
	ReasonInvalidRule            = "InvalidIngressRule"
	ReasonUnsupportedBackend     = "UnsupportedBackend"
)

// Warning is something about an Ingress the proxy could not serve as
// written; the node agent records it as a Warning Event on the Ingress.
// Each is reported once, when it appears (again after it went away).
type Warning struct {
	Ingress types.NamespacedName
	Reason  string
	Message string
}

// Config configures a Proxy.
type Config struct {
	// Controller is the spec.controller of the IngressClasses served.
	// Default: DefaultController.
	Controller string
	// DefaultCertificate is served when no Ingress has a certificate for
	// the name a client asks for (or it asks for none). Default: a
	// self-signed certificate made by New.
	DefaultCertificate *tls.Certificate
	// DialTimeout bounds a connection to an endpoint. Default:
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// MaxTries is how many endpoints an idempotent request tries when it
	// cannot connect. Default: DefaultMaxTries.
	MaxTries int
	// MaxIdleConnsPerEndpoint: idle keep-alive connections kept to each
	// endpoint. Default: DefaultMaxIdleConnsPerEndpoint.
	MaxIdleConnsPerEndpoint int
	// BackendIdleTimeout closes idle connections to endpoints. Default:
	// DefaultBackendIdleTimeout.
	BackendIdleTimeout time.Duration
	// ReadHeaderTimeout bounds the reading of a request's headers.
	// Default: DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle client connections. Default:
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long Serve and ServeTLS wait for requests in
	// flight once their context ends; upgraded connections (WebSocket)
	// are closed after it. Default: DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// DisableH2C turns off HTTP/2 without TLS (prior knowledge) on Serve's
	// listeners.
	DisableH2C bool
	// Clock dates the default certificate. Default: the real clock.
	Clock clock.PassiveClock
	// OnWarning, if set, receives each new Warning. It is called without
	// the proxy's locks held, from the goroutine that made the change.
	OnWarning func(Warning)
	// ErrorLog receives the errors of serving (failed TLS handshakes,
	// endpoints that fail). Default: the log package's standard logger,
	// as net/http's.
	ErrorLog *log.Logger
}

// Proxy is an Ingress proxy. Its Update and Delete methods may be called
// from any goroutine; each change is in effect when the method returns.
type Proxy struct {
	cfg         Config
	defaultCert *tls.Certificate
	transport   *http.Transport // for the requests ReverseProxy forwards
	proxy       *httputil.ReverseProxy
	pool        *connPool // for the direct path
	buffers     bufferPool

	routes atomic.Pointer[table]
	certs  atomic.Pointer[certTable]

	mu        sync.Mutex
	classes   map[string]*networkingv1.IngressClass
	ingresses map[types.NamespacedName]*networkingv1.Ingress
	services  map[types.NamespacedName]*corev1.Service
	// slices by Service, then by slice name; sliceOwner is the Service
	// each slice was filed under.
	slices     map[types.NamespacedName]map[string]*discoveryv1.EndpointSlice
	sliceOwner map[types.NamespacedName]types.NamespacedName
	secrets    map[types.NamespacedName]*tlsSecret
	// backends are those the current table uses, by key.
	backends map[backendKey]*backend
	warnings map[Warning]struct{}
}

// New makes a Proxy that serves nothing until Ingresses of its classes
// are given.
func New(cfg Config) (*Proxy, error) {
	if cfg.Controller == "" {
		cfg.Controller = DefaultController
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxTries <= 0 {
		cfg.MaxTries = DefaultMaxTries
	}
	if cfg.MaxIdleConnsPerEndpoint <= 0 {
		cfg.MaxIdleConnsPerEndpoint = DefaultMaxIdleConnsPerEndpoint
	}
	if cfg.BackendIdleTimeout <= 0 {
		cfg.BackendIdleTimeout = DefaultBackendIdleTimeout
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	p := &Proxy{
		cfg:        cfg,
		classes:    map[string]*networkingv1.IngressClass{},
		ingresses:  map[types.NamespacedName]*networkingv1.Ingress{},
		services:   map[types.NamespacedName]*corev1.Service{},
		slices:     map[types.NamespacedName]map[string]*discoveryv1.EndpointSlice{},
		sliceOwner: map[types.NamespacedName]types.NamespacedName{},
		secrets:    map[types.NamespacedName]*tlsSecret{},
		backends:   map[backendKey]*backend{},
		warnings:   map[Warning]struct{}{},
	}
	p.defaultCert = cfg.DefaultCertificate
	if p.defaultCert == nil {
		c, err := selfSigned(cfg.Clock.Now())
		if err != nil {
			return nil, err
		}
		p.defaultCert = c
	}
	p.transport = newTransport(cfg)
	p.pool = newConnPool(cfg)
	p.buffers = newBufferPool()
	p.proxy = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    &balancer{transport: p.transport, maxTries: cfg.MaxTries},
		BufferPool:   p.buffers,
		ErrorHandler: p.proxyError,
		ErrorLog:     cfg.ErrorLog,
	}
	p.routes.Store(buildTable(nil, nil, nil))
	p.certs.Store(buildCerts(nil, nil, nil))
	return p, nil
}

// Close closes the idle connections to endpoints. Serve and ServeTLS end
// with their contexts.
func (p *Proxy) Close() {
	p.transport.CloseIdleConnections()
	p.pool.closeIdle()
}

// UpdateIngressClass adds or replaces an IngressClass. Those whose
// spec.controller is Config.Controller are the proxy's classes.
func (p *Proxy) UpdateIngressClass(c *networkingv1.IngressClass) {
	p.change(func() bool {
		p.classes[c.Name] = c.DeepCopy()
		return true
	})
}

// DeleteIngressClass removes the IngressClass name.
func (p *Proxy) DeleteIngressClass(name string) {
	p.change(func() bool {
		_, ok := p.classes[name]
		delete(p.classes, name)
		return ok
	})
}

// UpdateIngress adds or replaces an Ingress. It is served when its class
// is one of the proxy's (see Served).
func (p *Proxy) UpdateIngress(ing *networkingv1.Ingress) {
	p.change(func() bool {
		p.ingresses[types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}] = ing.DeepCopy()
		return true
	})
}

// DeleteIngress removes the Ingress namespace/name.
func (p *Proxy) DeleteIngress(namespace, name string) {
	p.change(func() bool {
		nn := types.NamespacedName{Namespace: namespace, Name: name}
		_, ok := p.ingresses[nn]
		delete(p.ingresses, nn)
		return ok
	})
}

// UpdateSecret adds or replaces a Secret; those Ingresses name in their
// TLS sections give certificates (tls.crt and tls.key, as a
// kubernetes.io/tls Secret holds them). Only the key pair is kept.
func (p *Proxy) UpdateSecret(s *corev1.Secret) {
	ts := parseTLSSecret(s)
	p.change(func() bool {
		p.secrets[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = ts
		return true
	})
}

// DeleteSecret removes the Secret namespace/name.
func (p *Proxy) DeleteSecret(namespace, name string) {
	p.change(func() bool {
		nn := types.NamespacedName{Namespace: namespace, Name: name}
		_, ok := p.secrets[nn]
		delete(p.secrets, nn)
		return ok
	})
}

// UpdateService adds or replaces a Service (its ports map the Ingress
// backends' port numbers and names to the EndpointSlices' ports).
func (p *Proxy) UpdateService(svc *corev1.Service) {
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.services[nn] = svc.DeepCopy()
	p.resolveLocked(nn)
}

// DeleteService removes the Service namespace/name: its backends answer
// 503.
func (p *Proxy) DeleteService(namespace, name string) {
	nn := types.NamespacedName{Namespace: namespace, Name: name}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.services, nn)
	p.resolveLocked(nn)
}

// UpdateEndpointSlice adds or replaces an EndpointSlice of the Service its
// kubernetes.io/service-name label names (refused without it).
func (p *Proxy) UpdateEndpointSlice(sl *discoveryv1.EndpointSlice) error {
	svcName := sl.Labels[discoveryv1.LabelServiceName]
	if svcName == "" {
		return fmt.Errorf("ingressproxy: EndpointSlice %s/%s has no %s label", sl.Namespace, sl.Name, discoveryv1.LabelServiceName)
	}
	svc := types.NamespacedName{Namespace: sl.Namespace, Name: svcName}
	key := types.NamespacedName{Namespace: sl.Namespace, Name: sl.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.sliceOwner[key]; ok && old != svc {
		p.removeSliceLocked(key)
	}
	byName := p.slices[svc]
	if byName == nil {
		byName = map[string]*discoveryv1.EndpointSlice{}
		p.slices[svc] = byName
	}
	byName[sl.Name] = sl.DeepCopy()
	p.sliceOwner[key] = svc
	p.resolveLocked(svc)
	return nil
}

// DeleteEndpointSlice removes the EndpointSlice namespace/name.
func (p *Proxy) DeleteEndpointSlice(namespace, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeSliceLocked(types.NamespacedName{Namespace: namespace, Name: name})
}

func (p *Proxy) removeSliceLocked(key types.NamespacedName) {
	svc, ok := p.sliceOwner[key]
	if !ok {
		return
	}
	delete(p.sliceOwner, key)
	delete(p.slices[svc], key.Name)
	if len(p.slices[svc]) == 0 {
		delete(p.slices, svc)
	}
	p.resolveLocked(svc)
}

// resolveLocked gives the backends of Service svc their endpoints anew.
func (p *Proxy) resolveLocked(svc types.NamespacedName) {
	for k, b := range p.backends {
		if k.service == svc {
			b.endpoints.Store(newEndpointSet(resolveEndpoints(p.services[svc], p.slices[svc], k.port)))
		}
	}
	p.dropIdleLocked()
}

// dropIdleLocked closes the idle connections to endpoints no backend has
// any more.
func (p *Proxy) dropIdleLocked() {
	addrs := map[string]bool{}
	for _, b := range p.backends {
		for _, a := range b.endpoints.Load().addrs {
			addrs[a] = true
		}
	}
	p.pool.retain(func(a string) bool { return addrs[a] })
}

// Served lists the Ingresses the proxy serves (those of its classes), in
// precedence order: the node agent reports its addresses in their status.
func (p *Proxy) Served() []types.NamespacedName {
	return slices.Clone(p.routes.Load().served)
}

// change applies fn to the state under the lock and, when it reports a
// change, rebuilds the routing and certificate tables; then it reports the
// new Warnings.
func (p *Proxy) change(fn func() bool) {
	p.mu.Lock()
	if !fn() {
		p.mu.Unlock()
		return
	}
	fresh := p.rebuildLocked()
	p.mu.Unlock()
	if p.cfg.OnWarning != nil {
		for _, w := range fresh {
			p.cfg.OnWarning(w)
		}
	}
}

// rebuildLocked builds and swaps in new tables from the state, and returns
// the Warnings that were not there before.
func (p *Proxy) rebuildLocked() []Warning {
	ings := p.servedLocked()
	warnings := map[Warning]struct{}{}
	var order []Warning
	warn := func(w Warning) {
		if _, ok := warnings[w]; !ok {
			warnings[w] = struct{}{}
			order = append(order, w)
		}
	}
	used := map[backendKey]*backend{}
	resolve := func(ns string, sb *networkingv1.IngressServiceBackend) *backend {
		k := backendKey{service: types.NamespacedName{Namespace: ns, Name: sb.Name}, port: sb.Port}
		if b := used[k]; b != nil {
			return b
		}
		b := p.backends[k]
		if b == nil {
			b = &backend{key: k}
			b.endpoints.Store(newEndpointSet(resolveEndpoints(p.services[k.service], p.slices[k.service], k.port)))
		}
		used[k] = b
		return b
	}
	t := buildTable(ings, resolve, warn)
	ct := buildCerts(ings, p.secrets, warn)
	p.backends = used
	p.routes.Store(t)
	p.certs.Store(ct)
	p.dropIdleLocked()

	var fresh []Warning
	for _, w := range order {
		if _, ok := p.warnings[w]; !ok {
			fresh = append(fresh, w)
		}
	}
	p.warnings = warnings
	return fresh
}

// servedLocked lists the Ingresses of the proxy's classes in precedence
// order.
func (p *Proxy) servedLocked() []*networkingv1.Ingress {
	ours := map[string]bool{}
	defaultClass := false
	for name, c := range p.classes {
		if c.Spec.Controller != p.cfg.Controller {
			continue
		}
		ours[name] = true
		if c.Annotations[AnnotationDefaultClass] == "true" {
			defaultClass = true
		}
	}
	var ings []*networkingv1.Ingress
	for _, ing := range p.ingresses {
		if p.isOurs(ing, ours, defaultClass) {
			ings = append(ings, ing)
		}
	}
	precedence(ings)
	return ings
}

// isOurs decides whether the proxy serves ing: its ingressClassName names
// one of the proxy's classes; or, without one, its deprecated
// kubernetes.io/ingress.class annotation does; or, without either, one of
// the proxy's classes is marked default (the API server stamps the default
// class on new Ingresses; this covers those made before a default existed,
// as ingress-nginx's --watch-ingress-without-class does).
func (p *Proxy) isOurs(ing *networkingv1.Ingress, ours map[string]bool, defaultClass bool) bool {
	if ing.Spec.IngressClassName != nil {
		return ours[*ing.Spec.IngressClassName]
	}
	if c, ok := ing.Annotations[AnnotationIngressClass]; ok {
		return ours[c]
	}
	return defaultClass
}

// getCertificate is the TLS listeners' tls.Config.GetCertificate: the
// certificate for the client's SNI name, else the default one.
func (p *Proxy) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := p.certs.Load().lookup(hello.ServerName); c != nil {
		return c, nil
	}
	return p.defaultCert, nil
}

// Warnings lists the Warnings in force (each was reported once through
// OnWarning when it appeared), sorted.
func (p *Proxy) Warnings() []Warning {
	p.mu.Lock()
	ws := slices.Collect(maps.Keys(p.warnings))
	p.mu.Unlock()
	slices.SortFunc(ws, func(a, b Warning) int {
		return cmp.Or(
			strings.Compare(a.Ingress.Namespace, b.Ingress.Namespace),
			strings.Compare(a.Ingress.Name, b.Ingress.Name),
			strings.Compare(a.Reason, b.Reason),
			strings.Compare(a.Message, b.Message))
	})
	return ws
}
