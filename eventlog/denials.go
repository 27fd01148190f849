package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Denials is the record of refused requests (authorization's 403s), in a stream of its own
// beside the object log, bounded in count, bytes and age and discarding the oldest: a user with
// no rights, refused as fast as they can ask, can neither grow the log nor push out anything but
// older denials. Every API server records into it and follows it, so the audit query of each
// shows the denials of all, across restarts. A record is published without waiting for the
// store: a refusal is answered at once, and one lost in a crash of the server is a record of a
// request that changed nothing.
type Denials struct {
	l      *Log
	stream jetstream.Stream
}

// Bounds of the denial stream.
const (
	DeniedMaxMsgs  = 100_000
	DeniedMaxBytes = 64 << 20
	DeniedMaxAge   = 90 * 24 * time.Hour
	deniedMaxMsg   = 16 << 10
)

func (c *Config) deniedStream() string  { return c.Stream + "_DENIED" }
func (c *Config) deniedSubject() string { return c.Prefix + ".denied" }

// Denials opens (creating if needed) the denial record.
func (l *Log) Denials(ctx context.Context) (*Denials, error) {
	s, err := l.js.Stream(ctx, l.cfg.deniedStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = l.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        l.cfg.deniedStream(),
			Description: "logplane denied requests: the audit record of authorization's refusals, bounded, oldest discarded",
			Subjects:    []string{l.cfg.deniedSubject()},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxMsgs:     DeniedMaxMsgs,
			MaxBytes:    DeniedMaxBytes,
			MaxAge:      DeniedMaxAge,
			MaxMsgSize:  deniedMaxMsg,
			Replicas:    1,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: denial stream: %w", err)
	}
	return &Denials{l: l, stream: s}, nil
}

// Record publishes one denial (at most 16 KiB), without waiting for the store.
func (d *Denials) Record(data []byte) error {
	if len(data) > deniedMaxMsg {
		return fmt.Errorf("%w: a denial of %d bytes", ErrInvalid, len(data))
	}
	if err := d.l.nc.Publish(d.l.cfg.deniedSubject(), data); err != nil {
		return fmt.Errorf("eventlog: recording a denial: %w", err)
	}
	return nil
}

// Follow calls fn with the newest n denials stored, then with each one recorded after, in
// order, until ctx ends.
func (d *Denials) Follow(ctx context.Context, n int, fn func(data []byte)) error {
	info, err := d.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("eventlog: denial stream: %w", err)
	}
	start := max(info.State.FirstSeq, info.State.LastSeq+1-uint64(min(n, int(info.State.LastSeq))))
	cons, err := d.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(start, 1)})
	if err != nil {
		return fmt.Errorf("eventlog: following denials: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { fn(m.Data()) })
	if err != nil {
		return fmt.Errorf("eventlog: following denials: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}
