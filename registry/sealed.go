package registry

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// Sealer encrypts the objects of sealed kinds (Secrets) on the write path and opens them on the
// registry's reads of the log (package encryption).
type Sealer interface {
	Seal(ctx context.Context, ev *eventv1.ObjectChanged) error
	Open(ctx context.Context, ev *eventv1.ObjectChanged) (*eventv1.ObjectChanged, error)
}

// forgotten is the mark of an error for values forgotten by crypto-shredding.
type forgotten interface{ Forgotten() bool }

// IsForgotten says whether err (a record's Err, say) means that the values of a revision were
// forgotten: the object was deleted and its data key destroyed.
func IsForgotten(err error) bool {
	var f forgotten
	return errors.As(err, &f) && f.Forgotten()
}

// forgottenStatus answers a read of a revision whose values were forgotten: 404, saying so.
func forgottenStatus(k *kinds.Kind, name string, seq uint64) error {
	err := apierrors.NewNotFound(k.GroupResource(), name)
	err.ErrStatus.Message = fmt.Sprintf("%s %q at resourceVersion %d: its values were forgotten (the object was deleted and its data key destroyed)",
		k.GroupResource(), name, seq)
	return err
}

// openingLog is the log as the registry reads it: sealed objects come back opened; a record
// that cannot be opened comes back with Err set (wrapping the sealer's error, which IsForgotten
// recognises for forgotten values).
type openingLog struct {
	objectLog
	s Sealer
}

func (l openingLog) open(ctx context.Context, rec eventlog.Record) eventlog.Record {
	if rec.Err != nil || rec.Event.GetEncoding() != eventv1.Encoding_ENCODING_SEALED {
		return rec
	}
	ev, err := l.s.Open(ctx, rec.Event)
	if err != nil {
		rec.Err = fmt.Errorf("registry: %s at %d: %w", eventlog.KeyOf(rec.Event), rec.Seq, err)
		return rec
	}
	rec.Event = ev
	return rec
}

func (l openingLog) Get(ctx context.Context, key eventlog.Key) (eventlog.Record, error) {
	rec, err := l.objectLog.Get(ctx, key)
	if err != nil {
		return rec, err
	}
	return l.open(ctx, rec), nil
}

func (l openingLog) At(ctx context.Context, key eventlog.Key, seq uint64) (eventlog.Record, error) {
	rec, err := l.objectLog.At(ctx, key, seq)
	if err != nil {
		return rec, err
	}
	return l.open(ctx, rec), nil
}

func (l openingLog) History(ctx context.Context, key eventlog.Key) ([]eventlog.Record, error) {
	recs, err := l.objectLog.History(ctx, key)
	for i := range recs {
		recs[i] = l.open(ctx, recs[i])
	}
	return recs, err
}

func (l openingLog) Follow(ctx context.Context, f eventlog.Filter, after uint64, fn func(eventlog.Record) error) error {
	return l.objectLog.Follow(ctx, f, after, func(rec eventlog.Record) error { return fn(l.open(ctx, rec)) })
}

func (l openingLog) Replay(ctx context.Context, f eventlog.Filter, after, upTo uint64, fn func(eventlog.Record) error) error {
	return l.objectLog.Replay(ctx, f, after, upTo, func(rec eventlog.Record) error { return fn(l.open(ctx, rec)) })
}

// At returns the revision of the object with key at seq (the latest at or before it), read from
// the log and opened if sealed.
func (r *Registry) At(ctx context.Context, key eventlog.Key, seq uint64) (eventlog.Record, error) {
	return r.log.At(ctx, key, seq)
}

// OpenSealed returns ev with its object opened if it is sealed (ev itself otherwise, or when the
// registry has no Sealer): what the control plane answers a node that asks to open a Secret of
// its feed (eventlog.Log.ServeNodeOpens), once it has checked that the node may read it.
func (r *Registry) OpenSealed(ctx context.Context, ev *eventv1.ObjectChanged) (*eventv1.ObjectChanged, error) {
	if r.sealer == nil || ev.GetEncoding() != eventv1.Encoding_ENCODING_SEALED {
		return ev, nil
	}
	return r.sealer.Open(ctx, ev)
}

// Replay calls fn for the log's records matching f in (after, upTo], as they are stored (sealed
// Secrets stay sealed): see eventlog.Log.Replay.
func (r *Registry) Replay(ctx context.Context, f eventlog.Filter, after, upTo uint64, fn func(eventlog.Record) error) error {
	return r.log.Replay(ctx, f, after, upTo, fn)
}
