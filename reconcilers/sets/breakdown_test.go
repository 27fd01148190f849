package sets_test

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// logBreakdown logs how many events of each resource, actor and reason the log holds.
func logBreakdown(tb testing.TB, c *reconcilerstest.Cluster) {
	counts := map[string]int{}
	total := 0
	err := c.Registry.Scan(context.Background(), 0, ^uint64(0), func(rec eventlog.Record) error {
		if rec.Err != nil {
			return nil
		}
		ev := rec.Event
		counts[fmt.Sprintf("%s by %s/%s (%s)", ev.GetRef().GetResource(), ev.GetActor().GetKind(), ev.GetActor().GetName(), ev.GetReason())]++
		total++
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
	for _, k := range keys {
		if counts[k] > 10 {
			tb.Logf("%7d %s", counts[k], k)
		}
	}
	tb.Logf("%7d events in all", total)
}
