package eventlog_test

import (
	"errors"
	"testing"
	"time"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
)

func TestLeases(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	ls, err := l.Leases(ctx, "test", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ls.Acquire(ctx, "part.1", "replica-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Acquire(ctx, "part.1", "replica-b"); !errors.Is(err, eventlog.ErrHeld) {
		t.Fatalf("second holder: %v, want ErrHeld", err)
	}
	if a, err = ls.Renew(ctx, a); err != nil {
		t.Fatal(err)
	}
	if h, err := ls.Holders(ctx, "part."); err != nil || h["part.1"] != "replica-a" {
		t.Fatalf("holders %v %v", h, err)
	}
	// Not renewed: it expires and another holder gets it; the first has lost it.
	deadline := time.Now().Add(5 * time.Second)
	var b eventlog.Lease
	for {
		b, err = ls.Acquire(ctx, "part.1", "replica-b")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease never expired: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := ls.Renew(ctx, a); !errors.Is(err, eventlog.ErrLost) {
		t.Fatalf("renewing an expired lease: %v, want ErrLost", err)
	}
	if err := ls.Release(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Acquire(ctx, "part.1", "replica-a"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
