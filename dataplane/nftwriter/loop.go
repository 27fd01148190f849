package nftwriter

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// Loop is the schedule both rule writers keep the kernel in step on, as
// kube-proxy's bounded-frequency runner: a sync at once, then one after
// changes (Kick), at most one per MinSyncPeriod, a full one every
// FullSyncPeriod, and a retry every RetryPeriod after a failure.
type Loop struct {
	Clock                                      clock.Clock
	MinSyncPeriod, FullSyncPeriod, RetryPeriod time.Duration
	// Kick wakes the loop (a buffered channel of one: a send that finds it
	// full is dropped, one sync serves every change before it).
	Kick chan struct{}
	// Sync writes what changed, or everything when a full sync is due; it
	// reports whether it was a full one.
	Sync func(ctx context.Context) (full bool, err error)
	// FullDue marks a full sync due (FullSyncPeriod has passed).
	FullDue func()
	// OnError is told of every failed sync; nil: nothing.
	OnError func(error)
}

// Run runs the loop until ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	full := l.Clock.NewTimer(l.FullSyncPeriod)
	defer full.Stop()
	var retry clock.Timer
	var retryC <-chan time.Time
	var lastEnd time.Time
	select {
	case l.Kick <- struct{}{}:
	default:
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.Kick:
		case <-retryC:
			retryC = nil
		case <-full.C():
			l.FullDue()
		}
		if wait := l.MinSyncPeriod - l.Clock.Since(lastEnd); wait > 0 && !lastEnd.IsZero() {
			t := l.Clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C():
			}
		}
		wasFull, err := l.Sync(ctx)
		lastEnd = l.Clock.Now()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if l.OnError != nil {
				l.OnError(err)
			}
			if retry != nil {
				retry.Stop()
			}
			retry = l.Clock.NewTimer(l.RetryPeriod)
			retryC = retry.C()
			continue
		}
		if wasFull {
			full.Reset(l.FullSyncPeriod)
		}
	}
}
