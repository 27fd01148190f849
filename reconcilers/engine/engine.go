// Package engine runs reconcilers. A reconciler is level-triggered: an event in the log only
// says "look at this key again"; the reconciler reads the current state from the projection,
// decides, and appends with compare-and-set, so running it twice for the same state is harmless.
//
// The engine feeds every change the projection applies to the reconcilers that asked for it,
// through a deduplicating, rate-limited work queue per reconciler (client-go's workqueue), and
// remembers for each queued key the latest event that asked for it: that is the cause recorded
// in what the reconciler writes. Replicas of a reconciler set scale out by sharing partitions of
// the keys (Partitions): each replica only handles keys in the partitions it holds, and when it
// gains partitions it reconciles every key in them once, which is how a dead replica's work is
// taken over without anything being lost.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

// Request asks a reconciler to look at one key.
type Request struct {
	Key eventlog.Key
	// Cause is the sequence of the latest event that asked for this reconcile: record it as the
	// cause of what the reconcile writes.
	Cause uint64
}

// Result says whether to look at the key again later, even if nothing changes.
type Result struct {
	RequeueAfter time.Duration
}

// Reconciler brings the world of one key closer to what its object asks for.
type Reconciler interface {
	Reconcile(ctx context.Context, req Request) (Result, error)
}

// ReconcilerFunc adapts a function to Reconciler.
type ReconcilerFunc func(ctx context.Context, req Request) (Result, error)

// Reconcile calls f.
func (f ReconcilerFunc) Reconcile(ctx context.Context, req Request) (Result, error) {
	return f(ctx, req)
}

// ErrTerminal, wrapped into a reconcile error, means that retrying cannot help: the error is
// logged and the key is not requeued (a later change still triggers it again).
var ErrTerminal = errors.New("engine: terminal error")

// Registration tells the engine what a reconciler handles.
type Registration struct {
	// Name of the reconciler, for logs and metrics.
	Name string
	// Primary is the resource whose keys the reconciler reconciles.
	Primary schema.GroupResource
	// Map turns any applied change into the primary keys it concerns (owners of a changed pod,
	// say). Nil: a change of a Primary object maps to its own key, and nothing else maps.
	Map func(projections.Change) []eventlog.Key
	// Workers reconciling concurrently. Default 4.
	Workers int
	// Singleton reconcilers run only in the replica holding partition 0: for decisions that need
	// the whole picture at once, like scheduling.
	Singleton  bool
	Reconciler Reconciler
}

// PrimaryMap is the default Map: changes of objects of resource gr map to their own key.
func PrimaryMap(gr schema.GroupResource) func(projections.Change) []eventlog.Key {
	return func(c projections.Change) []eventlog.Key {
		o := c.New
		if o == nil {
			o = c.Old
		}
		if o == nil || o.Key.Group != gr.Group || o.Key.Resource != gr.Resource {
			return nil
		}
		return []eventlog.Key{o.Key}
	}
}

type registered struct {
	Registration
	queue workqueue.TypedRateLimitingInterface[eventlog.Key]

	mu     sync.Mutex
	causes map[eventlog.Key]uint64
}

func (r *registered) add(key eventlog.Key, cause uint64) {
	r.mu.Lock()
	if cause > r.causes[key] {
		r.causes[key] = cause
	}
	r.mu.Unlock()
	r.queue.Add(key)
}

func (r *registered) takeCause(key eventlog.Key) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.causes[key]
	delete(r.causes, key)
	return c
}

// Engine runs registered reconcilers on the changes of one projection store.
type Engine struct {
	store *projections.Store
	parts *Partitions // nil: this replica handles every key
	log   *slog.Logger
	regs  []*registered
	stats *Stats
	// partitions is how many partitions the keys are spread over.
	partitions int
	metrics    *metrics // nil: none
}

// Options configure an Engine.
type Options struct {
	// Leases to share partitions with other replicas. Nil: this replica handles every key alone.
	Leases leases
	// Holder names this replica among the others (host and pid, say). Required with Leases.
	Holder string
	// Partitions the keys are spread over. Default 64.
	Partitions int
	Logger     *slog.Logger
}

// New returns an engine reading store.
func New(store *projections.Store, opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Partitions == 0 {
		opts.Partitions = 64
	}
	e := &Engine{store: store, log: opts.Logger, stats: newStats(), partitions: opts.Partitions}
	if opts.Leases != nil {
		e.parts = NewPartitions(opts.Leases, opts.Holder, opts.Partitions, opts.Logger, e.partitionsChanged)
	}
	return e
}

// RegisterMetrics registers the engine's Prometheus metrics with reg (see newMetrics). Call it
// after Register and before Run.
func (e *Engine) RegisterMetrics(reg prometheus.Registerer) error {
	m, err := newMetrics(e, reg)
	if err != nil {
		return err
	}
	e.metrics = m
	return nil
}

// Register adds a reconciler. Call it before Run.
func (e *Engine) Register(r Registration) {
	if r.Workers <= 0 {
		r.Workers = 4
	}
	if r.Map == nil {
		r.Map = PrimaryMap(r.Primary)
	}
	e.regs = append(e.regs, &registered{
		Registration: r,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[eventlog.Key](),
			workqueue.TypedRateLimitingQueueConfig[eventlog.Key]{Name: r.Name}),
		causes: map[eventlog.Key]uint64{},
	})
}

// Stats counts the reconciles of this replica.
func (e *Engine) Stats() *Stats { return e.stats }

// Partitions returns the partition ownership, nil if this replica handles every key.
func (e *Engine) Partitions() *Partitions { return e.parts }

func (e *Engine) owns(r *registered, key eventlog.Key) bool {
	if e.parts == nil {
		return true
	}
	if r.Singleton {
		return e.parts.OwnsPartition(0)
	}
	return e.parts.Owns(key.String())
}

// Run dispatches changes and runs the workers until ctx ends. The store must be running.
func (e *Engine) Run(ctx context.Context) error {
	cancel := e.store.Subscribe(func(c projections.Change) {
		for _, r := range e.regs {
			for _, k := range r.Map(c) {
				if e.owns(r, k) {
					r.add(k, c.Seq)
				}
			}
		}
	})
	defer cancel()

	var wg sync.WaitGroup
	if e.parts != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.parts.Run(ctx); err != nil {
				e.log.Error("engine: partitions stopped", "err", err)
			}
		}()
	} else {
		e.resync(nil)
	}
	for _, r := range e.regs {
		for i := 0; i < r.Workers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for e.work(ctx, r) {
				}
			}()
		}
	}
	<-ctx.Done()
	for _, r := range e.regs {
		r.queue.ShutDown()
	}
	wg.Wait()
	return nil
}

// partitionsChanged reconciles every key of the partitions just gained.
func (e *Engine) partitionsChanged(gained, lost []int) {
	e.log.Info("engine: partitions changed", "gained", gained, "lost", lost, "now", e.parts.String())
	if len(gained) > 0 {
		set := map[int]bool{}
		for _, n := range gained {
			set[n] = true
		}
		e.resync(set)
	}
}

// resync queues every primary key of every reconciler that falls in the given partitions (nil:
// every key this replica owns).
func (e *Engine) resync(partitions map[int]bool) {
	applied := e.store.Applied()
	for _, r := range e.regs {
		objs, _ := e.store.List(projections.Query{Resource: r.Primary})
		for _, o := range objs {
			if partitions != nil {
				n := e.parts.Of(o.Key.String())
				if r.Singleton {
					n = 0
				}
				if !partitions[n] {
					continue
				}
			}
			if e.owns(r, o.Key) {
				r.add(o.Key, applied)
			}
		}
	}
}

// work reconciles one key; it returns false when the queue is shut down.
func (e *Engine) work(ctx context.Context, r *registered) bool {
	key, shutdown := r.queue.Get()
	if shutdown {
		return false
	}
	defer r.queue.Done(key)
	cause := r.takeCause(key)
	if !e.owns(r, key) {
		r.queue.Forget(key)
		return true
	}
	start := time.Now()
	res, err := e.reconcile(ctx, r, Request{Key: key, Cause: cause})
	took := time.Since(start)
	e.stats.observe(r.Name, took, err)
	e.metrics.observe(r.Name, res, err, took.Seconds())
	switch {
	case err != nil && errors.Is(err, ErrTerminal):
		e.log.Error("engine: reconcile failed for good", "reconciler", r.Name, "key", key, "err", err)
		r.queue.Forget(key)
	case err != nil:
		if ctx.Err() == nil {
			e.log.Warn("engine: reconcile failed, retrying", "reconciler", r.Name, "key", key, "err", err)
		}
		r.mu.Lock()
		if cause > r.causes[key] {
			r.causes[key] = cause
		}
		r.mu.Unlock()
		r.queue.AddRateLimited(key)
	default:
		r.queue.Forget(key)
		if res.RequeueAfter > 0 {
			r.mu.Lock()
			if cause > r.causes[key] {
				r.causes[key] = cause
			}
			r.mu.Unlock()
			r.queue.AddAfter(key, res.RequeueAfter)
		}
	}
	return true
}

func (e *Engine) reconcile(ctx context.Context, r *registered, req Request) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s panicked on %s: %v", ErrTerminal, r.Name, req.Key, p)
		}
	}()
	return r.Reconciler.Reconcile(ctx, req)
}
