// Package engine runs reconcilers. A reconciler is level-triggered: an event in the log only
// says "look at this key again"; the reconciler reads the current state from the projection,
// decides, and appends with compare-and-set, so running it twice for the same state is harmless.
//
// A reconciler declares what it reconciles and what it watches (Registration: For, Owns,
// Watches, Reads), as a controller-runtime builder does, and the engine derives the rest: which
// resources the informer index keeps decoded, which changes reach which reconciler, and the
// requeue of an owner when an object it controls changes. The engine keeps the read models the
// reconcilers share (the informer index, and caches a reconciler adds) and updates them with a
// change before any reconciler maps it, so a mapping and the reconcile it queues see the index
// as of that change at least.
//
// Keys go through a deduplicating, rate-limited work queue per reconciler (client-go's
// workqueue), and the engine remembers for each queued key the latest event that asked for it:
// that is the cause recorded in what the reconciler writes. Replicas of a reconciler set scale
// out by sharing partitions of the keys (Partitions): each replica only handles keys in the
// partitions it holds, and when it gains partitions it reconciles every key in them once, which
// is how a dead replica's work is taken over without anything being lost. Requeues, back-offs
// and lease renewals follow the engine's clock, which tests can step; WaitReconciled waits until
// every change up to a sequence has been mapped and its keys reconciled.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
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

// Event is a change of the projection as a reconciler's mapping sees it. The engine's informer
// index already reflects it.
type Event struct {
	projections.Change
	// OldMeta and NewMeta are what the informer index held of the object before and after the
	// change: nil where the object did not exist or was deleted, and both nil when the engine
	// keeps no index (no reconciler asked for it) or the index had already seen the revision.
	OldMeta, NewMeta *informer.Meta
}

// Object returns the object's revision after the change, or before it if it was deleted.
func (ev Event) Object() *projections.Object {
	if ev.New != nil {
		return ev.New
	}
	return ev.Old
}

// Resource returns the resource of the changed object.
func (ev Event) Resource() schema.GroupResource {
	o := ev.Object()
	if o == nil {
		return schema.GroupResource{}
	}
	return schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
}

// Watch maps the changes of one resource (or of every resource) to keys of the reconciler's For
// resource: controller-runtime's Watches with EnqueueRequestsFromMapFunc.
type Watch struct {
	// Resource whose changes are mapped.
	Resource schema.GroupResource
	// All maps the changes of every resource instead.
	All bool
	// Map returns the keys to reconcile; it may note what the change tells the reconciler (it
	// runs before any of those keys is queued). It runs in the projection's apply path: it must
	// be quick and must not block.
	Map func(Event) []eventlog.Key
}

// Watches maps the changes of resource gr with fn.
func Watches(gr schema.GroupResource, fn func(Event) []eventlog.Key) Watch {
	return Watch{Resource: gr, Map: fn}
}

// WatchesAll maps the changes of every resource with fn.
func WatchesAll(fn func(Event) []eventlog.Key) Watch { return Watch{All: true, Map: fn} }

// Registration declares a reconciler to the engine: what it reconciles, watches, owns and reads.
type Registration struct {
	// Name of the reconciler, for logs and metrics.
	Name string
	// For is the resource whose keys the reconciler reconciles. A change of one of its objects
	// queues that object's key (if ForFilter allows), and a replica that gains partitions queues
	// every key of For in them.
	For schema.GroupResource
	// ForFilter, if set, says which changes of For objects queue their own key.
	ForFilter func(Event) bool
	// Owns are the resources whose objects For objects control: a change of one queues the key
	// of its controller (the owner reference with controller set, of For's kind), before and
	// after the change.
	Owns []schema.GroupResource
	// Watches map other changes to keys.
	Watches []Watch
	// Reads are resources the reconciler reads decoded from the informer index (Index().Object,
	// Objects), besides For and Owns, which the index keeps decoded anyway.
	Reads []schema.GroupResource
	// Workers reconciling concurrently. Default 4.
	Workers int
	// Singleton reconcilers run only in the replica holding partition 0: for decisions that need
	// the whole picture at once, like scheduling.
	Singleton  bool
	Reconciler Reconciler
}

// Cache is a read model of a reconciler's own, kept by the engine from the projection (the
// scheduler's picture of the cluster, say): loaded when the engine starts, after the engine has
// subscribed to the store, and given every change before any reconciler maps it. Changes given
// before or during Load may be older than what Load lists.
type Cache interface {
	Load(s *projections.Store)
	Observe(c projections.Change)
}

// Setup builds the reconcilers of one package on an engine: it registers them and adds what
// they need beside them (caches, loops, Event recorders). It is the one shape of every
// reconciler package's constructor (see the package sets, which lists them).
type Setup func(ctx context.Context, e *Engine) error

// keyState is what the engine remembers of a queued key.
type keyState struct {
	cause uint64    // the latest event that asked for it: the cause of the reconcile
	since uint64    // the earliest event that asked for it and is not handled yet; 0: none
	due   time.Time // when a reconcile asked to look at it again; zero: it did not
}

// pending says whether the key still has to be reconciled for the changes up to seq, or for a
// requeue that is due at now.
func (st keyState) pending(seq uint64, now time.Time) bool {
	return (st.since != 0 && st.since <= seq) || (!st.due.IsZero() && !st.due.After(now))
}

type registered struct {
	Registration
	forKind *kinds.Kind // nil if the catalog does not know For
	queue   workqueue.TypedRateLimitingInterface[eventlog.Key]

	mu   sync.Mutex
	keys map[eventlog.Key]keyState // queued, or waiting for a requeue
	busy map[eventlog.Key]keyState // being reconciled: what the reconcile handles
}

func (r *registered) add(key eventlog.Key, seq uint64) {
	r.mu.Lock()
	st := r.keys[key]
	st.cause = max(st.cause, seq)
	if st.since == 0 {
		st.since = seq
	}
	r.keys[key] = st
	r.mu.Unlock()
	r.queue.Add(key)
}

// take returns what a reconcile of key starting at now handles, and marks it busy. A requeue
// not due yet stays: the work queue brings the key back then.
func (r *registered) take(key eventlog.Key, now time.Time) keyState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.keys[key]
	delete(r.keys, key)
	if st.due.After(now) {
		r.keys[key] = keyState{due: st.due}
		st.due = time.Time{}
	}
	r.busy[key] = st
	return st
}

// done ends the reconcile of key that handled st. A failed reconcile to retry (retry) keeps what
// it was to handle; one that asked to be requeued at due keeps its cause for then.
func (r *registered) done(key eventlog.Key, st keyState, retry bool, due time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.busy, key)
	if !retry && due.IsZero() {
		return
	}
	cur := r.keys[key]
	cur.cause = max(cur.cause, st.cause)
	if retry && st.since != 0 && (cur.since == 0 || st.since < cur.since) {
		cur.since = st.since
	}
	if !due.IsZero() && (cur.due.IsZero() || due.Before(cur.due)) {
		cur.due = due
	}
	r.keys[key] = cur
}

// pendingAt returns a key still to reconcile for the changes up to seq, or for a requeue due at
// now.
func (r *registered) pendingAt(seq uint64, now time.Time) (eventlog.Key, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, st := range r.busy {
		if st.pending(seq, now) {
			return k, true
		}
	}
	for k, st := range r.keys {
		if st.pending(seq, now) {
			return k, true
		}
	}
	return eventlog.Key{}, false
}

// Engine runs registered reconcilers on the changes of one projection store. It is what a
// reconciler package's Setup builds on: the store, the registry, the informer index, the clock,
// Event recorders and loops to run beside.
type Engine struct {
	store *projections.Store
	opts  Options
	parts *Partitions // nil: this replica handles every key
	log   *slog.Logger
	clock clock.WithTicker
	regs  []*registered
	stats *Stats
	// partitions is how many partitions the keys are spread over.
	partitions int
	metrics    *metrics // nil: none

	index  *informer.Index // nil until a reconciler asks for it
	caches []Cache
	loops  []func(context.Context) error

	started chan struct{} // closed once Run has subscribed and loaded the caches

	// Progress of the reconciles, for WaitReconciled.
	progressMu sync.Mutex
	progress   chan struct{} // closed and replaced when a reconcile ends and someone waits
	waiting    atomic.Bool
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
	// Clock times requeues, back-offs and partition lease renewals, and is the clock reconcilers
	// read (Clock). Default: the real clock. The leases themselves expire in the log's time.
	Clock clock.WithTicker
	// Registry is what reconcilers write through (Registry, Recorder). Optional for reconcilers
	// that write nothing.
	Registry *registry.Registry
	// Host names this process in the Events reconcilers record (source.host). Optional.
	Host string
	// Metrics, if set, receives the engine's metrics (see newMetrics) and those of the
	// reconcilers (Metrics).
	Metrics prometheus.Registerer
	// Wrap, if set, wraps every registered reconciler (to count or trace reconciles).
	Wrap func(name string, r Reconciler) Reconciler
}

// New returns an engine reading store.
func New(store *projections.Store, opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Partitions == 0 {
		opts.Partitions = 64
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	e := &Engine{store: store, opts: opts, log: opts.Logger, clock: opts.Clock, stats: newStats(), partitions: opts.Partitions,
		started: make(chan struct{}), progress: make(chan struct{})}
	if opts.Leases != nil {
		e.parts = NewPartitions(opts.Leases, opts.Holder, opts.Partitions, opts.Logger, e.partitionsChanged)
		e.parts.clock = opts.Clock
	}
	return e
}

// Store is the projection the engine follows.
func (e *Engine) Store() *projections.Store { return e.store }

// Registry is what reconcilers write through; nil if the engine was given none.
func (e *Engine) Registry() *registry.Registry { return e.opts.Registry }

// Clock is the clock reconcilers read and the engine times requeues with.
func (e *Engine) Clock() clock.WithTicker { return e.clock }

// Logger is the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }

// Host names this process in the Events reconcilers record.
func (e *Engine) Host() string { return e.opts.Host }

// Metrics is where reconcilers register their metrics; nil if none are collected.
func (e *Engine) Metrics() prometheus.Registerer { return e.opts.Metrics }

// Index returns the informer index the engine keeps beside the projection, made on first use.
// It keeps decoded the For, Owns and Reads resources of every registration. Call it before Run.
func (e *Engine) Index() *informer.Index {
	if e.index == nil {
		e.index = informer.New(e.log)
	}
	return e.index
}

// AddCache has the engine keep c. Call it before Run.
func (e *Engine) AddCache(c Cache) { e.caches = append(e.caches, c) }

// Add runs loop beside the reconcilers, from Run until its context ends. A loop that returns an
// error before then stops the engine. Call it before Run.
func (e *Engine) Add(loop func(ctx context.Context) error) { e.loops = append(e.loops, loop) }

// Recorder returns a recorder of Kubernetes Events through the engine's registry, on the
// engine's clock and logger, and runs it beside the reconcilers. cfg says who records (Actor,
// Source) and how; its Registry, Logger and Clock are the engine's unless set.
func (e *Engine) Recorder(cfg recorder.Config) (*recorder.Recorder, error) {
	if cfg.Registry == nil {
		cfg.Registry = e.opts.Registry
	}
	if cfg.Logger == nil {
		cfg.Logger = e.log
	}
	if cfg.Clock == nil {
		cfg.Clock = e.clock
	}
	r, err := recorder.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.Add(r.Run)
	return r, nil
}

// Register adds a reconciler. Call it before Run.
func (e *Engine) Register(r Registration) {
	if r.Workers <= 0 {
		r.Workers = 4
	}
	if e.opts.Wrap != nil {
		r.Reconciler = e.opts.Wrap(r.Name, r.Reconciler)
	}
	reg := &registered{
		Registration: r,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[eventlog.Key](),
			workqueue.TypedRateLimitingQueueConfig[eventlog.Key]{Name: r.Name, Clock: e.clock}),
		keys: map[eventlog.Key]keyState{},
		busy: map[eventlog.Key]keyState{},
	}
	reg.forKind, _ = e.store.Catalog().ByGroupResource(r.For)
	if len(r.Owns) > 0 {
		e.Index() // owners are found through it
	}
	e.regs = append(e.regs, reg)
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

// Run loads the index and caches, dispatches changes and runs the workers and loops until ctx
// ends. The store must be running.
func (e *Engine) Run(ctx context.Context) error {
	if e.opts.Metrics != nil {
		m, err := newMetrics(e, e.opts.Metrics)
		if err != nil {
			return err
		}
		e.metrics = m
	}
	if e.index != nil {
		for _, r := range e.regs {
			e.index.Keep(r.For)
			e.index.Keep(r.Owns...)
			e.index.Keep(r.Reads...)
		}
	}
	cancel := e.store.Subscribe(e.dispatch)
	defer cancel()
	if e.index != nil {
		e.index.Load(e.store)
	}
	for _, c := range e.caches {
		c.Load(e.store)
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, loop := range e.loops {
		g.Go(func() error { return loop(gctx) })
	}
	var wg sync.WaitGroup
	if e.parts != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.parts.Run(gctx); err != nil {
				e.log.Error("engine: partitions stopped", "err", err)
			}
		}()
	} else {
		e.resync(nil)
	}
	close(e.started)
	for _, r := range e.regs {
		for i := 0; i < r.Workers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for e.work(gctx, r) {
				}
			}()
		}
	}
	<-gctx.Done()
	for _, r := range e.regs {
		r.queue.ShutDown()
	}
	wg.Wait()
	return g.Wait()
}

// dispatch brings the index and caches up to date with a change, then maps it for every
// reconciler that watches its resource and queues the keys this replica owns.
func (e *Engine) dispatch(c projections.Change) {
	ev := Event{Change: c}
	if e.index != nil {
		ev.OldMeta, ev.NewMeta = e.index.Observe(c)
	}
	for _, cache := range e.caches {
		cache.Observe(c)
	}
	o := ev.Object()
	if o == nil {
		return
	}
	gr := schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
	for _, r := range e.regs {
		for _, k := range e.keysFor(r, ev, gr) {
			if e.owns(r, k) {
				r.add(k, c.Seq)
			}
		}
	}
}

// keysFor maps ev (of resource gr) to the keys r reconciles: its own key for a For object, the
// controller's for an owned one, and what the watches say.
func (e *Engine) keysFor(r *registered, ev Event, gr schema.GroupResource) []eventlog.Key {
	var keys []eventlog.Key
	if gr == r.For && (r.ForFilter == nil || r.ForFilter(ev)) {
		keys = append(keys, ev.Object().Key)
	}
	for _, owned := range r.Owns {
		if owned == gr {
			keys = r.appendControllers(keys, ev)
			break
		}
	}
	for _, w := range r.Watches {
		if w.All || w.Resource == gr {
			keys = append(keys, w.Map(ev)...)
		}
	}
	return keys
}

// appendControllers appends the keys of the For objects controlling ev's object before and
// after the change.
func (r *registered) appendControllers(keys []eventlog.Key, ev Event) []eventlog.Key {
	if r.forKind == nil {
		return keys
	}
	ns := ev.Object().Key.Namespace
	if !r.forKind.Namespaced {
		ns = ""
	}
	var first *eventlog.Key
	for _, m := range []*informer.Meta{ev.NewMeta, ev.OldMeta} {
		if m == nil {
			continue
		}
		ref := m.Controller()
		if ref == nil || ref.Kind != r.forKind.Kind {
			continue
		}
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != r.For.Group {
			continue
		}
		k := eventlog.Key{Group: r.For.Group, Resource: r.For.Resource, Namespace: ns, Name: ref.Name}
		if first != nil && *first == k {
			continue
		}
		keys = append(keys, k)
		first = &keys[len(keys)-1]
	}
	return keys
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

// resync queues every For key of every reconciler that falls in the given partitions (nil:
// every key this replica owns).
func (e *Engine) resync(partitions map[int]bool) {
	applied := e.store.Applied()
	for _, r := range e.regs {
		objs, _ := e.store.List(projections.Query{Resource: r.For})
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
	start := e.clock.Now()
	st := r.take(key, start)
	defer e.progressed()
	if !e.owns(r, key) {
		r.done(key, st, false, time.Time{})
		r.queue.Forget(key)
		return true
	}
	res, err := e.reconcile(ctx, r, Request{Key: key, Cause: st.cause})
	took := e.clock.Since(start)
	e.stats.observe(r.Name, took, err)
	e.metrics.observe(r.Name, res, err, took.Seconds())
	switch {
	case err != nil && errors.Is(err, ErrTerminal):
		e.log.Error("engine: reconcile failed for good", "reconciler", r.Name, "key", key, "err", err)
		r.done(key, st, false, time.Time{})
		r.queue.Forget(key)
	case err != nil:
		if ctx.Err() == nil {
			e.log.Warn("engine: reconcile failed, retrying", "reconciler", r.Name, "key", key, "err", err)
		}
		r.done(key, st, true, time.Time{})
		r.queue.AddRateLimited(key)
	default:
		r.queue.Forget(key)
		var due time.Time
		if res.RequeueAfter > 0 {
			due = e.clock.Now().Add(res.RequeueAfter)
		}
		r.done(key, st, false, due)
		if res.RequeueAfter > 0 {
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

// progressed wakes WaitReconciled callers after a reconcile ended.
func (e *Engine) progressed() {
	if e.waiting.Load() {
		e.progressMu.Lock()
		if e.waiting.Swap(false) {
			close(e.progress)
			e.progress = make(chan struct{})
		}
		e.progressMu.Unlock()
	}
}

// WaitReconciled returns once the engine has mapped every change up to sequence seq and
// reconciled every key those changes queued in this replica, and every key whose requeue is due
// by the engine's clock (a reconcile that failed and is retried is not done; one that asked to be
// requeued later is, until that time comes), or when ctx ends. Keys queued when the engine
// started or gained partitions count as queued by the sequence the store had then applied. It is
// how a test knows a reconciler has acted on a change, and on what it wrote in response, before
// it asserts that the reconciler did nothing else; with a fake clock, a test steps the clock and
// waits again to have the requeues it made due run.
func (e *Engine) WaitReconciled(ctx context.Context, seq uint64) error {
	select {
	case <-e.started:
	case <-ctx.Done():
		return fmt.Errorf("engine: waiting for the engine to start: %w", ctx.Err())
	}
	if err := e.store.WaitDelivered(ctx, seq); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	for {
		e.progressMu.Lock()
		ch := e.progress
		e.waiting.Store(true)
		e.progressMu.Unlock()
		name, key, pending := e.pendingAt(seq, e.clock.Now())
		if !pending {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("engine: %s has not reconciled %s, queued by a change up to %d or due: %w", name, key, seq, ctx.Err())
		}
	}
}

func (e *Engine) pendingAt(seq uint64, now time.Time) (string, eventlog.Key, bool) {
	for _, r := range e.regs {
		if k, ok := r.pendingAt(seq, now); ok {
			return r.Name, k, true
		}
	}
	return "", eventlog.Key{}, false
}
