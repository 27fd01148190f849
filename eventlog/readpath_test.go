package eventlog

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logplane/logplane/kinds/kindstest"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// BenchmarkReadPath reads a log of 50,000 realistic pod events (2.3 KB each) five ways, with the
// stream's blocks S2-compressed (the default) and not:
//   - transport: an ordered consumer whose callback does nothing with the messages, as Replay
//     takes them: what the server and the client library cost, the ceiling of any rebuild;
//   - metadata: the same, reading each message's sequence and time (what Replay needs of it);
//   - transport-push: the push-based ordered consumer of nats.go's older JetStream API, doing
//     nothing either: the other way JetStream delivers a stream;
//   - replay: Replay, envelopes decoded (a rebuild without the fold);
//   - direct-get: batched direct gets, envelopes decoded (History, At and short Replays).
//
// Metric: events/s.
func BenchmarkReadPath(b *testing.B) {
	const n = 50_000
	for _, compressed := range []bool{true, false} {
		// Each log is written only when one of its sub-benchmarks runs.
		b.Run(fmt.Sprintf("compressed=%t", compressed), func(b *testing.B) {
			l, err := Open(b.Context(), Config{DataDir: b.TempDir(), Durability: Lazy, NoCompression: !compressed})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(next.Load()), 7))
					for {
						i := next.Add(1)
						if i > n {
							return
						}
						ev := kindstest.PodEvent(b, eventv1.ChangeType_CHANGE_TYPE_ADDED, kindstest.RealisticPod(int(i), rng), eventv1.Encoding_ENCODING_PROTOBUF)
						if _, err := l.Append(b.Context(), ev, AnyRevision); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			rate := func(b *testing.B) { b.ReportMetric(n*float64(b.N)/b.Elapsed().Seconds(), "events/s") }
			for _, meta := range []bool{false, true} {
				name := "read=transport"
				if meta {
					name = "read=metadata"
				}
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						consumeAll(b, l, n, meta)
					}
					rate(b)
				})
			}
			b.Run("read=transport-push", func(b *testing.B) {
				for b.Loop() {
					pushAll(b, l, n)
				}
				rate(b)
			})
			b.Run("read=replay", func(b *testing.B) {
				for b.Loop() {
					c := 0
					if err := l.Replay(b.Context(), Filter{}, 0, 0, func(Record) error { c++; return nil }); err != nil || c != n {
						b.Fatal(c, err)
					}
				}
				rate(b)
			})
			b.Run("read=direct-get", func(b *testing.B) {
				for b.Loop() {
					d, err := l.newDirect()
					if err != nil {
						b.Fatal(err)
					}
					for next := uint64(1); next <= n; {
						got, _, err := d.get(b.Context(), directRequest{Seq: next, Batch: directBatch}, func(r Record) error { return nil })
						if err != nil || got == 0 {
							b.Fatal(got, err)
						}
						next += uint64(got)
					}
					d.close()
				}
				rate(b)
			})
		})
	}
}

// consumeAll reads the log's first n messages with an ordered consumer taken in its callback,
// as consume does, doing nothing with them but (with meta) reading their metadata.
func consumeAll(b *testing.B, l *Log, n int, meta bool) {
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.deleteConsumer(ctx, cons)
	done := make(chan struct{})
	var got int
	var metaErr error
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if meta && metaErr == nil {
			_, metaErr = m.Metadata()
		}
		if got++; got == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(1024))
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatal(ctx.Err())
	}
	cc.Stop()
	if metaErr != nil {
		b.Fatal(metaErr)
	}
}

// pushAll reads the log's first n messages with a push-based ordered consumer, doing nothing
// with them.
func pushAll(b *testing.B, l *Log, n int) {
	js, err := l.nc.JetStream()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	var got int
	sub, err := js.Subscribe(l.cfg.Prefix+".obj.>", func(*nats.Msg) {
		if got++; got == n {
			close(done)
		}
	}, nats.OrderedConsumer(), nats.BindStream(l.cfg.Stream), nats.DeliverAll())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }() // it deletes the consumer
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-b.Context().Done():
		b.Fatal(b.Context().Err())
	}
}
