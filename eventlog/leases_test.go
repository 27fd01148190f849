package eventlog_test

import (
	"errors"
	"net"
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

// TestLeasesAfterServerRestart: a client's leases work again after the server it talks to
// restarts (as the embedded server does with `logplane apiserver`), though the server forgot the
// bucket: held leases are lost, and can be acquired again.
func TestLeasesAfterServerRestart(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	listen := freeAddr(t)
	open := func() *eventlog.Log {
		srv, err := eventlog.Open(ctx, eventlog.Config{DataDir: dir, Listen: listen, Durability: eventlog.Lazy})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := open()
	// A reconciler's credential, which may use its own lease bucket.
	creds := eventlogtest.Credentials(t, srv, eventlog.Identity{Role: eventlog.RoleReconciler, LeaseBuckets: []string{"restart"}})
	client, err := eventlog.Open(ctx, eventlog.Config{URL: "nats://" + listen, Creds: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ls, err := client.Leases(ctx, "restart", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ls.Acquire(ctx, "part.1", "replica-a")
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	srv = open()
	defer srv.Close()
	// The client reconnects; the lease it held went with the server's memory.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = ls.Renew(ctx, a)
		if errors.Is(err, eventlog.ErrLost) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewing a lease the restarted server forgot: %v, want ErrLost", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := ls.Acquire(ctx, "part.1", "replica-b"); err != nil {
		t.Fatalf("acquiring after the restart: %v", err)
	}
	if h, err := ls.Holders(ctx, "part."); err != nil || h["part.1"] != "replica-b" {
		t.Fatalf("holders after the restart: %v %v", h, err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
