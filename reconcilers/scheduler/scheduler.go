// Package scheduler is the reconciler that binds pending pods to nodes, as kube-scheduler does.
//
// It runs on the reconcilers engine as a singleton (one replica holds the whole picture at a
// time) over pods: a pod is its business while spec.nodeName is empty, its schedulerName is
// default-scheduler (or empty), and it is not being deleted. It keeps its own picture of the
// cluster from the projection's changes (every node, the pods bound to each, and the pods it has
// assumed on a node while their binding is in flight), decides with the pure placement package,
// and binds through the registry with the pod's event as cause, many bindings in flight at once.
// A pod that fits nowhere gets PodScheduled=False (reason Unschedulable) and a FailedScheduling
// event worded as Kubernetes words it, and is tried again with back-off, sooner when a node
// comes, becomes Ready or schedulable, a bound pod frees its room or changes its labels, or,
// for pods that wait for others (required pod affinity, topology spread), a pod is bound.
//
// See docs/scheduler.md.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
)

// DefaultName is the schedulerName of the pods this scheduler takes, and the component named in
// its events.
const DefaultName = "default-scheduler"

// store is what the scheduler reads of the projection.
type store interface {
	changes
	Get(key eventlog.Key) (*projections.Object, bool)
}

var _ store = (*projections.Store)(nil)

// Config configures a Scheduler.
type Config struct {
	// Store is the projection the scheduler reads; someone runs it. Required.
	Store *projections.Store
	// Writer writes bindings and pod conditions. Required.
	Writer Writer
	// Events records the Scheduled and FailedScheduling events. Required.
	Events EventRecorder
	// Name is the schedulerName the scheduler answers to, and the component of its events.
	// Default DefaultName.
	Name string
	// Workers is how many pods are scheduled and bound at once. Default 64.
	Workers int
	// InitialBackoff is the wait before a pod that fit nowhere is tried again; it doubles with
	// each failure up to MaxBackoff. Defaults 1s and 30s.
	InitialBackoff, MaxBackoff time.Duration
	// EventRepeat is how often a pod that keeps failing the same way is reported again (the
	// recorder then raises the count of its FailedScheduling event); a new message is reported
	// at once. Default 1m.
	EventRepeat time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Metrics, if set, is where the scheduler's Prometheus metrics are registered.
	Metrics prometheus.Registerer
}

// Scheduler binds pending pods to nodes. Register it on an engine (Registration) and run it
// (Run) beside the engine.
type Scheduler struct {
	cfg     Config
	store   store
	w       Writer
	cluster *cluster
	events  EventRecorder
	log     *slog.Logger

	mu      sync.Mutex
	pending map[string]*pendingPod // pods that fit nowhere, by namespace/name
	// awaitingPods counts those of them with podConstraints: while there are any, a pod
	// placed or relabelled wakes them all.
	awaitingPods int
	wakeDue      bool      // a change may let them in: wake them
	lastWake     time.Time // when they were last woken

	stats   counters
	metrics *metrics
}

// New returns a scheduler configured by cfg.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Store == nil || cfg.Writer == nil || cfg.Events == nil {
		return nil, errors.New("scheduler: config needs a Store, a Writer and Events")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.InitialBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.InitialBackoff)
	}
	if cfg.EventRepeat <= 0 {
		cfg.EventRepeat = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Scheduler{
		cfg:     cfg,
		store:   cfg.Store,
		w:       cfg.Writer,
		cluster: newCluster(cfg.Logger),
		events:  cfg.Events,
		log:     cfg.Logger,
		pending: map[string]*pendingPod{},
	}
	m, err := newMetrics(s, cfg.Metrics)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// Registration is how the engine runs the scheduler: a singleton over pods.
func (s *Scheduler) Registration() engine.Registration {
	return engine.Registration{
		Name:       "scheduler",
		Primary:    podsResource,
		Map:        s.mapChange,
		Workers:    s.cfg.Workers,
		Singleton:  true,
		Reconciler: s,
	}
}

// Run keeps the scheduler's picture of the cluster until ctx ends. The store must be running.
// Reconciles wait until Run has loaded the picture.
func (s *Scheduler) Run(ctx context.Context) error {
	cancel := s.cluster.start(s.store)
	defer cancel()
	<-ctx.Done()
	return nil
}

// Stats counts what a scheduler did since it started.
type Stats struct {
	Bound         int64 // pods bound
	Unschedulable int64 // attempts that found no node
	BindErrors    int64 // bindings that failed
}

type counters struct {
	bound, unschedulable, bindErrors atomic.Int64
}

// Stats returns the counts so far.
func (s *Scheduler) Stats() Stats {
	return Stats{Bound: s.stats.bound.Load(), Unschedulable: s.stats.unschedulable.Load(), BindErrors: s.stats.bindErrors.Load()}
}

var _ engine.Reconciler = (*Scheduler)(nil)

func errorf(format string, args ...any) error { return fmt.Errorf("scheduler: "+format, args...) }
