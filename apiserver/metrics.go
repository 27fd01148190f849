package apiserver

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/types"
)

// metrics are the server's Prometheus metrics, named and labelled as kube-apiserver's
// (k8s.io/apiserver/pkg/endpoints/metrics), so that the community dashboards and recording
// rules read them unchanged.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	watchers prometheus.Gauge
	// deniedDropped counts the denials kept in memory only, beyond the rate of the log's record.
	deniedDropped prometheus.Counter
}

// requestDurationBuckets are kube-apiserver's buckets of apiserver_request_duration_seconds,
// chosen for its latency SLOs.
var requestDurationBuckets = []float64{0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3,
	4, 5, 6, 8, 10, 15, 20, 30, 45, 60}

// componentAPIServer is the component label of the API server's requests.
const componentAPIServer = "apiserver"

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_request_total",
			Help: "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
		}, []string{"verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiserver_request_duration_seconds",
			Help:    "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
			Buckets: requestDurationBuckets,
		}, []string{"verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apiserver_registered_watchers",
			Help: "Watches being served.",
		}),
		deniedDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logplane_apiserver_denials_not_logged_total",
			Help: "Denied requests beyond the rate that the log's denial record takes: kept in this server's memory only.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.watchers, m.deniedDropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// The process and Go collectors may already be there when the registry is shared.
	_ = reg.Register(collectors.NewGoCollector())                                       // already registered: fine
	_ = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})) // already registered: fine
	return m, nil
}

// connectSubresources are reported with the verb CONNECT (validConnectRequests).
var connectSubresources = map[string]bool{"log": true, "exec": true, "portforward": true, "attach": true, "proxy": true}

// nonResourceRoots are the non-resource paths whose requests are counted, by their first segment
// (Kubernetes instruments its health checks and discovery; a fixed set keeps the series few).
// The other non-resource paths are not counted.
var nonResourceRoots = map[string]bool{"healthz": true, "readyz": true, "livez": true, "version": true,
	"api": true, "apis": true, "openapi": true}

// requestLabels are the labels of one request, as kube-apiserver's MonitorRequest reports them.
type requestLabels struct {
	verb, dryRun, group, version, resource, subresource, scope, component string
}

// labelsOf computes the labels of a request: the verb in upper case as Kubernetes reports it
// (GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE, CONNECT: CanonicalVerb then cleanVerb;
// a deletecollection is a DELETE of a collection, as there), the scope of the route (resource,
// namespace, cluster) and the dry-run value. It reports false for the requests that
// kube-apiserver does not count: those that no instrumented handler serves (unknown resources,
// /metrics, logplane's own endpoints, requests refused by authentication).
func labelsOf(r *http.Request, info requestInfo, code int) (requestLabels, bool) {
	if code == http.StatusUnauthorized {
		return requestLabels{}, false
	}
	l := requestLabels{dryRun: cleanDryRun(r.URL)}
	if info.kind == nil {
		// Health checks and discovery, by their path, with the request method (healthz.go and
		// the aggregated discovery handler instrument them so).
		root, _, _ := strings.Cut(strings.Trim(r.URL.Path, "/"), "/")
		if !nonResourceRoots[root] || (info.prefix != "" && len(info.segs) > 0) {
			return l, false
		}
		l.subresource = "/" + root
		l.verb = canonicalVerb(strings.ToUpper(r.Method), "")
		if !info.health {
			l.component = componentAPIServer
		}
		return l, true
	}
	l.group, l.version, l.resource, l.subresource, l.component = info.group, info.version, info.resource, info.subresource, componentAPIServer
	switch {
	case info.name != "" || r.Method == http.MethodPost:
		l.scope = "resource"
	case info.namespace != "":
		l.scope = "namespace"
	default:
		l.scope = "cluster"
	}
	switch {
	case info.verb == "watch":
		l.verb = "WATCH"
	case connectSubresources[info.subresource]:
		l.verb = "CONNECT"
	case r.Method == http.MethodPatch && r.Header.Get("Content-Type") == string(types.ApplyPatchType):
		l.verb = "APPLY"
	default:
		l.verb = canonicalVerb(strings.ToUpper(r.Method), l.scope)
	}
	return l, true
}

// validVerbs are the verbs reported; any other method is "other" (validRequestMethods).
var validVerbs = []string{"APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET", "LIST", "PATCH", "POST", "PROXY",
	"PUT", "UPDATE", "WATCH", "WATCHLIST"}

// canonicalVerb tells a LIST from a GET (and HEAD), as Kubernetes' CanonicalVerb does.
func canonicalVerb(verb, scope string) string {
	if verb == http.MethodGet || verb == http.MethodHead {
		if scope != "resource" && scope != "" {
			return "LIST"
		}
		return "GET"
	}
	if !slices.Contains(validVerbs, verb) {
		return "other"
	}
	return verb
}

// cleanDryRun is the dry_run label: "" for none, the sorted distinct values, or "invalid".
func cleanDryRun(u *url.URL) string {
	if !strings.Contains(u.RawQuery, "dryRun") {
		return "" // no allocation on the common path
	}
	values := u.Query()["dryRun"]
	for _, v := range values {
		if v != "All" {
			return "invalid"
		}
	}
	if len(values) == 0 {
		return ""
	}
	return "All"
}

func (m *metrics) observe(r *http.Request, info requestInfo, code int, d time.Duration) {
	l, ok := labelsOf(r, info, code)
	if !ok {
		return
	}
	m.requests.WithLabelValues(l.verb, l.dryRun, l.group, l.version, l.resource, l.subresource, l.scope, l.component, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(l.verb, l.dryRun, l.group, l.version, l.resource, l.subresource, l.scope, l.component).Observe(d.Seconds())
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.promReg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}
