package scheduler

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the scheduler's Prometheus metrics, named as kube-scheduler names them.
type metrics struct {
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Results of a scheduling attempt, the result label of the metrics.
const (
	resultScheduled     = "scheduled"
	resultUnschedulable = "unschedulable"
	resultError         = "error"
)

func newMetrics(s *Scheduler, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scheduler_schedule_attempts_total",
			Help: "Attempts to schedule pods, by result (scheduled, unschedulable, error) and profile.",
		}, []string{"result", "profile"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "scheduler_scheduling_attempt_duration_seconds",
			Help:    "Time of a scheduling attempt: deciding and binding (or recording why not), by result and profile.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"result", "profile"}),
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "scheduler_pending_pods",
		Help:        "Pods that fit no node when last tried, waiting to be tried again.",
		ConstLabels: prometheus.Labels{"queue": "unschedulable"},
	}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.pending))
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.attempts, m.duration, pending} {
			if err := reg.Register(c); err != nil {
				return nil, errorf("registering metrics: %w", err)
			}
		}
	}
	return m, nil
}
