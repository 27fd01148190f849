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
// Messages are taken in the consumer's callback (Consume) rather than through an iterator
// (Messages and Next), which arms a timer and goes through a channel for every message: on a
// replay that was a tenth of the reader's CPU. fn runs on the subscription's goroutine, under
// mu, so that consume returns only once no call to fn is running or can start.
func (l *Log) consume(ctx context.Context, subjects []string, after uint64, fn func(Record, uint64) error) error {
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

	var (
		mu      sync.Mutex
		done    bool // under mu: no more calls to fn
		ended   = make(chan error, 1)
		lastErr atomic.Value // the consumer's last reported error, for when it ends by itself
	)
	end := func(err error) {
		done = true
		ended <- err // the only send: done is set
	}
	handle := func(m jetstream.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		meta, err := m.Metadata()
		if err != nil {
			end(fmt.Errorf("eventlog: follow %v: %w", subjects, err))
			return
		}
		if err := fn(l.decode(meta.Sequence.Stream, m.Subject(), meta.Timestamp, m.Data()), meta.NumPending); err != nil {
			end(err)
		}
	}
	cc, err := cons.Consume(handle, jetstream.PullMaxMessages(1024),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { lastErr.Store(err) }))
	if err != nil {
		return fmt.Errorf("eventlog: follow %v: %w", subjects, err)
	}
	defer func() {
		cc.Stop()
		mu.Lock() // waits for a call to fn in progress
		done = true
		mu.Unlock()
	}()
	select {
	case err := <-ended:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-cc.Closed():
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if l.nc.IsClosed() {
			return fmt.Errorf("%w: follow %v", ErrClosed, subjects)
		}
		select {
		case err := <-ended: // fn ended it just before
			return err
		default:
		}
		err, _ := lastErr.Load().(error)
		return fmt.Errorf("eventlog: follow %v: the consumer ended: %v", subjects, err)
	}
}

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
