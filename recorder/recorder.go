// Package recorder writes the Kubernetes Events that `kubectl describe` and `kubectl get events`
// show (Scheduled, Pulled, ScalingReplicaSet, ...), through the registry, for every writer that
// is not the API server: reconcilers and node agents. As Kubernetes' recorder does, it aggregates
// repeats: the same type, reason and message about the same object within the aggregation window
// bumps count and lastTimestamp of one Event instead of adding another. Recording is
// asynchronous and never blocks the caller: Events are informative, and a full queue drops the
// newest ones (counted, logged). As client-go's event broadcaster does, a write that fails for
// want of the log is tried again, up to 12 times in all, some seconds apart; one the registry
// rejects is not.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// writer is what the recorder needs of the registry.
type writer interface {
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
}

var _ writer = (*registry.Registry)(nil)

// Config configures a Recorder.
type Config struct {
	// Registry the Events are written through. Required.
	Registry *registry.Registry
	// Actor recorded as the writer of the Events.
	Actor registry.Actor
	// Source of the Events: the component ("default-scheduler", "kubelet", "deployment-controller")
	// and, for node agents, the host.
	Source corev1.EventSource
	// Window within which repeats are aggregated into one Event. Default 10 minutes.
	Window time.Duration
	// Queue bounds the Events waiting to be written. Default 4096.
	Queue int
	// Workers writing concurrently. Default 4.
	Workers int
	// SpamFilter drops the Events beyond the budget client-go's recorder gives a source for one
	// object (a burst of 25, then one every 5 minutes), as Kubernetes controllers do: a replica
	// set creating ten thousand pods records 25 SuccessfulCreate Events, not ten thousand.
	SpamFilter bool
	// RetrySleep is the time between two tries to write an Event that failed for want of the
	// log (the first wait is a random part of it, so that writers do not come back together).
	// Default 10 s, as client-go's broadcaster.
	RetrySleep time.Duration
	Logger     *slog.Logger
	// Clock gives the Events' times and the waits between tries. Default the real clock.
	Clock clock.Clock
}

// Recorder records Events. Start it with Run.
type Recorder struct {
	cfg     Config
	reg     writer
	kind    *kinds.Kind
	queue   chan pending
	dropped atomic.Int64

	spamMu sync.Mutex
	spam   *record.EventSourceObjectSpamFilter // nil: no spam filter

	mu     sync.Mutex
	seen   map[aggKey]*aggregate
	lastTS int64 // the newest timestamp a name was made of
}

type aggKey struct {
	uid                  string
	kind, ns, name       string
	typ, reason, message string
}

type aggregate struct {
	mu        sync.Mutex
	name      string // of the Event object, once written
	count     int32
	last      time.Time
	firstSeen time.Time
}

type pending struct {
	ev    *corev1.Event
	key   aggKey
	cause uint64
}

// New returns a recorder; Events are written once Run runs.
func New(cfg Config) (*Recorder, error) {
	if cfg.Registry == nil {
		return nil, fmt.Errorf("recorder: no registry")
	}
	k, ok := cfg.Registry.Catalog().ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Event"})
	if !ok {
		return nil, fmt.Errorf("recorder: the catalog has no v1 Event")
	}
	if cfg.Window == 0 {
		cfg.Window = 10 * time.Minute
	}
	if cfg.Queue == 0 {
		cfg.Queue = 4096
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RetrySleep == 0 {
		cfg.RetrySleep = defaultRetrySleep
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	r := &Recorder{cfg: cfg, reg: cfg.Registry, kind: k, queue: make(chan pending, cfg.Queue), seen: map[aggKey]*aggregate{}}
	if cfg.SpamFilter {
		r.spam = record.NewEventSourceObjectSpamFilter(spamCacheSize, spamBurst, spamQPS, cfg.Clock, spamKey)
	}
	return r, nil
}

// The spam budget of client-go's recorder.
const (
	spamCacheSize = 4096
	spamBurst     = 25
	spamQPS       = 1. / 300.
)

func spamKey(ev *corev1.Event) string {
	o := ev.InvolvedObject
	return strings.Join([]string{ev.Source.Component, ev.Source.Host, o.Kind, o.Namespace, o.Name, string(o.UID), o.APIVersion}, "")
}

// Event records an Event about obj, caused by the log event at sequence cause (0 if none).
// eventtype is corev1.EventTypeNormal or corev1.EventTypeWarning.
func (r *Recorder) Event(obj runtime.Object, cause uint64, eventtype, reason, message string) {
	ref, err := reference(obj)
	if err != nil {
		r.cfg.Logger.Warn("recorder: no reference for the object of an event", "reason", reason, "err", err)
		return
	}
	r.RefEvent(ref, cause, eventtype, reason, message)
}

// Eventf is Event with a format.
func (r *Recorder) Eventf(obj runtime.Object, cause uint64, eventtype, reason, format string, args ...any) {
	r.Event(obj, cause, eventtype, reason, fmt.Sprintf(format, args...))
}

// RefEvent records an Event about the object ref points to.
func (r *Recorder) RefEvent(ref corev1.ObjectReference, cause uint64, eventtype, reason, message string) {
	now := metav1.NewTime(r.cfg.Clock.Now())
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ns},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             message,
		Type:                eventtype,
		Source:              r.cfg.Source,
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: r.cfg.Source.Component,
		ReportingInstance:   r.cfg.Source.Component,
	}
	if r.cfg.Source.Host != "" {
		ev.ReportingInstance += "-" + r.cfg.Source.Host
	}
	key := aggKey{uid: string(ref.UID), kind: ref.Kind, ns: ref.Namespace, name: ref.Name, typ: eventtype, reason: reason, message: message}
	if r.spam != nil {
		r.spamMu.Lock()
		skip := r.spam.Filter(ev)
		r.spamMu.Unlock()
		if skip {
			return
		}
	}
	select {
	case r.queue <- pending{ev: ev, key: key, cause: cause}:
	default:
		if r.dropped.Add(1)%100 == 1 {
			r.cfg.Logger.Warn("recorder: queue full, dropping events", "dropped", r.dropped.Load())
		}
	}
}

// Dropped is how many Events were dropped because the queue was full.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Run writes queued Events until ctx ends.
func (r *Recorder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := 0; i < r.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case p := <-r.queue:
					r.record(ctx, p)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// client-go's broadcaster (tools/record, recordToSink): tries per Event, and the wait between two.
const (
	maxTriesPerEvent  = 12
	defaultRetrySleep = 10 * time.Second
)

// record writes p, trying again as client-go's broadcaster does (recordToSink and recordEvent):
// up to maxTriesPerEvent tries, RetrySleep apart, the first wait randomized; a write the
// registry rejected is not tried again.
func (r *Recorder) record(ctx context.Context, p pending) {
	for tries := 1; ; tries++ {
		err := r.write(ctx, pending{ev: p.ev.DeepCopy(), key: p.key, cause: p.cause})
		if err == nil || ctx.Err() != nil {
			return
		}
		log := r.cfg.Logger.With("reason", p.ev.Reason, "object", p.key.name, "err", err)
		if !retryable(err) {
			if apierrors.IsAlreadyExists(err) || apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				log.Debug("recorder: the registry rejected the event (will not retry)")
			} else {
				log.Warn("recorder: the registry rejected the event (will not retry)")
			}
			return
		}
		if tries >= maxTriesPerEvent {
			log.Error("recorder: unable to write the event (retry limit exceeded)", "tries", tries)
			return
		}
		delay := r.cfg.RetrySleep
		if tries == 1 {
			delay = time.Duration(float64(delay) * rand.Float64())
		}
		log.Warn("recorder: unable to write the event (will retry)", "in", delay.Round(time.Millisecond))
		t := r.cfg.Clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// retryable reports whether writing an Event again may succeed. client-go's recorder tries
// again when the API server could not be reached (a transport error) and gives up on any
// Status the server answered. This recorder writes through the registry in the same process,
// where nothing is lost on the way: the part of an unreachable server is played by the log
// being out of reach, which the registry answers with a 5xx Status (503 unavailable, 504
// timeout, 507 out of space, 500). Those are tried again, as a 429 would be by client-go's REST
// client; a 4xx Status is the registry's rejection of the Event, final as in client-go.
func retryable(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return true
	}
	code := st.Status().Code
	return code >= http.StatusInternalServerError || code == http.StatusTooManyRequests
}

func (r *Recorder) write(ctx context.Context, p pending) error {
	r.mu.Lock()
	agg := r.seen[p.key]
	if agg == nil {
		agg = &aggregate{}
		r.seen[p.key] = agg
	}
	r.mu.Unlock()

	agg.mu.Lock()
	defer agg.mu.Unlock()
	req := registry.Request{Actor: r.cfg.Actor, Cause: p.cause}
	now := p.ev.LastTimestamp
	if agg.name != "" && now.Sub(agg.last) < r.cfg.Window {
		count := agg.count + 1
		_, err := r.reg.Modify(ctx, r.kind, p.ev.Namespace, agg.name, req, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
			e, ok := cur.(*corev1.Event)
			if !ok {
				return nil, fmt.Errorf("recorder: event decodes to %T", cur)
			}
			e.Count = max(e.Count+1, count)
			e.LastTimestamp = now
			return e, nil
		})
		if err == nil {
			agg.count, agg.last = count, now.Time
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		// The Event was deleted meanwhile: write a new one.
	}
	// Named as client-go names Events (the object's name and the time in hex), made unique: two
	// Events about one object at the same instant (a stepped clock, a coarse one) get
	// different names, and a name another writer took is not fatal.
	for try := 0; ; try++ {
		p.ev.Name = fmt.Sprintf("%s.%s", p.key.name, strconv.FormatInt(r.nameTime(now.UnixNano()), 16))
		_, err := r.reg.Create(ctx, r.kind, p.ev, req)
		if err == nil {
			break
		}
		if !apierrors.IsAlreadyExists(err) || try == 2 {
			return err
		}
	}
	agg.name, agg.count, agg.last = p.ev.Name, 1, now.Time
	r.forgetOld(now.Time)
	return nil
}

// nameTime returns ts, or the least time after every one a name was made of, so that this
// recorder never makes one name twice.
func (r *Recorder) nameTime(ts int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts <= r.lastTS {
		ts = r.lastTS + 1
	}
	r.lastTS = ts
	return ts
}

// forgetOld drops aggregates past the window, now and then, so the map stays small.
func (r *Recorder) forgetOld(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) < 4096 {
		return
	}
	for k, a := range r.seen {
		if a.mu.TryLock() {
			if now.Sub(a.last) > r.cfg.Window {
				delete(r.seen, k)
			}
			a.mu.Unlock()
		}
	}
}

// reference builds the ObjectReference of obj, as client-go's reference.GetReference does.
func reference(obj runtime.Object) (corev1.ObjectReference, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return corev1.ObjectReference{}, err
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind == "" {
		gvks, _, err := kinds.Scheme.ObjectKinds(obj)
		if err != nil || len(gvks) == 0 {
			return corev1.ObjectReference{}, fmt.Errorf("recorder: unknown kind %T: %v", obj, err)
		}
		gvk = gvks[0]
	}
	apiVersion, kind := gvk.ToAPIVersionAndKind()
	return corev1.ObjectReference{
		Kind: kind, APIVersion: apiVersion, Namespace: m.GetNamespace(), Name: m.GetName(),
		UID: m.GetUID(), ResourceVersion: m.GetResourceVersion(),
	}, nil
}
