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

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// DefaultName is the schedulerName of the pods this scheduler takes, and the component named in
// its events.
const DefaultName = "default-scheduler"

// store is what the scheduler reads of the projection.
type store interface {
	Get(key eventlog.Key) (*projections.Object, bool)
}

var _ store = (*projections.Store)(nil)

// Name of the reconciler, as the actor of its writes.
const Name = "scheduler"

// Config configures a Scheduler.
type Config struct {
	// Writer writes bindings and pod conditions. Default: through the engine's registry
	// (RegistryWriter).
	Writer Writer
	// Events records the Scheduled and FailedScheduling events. Default: a recorder of the
	// engine's, whose source is the scheduler's Name.
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
}

// Scheduler binds pending pods to nodes, as a singleton reconciler of pods on an engine, which
// keeps its picture of the cluster (an engine.Cache).
type Scheduler struct {
	cfg     Config
	store   store
	w       Writer
	cluster *cluster
	events  EventRecorder
	now     func() time.Time
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

	// volStore and volWriter serve VolumeBinding (volumes.go); volWriter is nil without a
	// registry.
	volStore  volumeStore
	volWriter volumeWriter
}

// Setup is the scheduler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup {
	return func(_ context.Context, e *engine.Engine) error {
		_, err := New(e, cfg)
		return err
	}
}

// New registers a scheduler configured by cfg on e: a singleton over pods (a pending pod of
// its own queues itself), which watches every change for those that may let in pods that fit
// nowhere. Its metrics go to the engine's.
func New(e *engine.Engine, cfg Config) (*Scheduler, error) {
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
	if cfg.Writer == nil {
		if e.Registry() == nil {
			return nil, errors.New("scheduler: no Writer, and the engine has no registry")
		}
		w, err := NewRegistryWriter(e.Registry(), Name)
		if err != nil {
			return nil, err
		}
		cfg.Writer = w
	}
	if cfg.Events == nil {
		events, err := e.Recorder(recorder.Config{
			Actor:   registry.Reconciler(Name),
			Source:  corev1.EventSource{Component: cfg.Name},
			Queue:   1 << 15, // a Scheduled event for each of a burst of bindings
			Workers: 8,
		})
		if err != nil {
			return nil, fmt.Errorf("scheduler: events: %w", err)
		}
		cfg.Events = events
	}
	s := &Scheduler{
		cfg:     cfg,
		store:   e.Store(),
		w:       cfg.Writer,
		cluster: newCluster(e.Logger()),
		events:  cfg.Events,
		now:     e.Clock().Now,
		log:     e.Logger(),
		pending: map[string]*pendingPod{},
	}
	if st := e.Store(); st != nil {
		s.volStore = st
	}
	if e.Registry() != nil {
		s.volWriter = e.Registry()
	}
	m, err := newMetrics(s, e.Metrics())
	if err != nil {
		return nil, err
	}
	s.metrics = m
	e.AddCache(s.cluster)
	e.Register(engine.Registration{
		Name:       Name,
		For:        podsResource,
		ForFilter:  s.podQueued,
		Watches:    []engine.Watch{engine.WatchesAll(s.wakes)},
		Workers:    cfg.Workers,
		Singleton:  true,
		Reconciler: s,
	})
	return s, nil
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
