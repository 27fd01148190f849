package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Reads that end (History, At, Replay) use JetStream's direct get API in batches: one request
// returns up to directBatch messages and an end-of-batch marker, with no consumer on the server,
// so a read leaves nothing behind however it ends. Follow, which does not end, uses an ordered
// consumer.

// directBatch is how many messages one direct get request asks for.
const directBatch = 1024

// directRequest is JetStream's JSApiMsgGetRequest, the fields logplane uses.
type directRequest struct {
	Seq          uint64   `json:"seq,omitempty"`
	NextFor      string   `json:"next_by_subj,omitempty"`
	Batch        int      `json:"batch,omitempty"`
	MultiLastFor []string `json:"multi_last,omitempty"`
	UpToSeq      uint64   `json:"up_to_seq,omitempty"`
}

// Headers of direct get responses.
const (
	hdrStatus     = "Status"
	hdrSubject    = "Nats-Subject"
	hdrSequence   = "Nats-Sequence"
	hdrTimeStamp  = "Nats-Time-Stamp"
	hdrNumPending = "Nats-Num-Pending"
)

// direct is one reader of direct get responses: an inbox subscription, reused for every
// request it makes, and removed by close.
type direct struct {
	l     *Log
	inbox string
	sub   *nats.Subscription
	msgs  chan *nats.Msg
}

func (l *Log) newDirect() (*direct, error) {
	d := &direct{l: l, inbox: l.nc.NewRespInbox(), msgs: make(chan *nats.Msg, 2*directBatch)}
	sub, err := l.nc.ChanSubscribe(d.inbox, d.msgs)
	if err != nil {
		return nil, fmt.Errorf("eventlog: direct get: %w", err)
	}
	d.sub = sub
	return d, nil
}

func (d *direct) close() {
	_ = d.sub.Unsubscribe() // only fails if the connection is closed, which ends it too
}

// get sends req and calls fn for each message of the answer, in order. It returns the number
// of messages and how many more match after the last one (the server's Nats-Num-Pending of the
// end-of-batch marker; 0 for a multi_last request). If nothing matches, it returns 0, 0, nil.
// If fn returns an error, get returns it once the answer has been read to its end.
func (d *direct) get(ctx context.Context, req directRequest, fn func(Record) error) (n int, pending uint64, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, 0, fmt.Errorf("eventlog: direct get: %w", err)
	}
	if err := d.l.nc.PublishRequest("$JS.API.DIRECT.GET."+d.l.cfg.Stream, d.inbox, body); err != nil {
		return 0, 0, d.l.natsError("direct get", err)
	}
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		// A server that does not answer must not hang a read forever.
		t := time.NewTimer(30 * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	var fnErr error
	for {
		var m *nats.Msg
		select {
		case m = <-d.msgs:
		case <-ctx.Done():
			return n, 0, fmt.Errorf("eventlog: direct get: %w", ctx.Err())
		case <-timeout:
			return n, 0, fmt.Errorf("eventlog: direct get from %s: %w", d.l.cfg.Stream, nats.ErrTimeout)
		}
		if status := m.Header.Get(hdrStatus); status != "" || len(m.Data) == 0 && m.Header.Get(hdrSequence) == "" {
			switch status {
			case "204": // end of batch
				if p := m.Header.Get(hdrNumPending); p != "" && req.MultiLastFor == nil {
					pending, _ = strconv.ParseUint(p, 10, 64) // a garbled count reads as 0: no more
				}
				return n, pending, fnErr
			case "404":
				return n, 0, fnErr
			case "503":
				return n, 0, fmt.Errorf("eventlog: direct get: %w", nats.ErrNoResponders)
			}
			return n, 0, fmt.Errorf("eventlog: direct get: status %s %s", status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(hdrSequence), 10, 64)
		if err != nil {
			return n, 0, fmt.Errorf("eventlog: direct get: bad sequence header %q", m.Header.Get(hdrSequence))
		}
		ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(hdrTimeStamp))
		if err != nil {
			return n, 0, fmt.Errorf("eventlog: direct get: bad time header %q", m.Header.Get(hdrTimeStamp))
		}
		n++
		if fnErr == nil {
			fnErr = fn(d.l.decode(seq, m.Header.Get(hdrSubject), ts, m.Data))
		}
		if req.Batch == 0 && req.MultiLastFor == nil {
			return n, 0, fnErr // a single get has no end-of-batch marker
		}
	}
}

func (l *Log) natsError(op string, err error) error {
	if errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("%w: %s: %v", ErrClosed, op, err)
	}
	return fmt.Errorf("eventlog: %s: %w", op, err)
}

// scan calls fn for every event on subject (which may hold wildcards) with a sequence from
// first to upTo (0: to the end of the log as it is when scan starts), in order, a batch at a
// time. It stops early, returning nil, when fn returns errStop.
func (l *Log) scan(ctx context.Context, subject string, first, upTo uint64, fn func(Record) error) error {
	d, err := l.newDirect()
	if err != nil {
		return err
	}
	defer d.close()
	if upTo == 0 {
		if _, upTo, err = l.Bounds(ctx); err != nil {
			return err
		}
	}
	next := max(first, 1)
	for next <= upTo {
		var last uint64
		req := directRequest{Seq: next, NextFor: subject, Batch: directBatch}
		if subject == l.cfg.Prefix+".obj.>" {
			req.NextFor = "" // the whole stream: no wildcard to match
		}
		_, pending, err := d.get(ctx, req, func(r Record) error {
			last = r.Seq
			if r.Seq > upTo {
				return errStop
			}
			return fn(r)
		})
		if errors.Is(err, errStop) {
			return nil
		}
		if err != nil {
			return err
		}
		if last == 0 || pending == 0 {
			return nil
		}
		next = last + 1
	}
	return nil
}

// Replay calls fn for every event matching f with a sequence in (after, upTo], in order and
// with no gaps, and returns once the last one is read; upTo 0 means the last sequence in the log
// when Replay starts. Unlike Follow, it does not wait for new events. Records that cannot be
// decoded are passed to fn with Err set. If after is older than what retention has kept,
// Replay returns ErrGone before calling fn; if fn returns an error, Replay returns it.
func (l *Log) Replay(ctx context.Context, f Filter, after, upTo uint64, fn func(Record) error) error {
	if err := l.checkKept(ctx, after); err != nil {
		return err
	}
	_, last, err := l.Bounds(ctx)
	if err != nil {
		return err
	}
	if upTo == 0 || upTo > last {
		upTo = last
	}
	if after >= upTo {
		return nil
	}
	subject := f.subject(l.cfg.Prefix)
	var fnErr error
	call := func(r Record) error {
		if r.Seq > upTo {
			return errStop
		}
		if err := fn(r); err != nil {
			fnErr = err
			return errStop
		}
		if r.Seq == upTo {
			return errStop
		}
		return nil
	}
	if upTo-after <= replayDirectMax {
		err = l.scan(ctx, subject, after+1, upTo, call)
	} else {
		err = l.replayOrdered(ctx, subject, after, call)
	}
	if fnErr != nil {
		return fnErr
	}
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// replayDirectMax is the longest range Replay reads with direct gets; a longer one is read
// with an ordered consumer, which streams about twice as fast once it is set up.
const replayDirectMax = 4 * directBatch

// replayOrdered calls fn for the events on subject after `after` that are in the log now, with an
// ordered consumer, until fn returns an error (errStop to end early).
func (l *Log) replayOrdered(ctx context.Context, subject string, after uint64, fn func(Record) error) error {
	// A consumer that has nothing to deliver would wait for new events: find the first one.
	d, err := l.newDirect()
	if err != nil {
		return err
	}
	var first uint64
	filter := l.consumerFilter(subject)
	req := directRequest{Seq: after + 1, NextFor: subject}
	if filter == nil {
		req = directRequest{Seq: after + 1, Batch: 1}
	}
	_, _, err = d.get(ctx, req, func(r Record) error {
		first = r.Seq
		return nil
	})
	d.close()
	if err != nil || first == 0 {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return l.consume(ctx, filter, first-1, func(r Record, pending uint64) error {
		if err := fn(r); err != nil {
			return err
		}
		if pending == 0 {
			return errStop // the last one matching now
		}
		return nil
	})
}

// checkKept returns ErrGone if events after `after` are no longer all in the log.
func (l *Log) checkKept(ctx context.Context, after uint64) error {
	if after == 0 {
		return nil
	}
	first, last, err := l.Bounds(ctx)
	if err != nil {
		return err
	}
	// After retention dropped everything, first is last+1: reading from there is still gap-free.
	if after+1 < first {
		return fmt.Errorf("%w: sequence %d is before the first kept, %d (last %d)", ErrGone, after, first, last)
	}
	return nil
}
