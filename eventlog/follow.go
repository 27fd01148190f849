package eventlog

import (
	"context"
	"errors"
	"fmt"
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
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("eventlog: follow %v: %w", subjects, err)
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		it.Stop()
	}()
	// The server would keep the consumer until it has been idle for its inactive threshold;
	// a watch that ends takes its consumer with it.
	defer l.deleteConsumer(ctx, cons)
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return fmt.Errorf("%w: follow %v", ErrClosed, subjects)
			}
			return fmt.Errorf("eventlog: follow %v: %w", subjects, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("eventlog: follow %v: %w", subjects, err)
		}
		if err := fn(l.decode(meta.Sequence.Stream, m.Subject(), meta.Timestamp, m.Data()), meta.NumPending); err != nil {
			return err
		}
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
