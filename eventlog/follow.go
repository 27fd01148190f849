package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errStop ends a scan or a follow from inside its callback.
var errStop = errors.New("eventlog: stop")

// Follow calls fn, in order and with no gaps, for every event matching f with a sequence after
// after, first those already in the log and then new ones as they are appended, until ctx is
// cancelled (Follow then returns ctx.Err()) or fn returns an error (Follow returns it). Records
// that cannot be decoded are passed to fn with Err set, so that the caller can report them with
// their sequence and go on. If after is older than what retention has kept, Follow returns
// ErrGone before calling fn. A watch from resourceVersion R is Follow(ctx, f, R, fn).
func (l *Log) Follow(ctx context.Context, f Filter, after uint64, fn func(Record) error) error {
	if err := l.checkKept(ctx, after); err != nil {
		return err
	}
	return l.consume(ctx, l.consumerFilter(f.subject(l.cfg.Prefix)), after, func(r Record, _ uint64) error { return fn(r) })
}

// consumerFilter is what a consumer filters on to read subject: nothing when subject is the
// whole stream, which spares the server matching every message against a wildcard.
func (l *Log) consumerFilter(subject string) []string {
	if subject == l.cfg.Prefix+".obj.>" {
		return nil
	}
	return []string{subject}
}

// consume runs an ordered consumer on subjects from after+1, calling fn with each record and
// how many more match after it now, until ctx ends or fn returns an error.
//
// Messages are taken in the consumer's callback (Consume) rather than through its iterator
// (Messages and Next), which arms a timer and passes a channel for every message. The callback
// decodes them and queues them; the goroutine that called consume takes whatever is queued
// whenever it is ready for more and calls fn: fn runs where the caller expects it (a panic
// reaches the caller), never after consume returns, and decoding runs beside it. The callback
// waits while consumeQueue records are queued.
func (l *Log) consume(ctx context.Context, subjects []string, after uint64, fn func(Record, uint64) error) error {
	if l.stream == nil {
		return fmt.Errorf("%w: follow %v: a node reads only its feed", ErrForbidden, subjects)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	cons, err := l.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("eventlog: follow %v: %w", subjects, err)
	}
	// The server would keep the consumer until it has been idle for its inactive threshold;
	// a watch that ends takes its consumer with it.
	defer l.deleteConsumer(ctx, cons)

	type item struct {
		rec     Record
		pending uint64
		err     error // the message is not one of the stream's: the follow ends
	}
	var (
		// mu guards queue. When the ordered consumer resets, a new subscription, on a
		// goroutine of its own, takes over from the old one.
		mu      sync.Mutex
		queue   []item
		ready   = make(chan struct{}, 1) // something was queued
		room    = make(chan struct{}, 1) // the queue was taken
		quit    = make(chan struct{})
		lastErr atomic.Value // the consumer's last reported error, for when it ends by itself
	)
	handle := func(m jetstream.Msg) {
		it := item{}
		if meta, err := m.Metadata(); err != nil {
			it.err = fmt.Errorf("eventlog: follow %v: %w", subjects, err)
		} else {
			it.rec, it.pending = l.decode(meta.Sequence.Stream, m.Subject(), meta.Timestamp, m.Data()), meta.NumPending
		}
		mu.Lock()
		for len(queue) >= consumeQueue {
			mu.Unlock()
			select {
			case <-room:
			case <-quit:
				return
			}
			mu.Lock()
		}
		queue = append(queue, it)
		mu.Unlock()
		select {
		case ready <- struct{}{}:
		default: // already signalled
		}
	}
	cc, err := cons.Consume(handle, jetstream.PullMaxMessages(1024),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { lastErr.Store(err) }))
	if err != nil {
		return fmt.Errorf("eventlog: follow %v: %w", subjects, err)
	}
	defer func() {
		close(quit)
		cc.Stop()
	}()
	closed := cc.Closed()
	var taken []item
	for {
		select {
		case <-ready:
			mu.Lock()
			taken, queue = queue, taken[:0]
			mu.Unlock()
			select {
			case room <- struct{}{}:
			default:
			}
			for _, it := range taken {
				if it.err != nil {
					return it.err
				}
				if err := fn(it.rec, it.pending); err != nil {
					return err
				}
			}
			clear(taken) // let the records go
		case <-ctx.Done():
			return ctx.Err()
		case <-closed:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if l.nc.IsClosed() {
				return fmt.Errorf("%w: follow %v", ErrClosed, subjects)
			}
			err, _ := lastErr.Load().(error)
			return fmt.Errorf("eventlog: follow %v: the consumer ended: %v", subjects, err)
		}
	}
}

// consumeQueue is the most records consume decodes ahead of fn.
const consumeQueue = 1024

func (l *Log) deleteConsumer(ctx context.Context, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := l.stream.DeleteConsumer(ctx, info.Name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, nats.ErrConnectionClosed) {
		// The server drops it by itself once it is idle: report, do not fail the follow.
		l.cfg.Logger.Warn("eventlog: deleting a follow's consumer", "consumer", info.Name, "err", err)
	}
}
