package eventlog_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// BenchmarkAppend appends 2 KB events, each a create on a key of its own (so each carries an
// expected-revision header), from 1 and 64 concurrent writers, with the durable default and
// with lazy fsync side by side.
func BenchmarkAppend(b *testing.B) {
	body := strings.Repeat("x", 2048)
	for _, d := range []eventlog.Durability{eventlog.GroupCommit, eventlog.ServerSync, eventlog.Lazy} {
		for _, writers := range []int{1, 64} {
			b.Run(fmt.Sprintf("durability=%s/writers=%d", d, writers), func(b *testing.B) {
				l := eventlogtest.Open(b, func(c *eventlog.Config) { c.Durability = d })
				var next atomic.Int64
				lat := make([][]time.Duration, writers)
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							t0 := time.Now()
							_, err := l.Append(b.Context(), event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "bench", fmt.Sprintf("obj-%d", i), body), eventlog.NoRevision)
							if err != nil {
								b.Error(err)
								return
							}
							lat[w] = append(lat[w], time.Since(t0))
						}
					}()
				}
				wg.Wait()
				el := time.Since(start)
				b.StopTimer()
				all := slices.Concat(lat...)
				slices.Sort(all)
				b.ReportMetric(float64(b.N)/el.Seconds(), "appends/s")
				if len(all) > 0 {
					b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
				}
			})
		}
	}
}
