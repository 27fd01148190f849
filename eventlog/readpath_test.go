package eventlog

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkReadPath reads 50,000 events of 2.3 KB from the log three ways, with the stream's
// blocks compressed (the default) and not: Replay (the whole read path, envelopes decoded), an
// ordered consumer that decodes nothing (the transport alone), and batched direct gets (what
// Replay uses for short ranges, History and At). It shows where the ceiling of a rebuild from
// the log is. Metric: events/s.
func BenchmarkReadPath(b *testing.B) {
	const n = 50_000
	for _, compressed := range []bool{true, false} {
		l, err := Open(b.Context(), Config{DataDir: b.TempDir(), Durability: Lazy, NoCompression: !compressed})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		body := strings.Repeat("x", 2300)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > n {
						return
					}
					if _, err := l.Append(b.Context(), benchEvent(fmt.Sprint(i), body), AnyRevision); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		rate := func(b *testing.B) { b.ReportMetric(n*float64(b.N)/b.Elapsed().Seconds(), "events/s") }
		prefix := fmt.Sprintf("compressed=%t/", compressed)
		b.Run(prefix+"read=replay", func(b *testing.B) {
			for b.Loop() {
				c := 0
				if err := l.Replay(b.Context(), Filter{}, 0, 0, func(Record) error { c++; return nil }); err != nil || c != n {
					b.Fatal(c, err)
				}
			}
			rate(b)
		})
		b.Run(prefix+"read=ordered-consumer-raw", func(b *testing.B) {
			for b.Loop() {
				ctx, cancel := context.WithCancel(b.Context())
				cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
				if err != nil {
					b.Fatal(err)
				}
				it, err := cons.Messages(jetstream.PullMaxMessages(1024))
				if err != nil {
					b.Fatal(err)
				}
				for range n {
					if _, err := it.Next(); err != nil {
						b.Fatal(err)
					}
				}
				it.Stop()
				l.deleteConsumer(ctx, cons)
				cancel()
			}
			rate(b)
		})
		b.Run(prefix+"read=direct-get", func(b *testing.B) {
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
	}
}
