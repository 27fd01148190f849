package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

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
	msg := appendMsg(key.subject(l.cfg.Prefix), data, expect)
	floor := l.acked.Load() // stored before this append is sent: it will be stored after
	ack, err := l.publish(ctx, key, expect, msg)
	var seq uint64
	switch {
	case err == nil:
		seq = ack.Sequence
	case errors.Is(err, errConnLost):
		// The server may or may not have stored it: find out, and append again if not.
		if seq, err = l.settle(ctx, key, ev, data, expect, floor); err != nil {
			return 0, err
		}
	default:
		return 0, err
	}
	if l.commit != nil {
		if err := l.commit(ctx); err != nil {
			if isNoSpace(err) {
				l.noteNoSpace(err)
				return 0, fmt.Errorf("%w: %s stored at %d but not known to be durable: %v", ErrNoSpace, key, seq, err)
			}
			return 0, fmt.Errorf("eventlog: %s stored at %d but not known to be durable: %w", key, seq, err)
		}
	}
	return seq, nil
}

func appendMsg(subject string, data []byte, expect uint64) *nats.Msg {
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if expect != AnyRevision {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
	}
	return msg
}

// publish sends msg and returns its acknowledgement, with the log's errors. If the disk is
// found full meanwhile it returns ErrNoSpace; if the connection is lost before the answer came,
// an error wrapping errConnLost: the message may or may not have been stored.
func (l *Log) publish(ctx context.Context, key Key, expect uint64, msg *nats.Msg) (*jetstream.PubAck, error) {
	pubCtx, release := l.conn.whileConnected(ctx)
	defer release()
	if l.space != nil {
		var releaseRoom func()
		pubCtx, releaseRoom = l.space.whileRoom(pubCtx)
		defer releaseRoom()
	}
	ack, err := l.js.PublishMsg(pubCtx, msg)
	if err == nil {
		l.noteAcked(ack.Sequence)
		return ack, nil
	}
	if ctx.Err() == nil {
		switch cause := context.Cause(pubCtx); {
		case errors.Is(cause, ErrNoSpace):
			return nil, noSpaceError(key, errors.New("the disk filled while the append waited for the server"))
		case errors.Is(cause, errConnLost):
			return nil, fmt.Errorf("%w while appending %s: %v", errConnLost, key, err)
		}
	}
	return nil, l.publishError(key, expect, err)
}

// noteAcked keeps the highest sequence the server acknowledged to this log.
func (l *Log) noteAcked(seq uint64) {
	for {
		cur := l.acked.Load()
		if seq <= cur || l.acked.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// maxSettle bounds the rounds of settle: each one follows a lost connection, or a conflict
// with another writer of the key.
const maxSettle = 32

// settle finds out what became of an append whose connection was lost before its answer came,
// once the connection is back, and appends it again if it was not stored: either way the event
// is in the log once, and settle returns its sequence. The message is known by its content (an
// event equal to ev on the key's subject, where it can have been stored: the first revision
// after expect, or, for AnyRevision, any after floor, a sequence the stream had before the
// append was sent). Appending again expects the revision just read (for AnyRevision, the key's
// latest), so that if the first message is still on its way and lands first, the second
// conflicts and the next round finds the first.
func (l *Log) settle(ctx context.Context, key Key, ev *eventv1.ObjectChanged, data []byte, expect, floor uint64) (uint64, error) {
	l.settles.Add(1)
	subj := key.subject(l.cfg.Prefix)
	for round := 1; ; round++ {
		if round > maxSettle {
			return 0, fmt.Errorf("%w: appending %s: not settled after %d rounds of lost connections and conflicts", ErrUnavailable, key, maxSettle)
		}
		if err := l.conn.waitUp(ctx); err != nil {
			return 0, fmt.Errorf("eventlog: appending %s, which may or may not have been written: %w", key, err)
		}
		rctx, release := l.conn.whileConnected(ctx)
		seq, latest, err := l.findAppended(rctx, subj, ev, expect, floor)
		lost := wasLost(ctx, rctx)
		release()
		switch {
		case lost:
			continue
		case err != nil:
			return 0, fmt.Errorf("eventlog: appending %s, which may or may not have been written: %w", key, err)
		case seq != 0:
			l.noteAcked(seq)
			l.cfg.Logger.Debug("eventlog: an append whose connection was lost had been stored", "key", key.String(), "seq", seq)
			return seq, nil
		}
		want := expect
		if expect == AnyRevision {
			want, floor = latest, max(floor, latest)
		} else if latest != expect {
			return 0, fmt.Errorf("%w: %s is not at revision %d", ErrConflict, key, expect)
		}
		ack, err := l.publish(ctx, key, want, appendMsg(subj, data, want))
		switch {
		case err == nil:
			l.cfg.Logger.Debug("eventlog: an append whose connection was lost is appended again", "key", key.String(), "seq", ack.Sequence)
			return ack.Sequence, nil
		case errors.Is(err, errConnLost), errors.Is(err, ErrConflict):
			continue
		default:
			return 0, err
		}
	}
}

// findAppended looks for ev on subj where an append of it expecting expect can have been stored
// (see settle). It returns its sequence if it is there, else 0 and the subject's latest sequence.
func (l *Log) findAppended(ctx context.Context, subj string, ev *eventv1.ObjectChanged, expect, floor uint64) (seq, latest uint64, err error) {
	m, err := l.stream.GetLastMsgForSubject(ctx, subj)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, 0, nil
	case err != nil:
		return 0, 0, err
	}
	latest = m.Sequence
	from := floor + 1
	if expect != AnyRevision {
		from = expect + 1
	}
	if latest < from {
		return 0, latest, nil
	}
	err = l.scan(ctx, subj, from, latest, func(r Record) error {
		if r.Err == nil && proto.Equal(r.Event, ev) {
			seq = r.Seq
			return errStop
		}
		if expect != AnyRevision {
			return errStop // only the first revision after expect can be the append's
		}
		return nil
	})
	return seq, latest, err
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
