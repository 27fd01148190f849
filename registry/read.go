package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// ReadOptions say which state a read sees.
type ReadOptions struct {
	// ResourceVersion and ResourceVersionMatch have their Kubernetes meaning: "" reads the
	// latest state (a consistent read: the projection catches up with the log first), "0" any
	// state the server has, N a state at least as new as N (NotOlderThan, the default for N) or
	// exactly N (Exact: served from the log).
	ResourceVersion      string
	ResourceVersionMatch metav1.ResourceVersionMatch
	// At, when not 0, reads the state as it was at that sequence (time travel), from the log.
	At uint64
}

// Query selects objects for List.
type Query struct {
	Namespace string          // empty: all namespaces
	Labels    labels.Selector // nil: everything
	Fields    fields.Selector // nil: everything
}

// ParseResourceVersion reads a resourceVersion; "" and "0" are 0. A malformed one is a 400.
func ParseResourceVersion(rv string) (uint64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", rv))
	}
	return n, nil
}

// ConsistentRead waits until the projection has applied everything the log held when it was
// called.
func (r *Registry) ConsistentRead(ctx context.Context) (uint64, error) {
	_, last, err := r.log.Bounds(ctx)
	if err != nil {
		return 0, apierrors.NewServiceUnavailable(err.Error())
	}
	if err := r.store.WaitFor(ctx, last); err != nil {
		return 0, apierrors.NewTimeoutError(err.Error(), 1)
	}
	return last, nil
}

// waitFresh prepares a read of the projection per opts. It returns exact > 0 when the read has
// to be served from the log at that sequence.
func (r *Registry) waitFresh(ctx context.Context, opts ReadOptions) (exact uint64, err error) {
	if opts.At > 0 {
		_, last, err := r.log.Bounds(ctx)
		if err != nil {
			return 0, apierrors.NewServiceUnavailable(err.Error())
		}
		if opts.At > last {
			return 0, tooLargeForLog(opts.At, last)
		}
		return opts.At, nil
	}
	rv, err := ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return 0, err
	}
	switch opts.ResourceVersionMatch {
	case "", metav1.ResourceVersionMatchNotOlderThan, metav1.ResourceVersionMatchExact:
	default:
		return 0, apierrors.NewBadRequest(fmt.Sprintf("unknown resourceVersionMatch %q", opts.ResourceVersionMatch))
	}
	if opts.ResourceVersionMatch != "" && opts.ResourceVersion == "" {
		return 0, apierrors.NewBadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
	}
	if opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact {
		if rv == 0 {
			return 0, apierrors.NewBadRequest("resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"")
		}
		if rv != r.store.Applied() {
			if err := r.waitFor(ctx, rv); err != nil {
				return 0, err
			}
			if rv != r.store.Applied() {
				return rv, nil
			}
		}
		return 0, nil
	}
	switch {
	case opts.ResourceVersion == "":
		_, err := r.ConsistentRead(ctx)
		return 0, err
	case rv == 0:
		return 0, nil
	}
	return 0, r.waitFor(ctx, rv)
}

// waitFor waits, at most the read timeout, for the projection to reach rv; past it the answer is
// Kubernetes' "Too large resource version" (504 with a ResourceVersionTooLarge cause).
func (r *Registry) waitFor(ctx context.Context, rv uint64) error {
	if r.store.Applied() >= rv {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, r.readTimeout)
	defer cancel()
	if err := r.store.WaitFor(wctx, rv); err != nil {
		if ctx.Err() != nil {
			return apierrors.NewTimeoutError(ctx.Err().Error(), 1)
		}
		return TooLargeResourceVersion(rv, r.store.Applied())
	}
	return nil
}

// TooLargeResourceVersion is the error of a read at a resourceVersion the server has not reached.
func TooLargeResourceVersion(want, have uint64) error {
	err := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", want, have), 1)
	err.ErrStatus.Details.Causes = []metav1.StatusCause{{
		Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version"}}
	return err
}

// tooLargeForLog is the error of a read in the past at a sequence the log does not hold yet. It
// is answered at once and without retry advice, as Kubernetes' etcd3 store answers a read at a
// future revision: the state at a sequence not yet written is not known, however long one waits.
func tooLargeForLog(want, last uint64) error {
	err := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", want, last), 0)
	err.ErrStatus.Details.Causes = []metav1.StatusCause{{
		Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version"}}
	return err
}

// Now is the registry's clock: the time its writes are stamped with.
func (r *Registry) Now() time.Time { return r.now() }

// Get returns the object per opts, with its resourceVersion set. 404 if it does not exist (or
// did not, at the sequence asked for).
func (r *Registry) Get(ctx context.Context, k *kinds.Kind, ns, name string, opts ReadOptions) (runtime.Object, error) {
	o, err := r.GetObject(ctx, k, ns, name, opts)
	if err != nil {
		return nil, err
	}
	obj, err := k.Decode(o.Event.GetEncoding(), o.Event.GetObject())
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	setRV(obj, o.Seq)
	return obj, nil
}

// GetObject is Get without decoding the object.
func (r *Registry) GetObject(ctx context.Context, k *kinds.Kind, ns, name string, opts ReadOptions) (*projections.Object, error) {
	exact, err := r.waitFresh(ctx, opts)
	if err != nil {
		return nil, err
	}
	key := keyOf(k, ns, name)
	if exact > 0 {
		if err := r.kept(ctx, exact); err != nil {
			return nil, err
		}
		rec, err := r.log.At(ctx, key, exact)
		if err != nil {
			return nil, statusError(k, name, err)
		}
		if IsForgotten(rec.Err) {
			return nil, forgottenStatus(k, name, rec.Seq)
		}
		if rec.Err != nil {
			return nil, apierrors.NewInternalError(rec.Err)
		}
		return ObjectOf(k, rec), nil
	}
	o, ok := r.store.Get(key)
	if !ok {
		return nil, apierrors.NewNotFound(k.GroupResource(), name)
	}
	return o, nil
}

// List returns the objects of kind k matching q per opts, sorted by namespace and name, and the
// resourceVersion of the state they were read from.
func (r *Registry) List(ctx context.Context, k *kinds.Kind, q Query, opts ReadOptions) ([]*projections.Object, uint64, error) {
	exact, err := r.waitFresh(ctx, opts)
	if err != nil {
		return nil, 0, err
	}
	if exact > 0 {
		return r.listAt(ctx, k, q, exact)
	}
	objs, rv := r.store.List(projections.Query{Resource: k.Stored().GroupResource(), Namespace: q.Namespace, Labels: q.Labels, Fields: q.Fields})
	return objs, rv, nil
}

// listAt rebuilds the list as it was at sequence seq from the log.
func (r *Registry) listAt(ctx context.Context, k *kinds.Kind, q Query, seq uint64) ([]*projections.Object, uint64, error) {
	if err := r.kept(ctx, seq); err != nil {
		return nil, 0, err
	}
	live := map[eventlog.Key]*projections.Object{}
	gr := k.Stored().GroupResource()
	err := r.ScanFiltered(ctx, eventlog.Filter{Group: gr.Group, Resource: gr.Resource, Namespace: q.Namespace}, 0, seq, func(rec eventlog.Record) error {
		if rec.Err != nil {
			return nil
		}
		key := eventlog.KeyOf(rec.Event)
		if (schema.GroupResource{Group: key.Group, Resource: key.Resource}) != gr {
			return nil
		}
		if q.Namespace != "" && key.Namespace != q.Namespace {
			return nil
		}
		if rec.Tombstone() {
			delete(live, key)
			return nil
		}
		live[key] = ObjectOf(k, rec)
		return nil
	})
	if err != nil {
		return nil, 0, statusError(k, "", err)
	}
	var out []*projections.Object
	for _, o := range live {
		if q.Labels != nil && !q.Labels.Empty() && !q.Labels.Matches(o.Labels) {
			continue
		}
		if q.Fields != nil && !q.Fields.Empty() && !q.Fields.Matches(o.Fields) {
			continue
		}
		out = append(out, o)
	}
	sortObjects(out)
	return out, seq, nil
}

// kept checks that the log still holds the state at seq: 410 Gone if retention dropped it.
func (r *Registry) kept(ctx context.Context, seq uint64) error {
	first, _, err := r.log.Bounds(ctx)
	if err != nil {
		return apierrors.NewServiceUnavailable(err.Error())
	}
	if seq < first {
		return apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (the log starts at %d)", seq, first))
	}
	return nil
}

// errStop ends a scan early.
var errStop = errors.New("registry: stop")

// Scan calls fn for every event after sequence from up to and including until (clamped to the
// last sequence in the log), in order. ErrGone (410) if from is older than retention kept.
func (r *Registry) Scan(ctx context.Context, from, until uint64, fn func(eventlog.Record) error) error {
	return r.ScanFiltered(ctx, eventlog.Filter{}, from, until, fn)
}

// ScanFiltered is Scan for the events of one resource (and namespace) only.
func (r *Registry) ScanFiltered(ctx context.Context, f eventlog.Filter, from, until uint64, fn func(eventlog.Record) error) error {
	if until == 0 {
		return nil
	}
	if until == ^uint64(0) {
		until = 0 // Replay: up to the last sequence
	}
	err := r.log.Replay(ctx, f, from, until, fn)
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// SeqAt returns the sequence of the last event stored at or before t: the resourceVersion of
// the state at that time. 0 if the log has nothing that old. It binary-searches the log (events
// are stored in time order), reading one event per step.
func (r *Registry) SeqAt(ctx context.Context, t time.Time) (uint64, error) {
	first, last, err := r.log.Bounds(ctx)
	if err != nil {
		return 0, apierrors.NewServiceUnavailable(err.Error())
	}
	if last == 0 || first > last {
		return 0, nil
	}
	at, err := r.TimeOf(ctx, first)
	if err != nil {
		return 0, err
	}
	if at.After(t) {
		return 0, nil
	}
	lo, hi := first, last // the event at lo was stored at or before t
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		at, err := r.TimeOf(ctx, mid)
		if err != nil {
			return 0, err
		}
		if at.After(t) {
			hi = mid - 1
		} else {
			lo = mid
		}
	}
	return lo, nil
}

// TimeOf returns when the event at seq was stored: from then until the next event, the state
// was the one at seq. 410 Gone if retention dropped it, 404 if the log holds no such sequence.
func (r *Registry) TimeOf(ctx context.Context, seq uint64) (time.Time, error) {
	var at time.Time
	found := false
	err := r.log.Replay(ctx, eventlog.Filter{}, seq-1, seq, func(rec eventlog.Record) error {
		at, found = rec.Stored, rec.Seq == seq
		return nil
	})
	if err != nil {
		return time.Time{}, statusError(nil, "", err)
	}
	if !found {
		return time.Time{}, apierrors.NewNotFound(schema.GroupResource{}, fmt.Sprintf("resourceVersion %d", seq))
	}
	return at, nil
}

// History returns every revision of the object still in the log, tombstones included, oldest
// first. It is empty if the object never existed.
func (r *Registry) History(ctx context.Context, k *kinds.Kind, ns, name string) ([]eventlog.Record, error) {
	recs, err := r.log.History(ctx, keyOf(k, ns, name))
	if err != nil {
		return nil, statusError(k, name, err)
	}
	return recs, nil
}

// AuditQuery selects events for Audit.
type AuditQuery struct {
	Since    time.Time         // zero: from the start of the log
	Actor    string            // the actor's name; empty: anyone
	Kind     eventv1.ActorKind // 0: any kind of actor
	Resource schema.GroupResource
	// Namespace and Name narrow the resource; empty: any.
	Namespace, Name string
	// Limit keeps only the newest Limit events; 0: no limit.
	Limit int
}

// Audit returns the events matching q, oldest first; with a Limit, the newest Limit of them
// (still oldest first).
func (r *Registry) Audit(ctx context.Context, q AuditQuery) ([]eventlog.Record, error) {
	var out []eventlog.Record
	oldest := 0 // with a Limit reached, where the oldest kept event is in out
	var from uint64
	if !q.Since.IsZero() {
		seq, err := r.SeqAt(ctx, q.Since)
		if err != nil {
			return nil, err
		}
		from = seq // the events after it were stored after Since (or at the same instant)
		if from > 0 {
			from--
		}
	}
	f := eventlog.Filter{Group: q.Resource.Group, Resource: q.Resource.Resource, Namespace: q.Namespace}
	err := r.ScanFiltered(ctx, f, from, ^uint64(0), func(rec eventlog.Record) error {
		if rec.Err != nil || rec.Stored.Before(q.Since) {
			return nil
		}
		ev := rec.Event
		if q.Actor != "" && ev.GetActor().GetName() != q.Actor {
			return nil
		}
		if q.Kind != 0 && ev.GetActor().GetKind() != q.Kind {
			return nil
		}
		ref := ev.GetRef()
		if q.Resource.Resource != "" && (ref.GetResource() != q.Resource.Resource || ref.GetGroup() != q.Resource.Group) {
			return nil
		}
		if q.Namespace != "" && ref.GetNamespace() != q.Namespace {
			return nil
		}
		if q.Name != "" && ref.GetName() != q.Name {
			return nil
		}
		if q.Limit > 0 && len(out) == q.Limit {
			// A ring of the newest Limit: this one replaces the oldest.
			out[oldest] = rec
			oldest = (oldest + 1) % q.Limit
			return nil
		}
		out = append(out, rec)
		return nil
	})
	if err != nil {
		return nil, statusError(nil, "", err)
	}
	return slices.Concat(out[oldest:], out[:oldest]), nil
}
