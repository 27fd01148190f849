package engine

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are an engine's Prometheus metrics, named as controller-runtime and client-go's work
// queues name theirs, so that the dashboards written for Kubernetes controllers read them.
type metrics struct {
	reconciles *prometheus.CounterVec   // by controller and result
	took       *prometheus.HistogramVec // by controller
}

// Results of a reconcile, the result label of controller_runtime_reconcile_total.
const (
	resultSuccess      = "success"
	resultError        = "error"
	resultRequeueAfter = "requeue_after"
)

// newMetrics registers e's metrics with reg: reconciles and their duration per reconciler, the
// depth of each reconciler's queue and the partitions this replica holds. Several engines can
// share a registry if each wraps it with a label of its own (prometheus.WrapRegistererWith).
func newMetrics(e *Engine, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controller_runtime_reconcile_total",
			Help: "Reconciles per reconciler (controller) and result: success, error, requeue_after.",
		}, []string{"controller", "result"}),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "controller_runtime_reconcile_time_seconds",
			Help:    "Time of a reconcile, per reconciler (controller).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"controller"}),
	}
	depth := prometheus.NewDesc("workqueue_depth", "Keys waiting in a reconciler's work queue.", []string{"name"}, nil)
	owned := prometheus.NewDesc("logplane_reconciler_partitions_owned",
		"Partitions of the keys this replica holds (all of them when it works alone).", nil, nil)
	gauges := collectorFunc{descs: []*prometheus.Desc{depth, owned}, collect: func(ch chan<- prometheus.Metric) {
		for _, r := range e.regs {
			ch <- prometheus.MustNewConstMetric(depth, prometheus.GaugeValue, float64(r.queue.Len()), r.Name)
		}
		n := float64(e.partitions)
		if e.parts != nil {
			n = float64(len(e.parts.Owned()))
		}
		ch <- prometheus.MustNewConstMetric(owned, prometheus.GaugeValue, n)
	}}
	for _, c := range []prometheus.Collector{m.reconciles, m.took, gauges} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("engine: registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(name string, res Result, err error, seconds float64) {
	if m == nil {
		return
	}
	result := resultSuccess
	switch {
	case err != nil:
		result = resultError
	case res.RequeueAfter > 0:
		result = resultRequeueAfter
	}
	m.reconciles.WithLabelValues(name, result).Inc()
	m.took.WithLabelValues(name).Observe(seconds)
}

// collectorFunc is a collector of metrics computed when scraped.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
