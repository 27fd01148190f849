package apiserver

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, named as kube-apiserver names them.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	watchers prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_request_total",
			Help: "Requests served, by verb, group, resource, subresource and HTTP code.",
		}, []string{"verb", "group", "resource", "subresource", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiserver_request_duration_seconds",
			Help:    "Time to serve a request (watches excluded), by verb, group, resource and subresource.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"verb", "group", "resource", "subresource"}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apiserver_registered_watchers",
			Help: "Watches being served.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.watchers} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// The process and Go collectors may already be there when the registry is shared.
	_ = reg.Register(collectors.NewGoCollector())                                       // already registered: fine
	_ = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})) // already registered: fine
	return m, nil
}

func (m *metrics) observe(info requestInfo, code int, d time.Duration) {
	verb := info.verb
	resource := info.resource
	if info.kind == nil {
		resource = ""
		if info.prefix == "" {
			verb = "nonresource_" + verb
		}
	}
	m.requests.WithLabelValues(verb, info.group, resource, info.subresource, strconv.Itoa(code)).Inc()
	if verb != "watch" {
		m.latency.WithLabelValues(verb, info.group, resource, info.subresource).Observe(d.Seconds())
	}
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.promReg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}
