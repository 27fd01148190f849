package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// AnyRevision, given as the expected revision, appends without checking the key's latest one.
const AnyRevision = ^uint64(0)

// NoRevision, given as the expected revision, appends only if the key has never had one.
const NoRevision = uint64(0)

// envelopeHeadroom is kept free in a message for headers and the envelope around the object.
const envelopeHeadroom = 4 << 10

// Append appends ev to the key it names if the key's latest revision is expect (NoRevision: the
// key has none; AnyRevision: whatever it is) and returns the new revision's sequence once it is
// durable. If the key's latest revision is another one, Append returns ErrConflict and nothing
// is written. An object larger than Config.MaxObjectBytes, or an event that does not fit in a
// message, returns ErrTooLarge.
func (l *Log) Append(ctx context.Context, ev *eventv1.ObjectChanged, expect uint64) (uint64, error) {
	key := KeyOf(ev)
	if err := key.valid(); err != nil {
		return 0, err
	}
	if ev.GetType() == eventv1.ChangeType_CHANGE_TYPE_UNSPECIFIED {
		return 0, fmt.Errorf("%w: %s: event has no type", ErrInvalid, key)
	}
	if len(ev.GetObject()) > l.cfg.MaxObjectBytes {
		return 0, fmt.Errorf("%w: %s is %d bytes, more than the %d an object may have",
			ErrTooLarge, key, len(ev.GetObject()), l.cfg.MaxObjectBytes)
	}
	if ev.GetType() > eventv1.ChangeType_CHANGE_TYPE_DELETED {
		return 0, fmt.Errorf("%w: %s: unknown event type %d", ErrInvalid, key, ev.GetType())
	}
	if err := validStrings(ev); err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrInvalid, key, err)
	}
	data := AppendEvent(make([]byte, 0, len(ev.GetObject())+512), ev)
	if len(data)+envelopeHeadroom > l.maxPayload {
		return 0, fmt.Errorf("%w: %s is %d bytes, the server takes at most %d",
			ErrTooLarge, key, len(data), l.maxPayload-envelopeHeadroom)
	}
	if l.cfg.Node != "" {
		return l.appendCommand(ctx, ev, key, data, expect)
	}
	if l.space != nil && l.space.full() {
		return 0, noSpaceError(key, errors.New("writes are refused until the disk has room again"))
	}
	msg := &nats.Msg{Subject: key.subject(l.cfg.Prefix), Data: data, Header: nats.Header{}}
	if expect != AnyRevision {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
	}
	pubCtx, release := ctx, func() {}
	if l.space != nil {
		pubCtx, release = l.space.whileRoom(ctx)
	}
	ack, err := l.js.PublishMsg(pubCtx, msg)
	release()
	if err != nil {
		if errors.Is(context.Cause(pubCtx), ErrNoSpace) && ctx.Err() == nil {
			return 0, noSpaceError(key, errors.New("the disk filled while the append waited for the server"))
		}
		return 0, l.publishError(key, expect, err)
	}
	if l.commit != nil {
		if err := l.commit(ctx); err != nil {
			if isNoSpace(err) {
				l.noteNoSpace(err)
				return 0, fmt.Errorf("%w: %s stored at %d but not known to be durable: %v", ErrNoSpace, key, ack.Sequence, err)
			}
			return 0, fmt.Errorf("eventlog: %s stored at %d but not known to be durable: %w", key, ack.Sequence, err)
		}
	}
	return ack.Sequence, nil
}

func (l *Log) publishError(key Key, expect uint64, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
		return fmt.Errorf("%w: %s is not at revision %d", ErrConflict, key, expect)
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %s: %v", ErrTooLarge, key, err)
	case isNoSpace(err):
		l.noteNoSpace(err)
		return noSpaceError(key, err)
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("%w: appending %s: %v", ErrClosed, key, err)
	}
	return fmt.Errorf("eventlog: appending %s: %w", key, err)
}

// Create appends ev, an ADDED event, if its key has no live revision: either none at all, or a
// tombstone as its latest. If the key is live it returns ErrExists; if another writer changes the
// key meanwhile, ErrConflict.
func (l *Log) Create(ctx context.Context, ev *eventv1.ObjectChanged) (uint64, error) {
	seq, err := l.Append(ctx, ev, NoRevision)
	if !errors.Is(err, ErrConflict) {
		return seq, err
	}
	key := KeyOf(ev)
	last, err := l.last(ctx, key)
	if err != nil {
		return 0, err
	}
	// Event is nil when the key's only revisions cannot be read: nothing live to keep.
	if last.Event != nil && !last.Tombstone() {
		return 0, fmt.Errorf("%w: %s", ErrExists, key)
	}
	return l.Append(ctx, ev, last.Seq)
}
