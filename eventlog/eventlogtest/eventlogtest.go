// Package eventlogtest starts real logs for tests: an embedded nats-server with JetStream in a
// temporary directory, removed when the test ends. Only tests import it.
package eventlogtest

import (
	"testing"

	"github.com/logplane/logplane/eventlog"
)

// Open returns a Log on a fresh embedded server whose store lives in t.TempDir(). The durability
// is Lazy unless cfg says otherwise through opts; the log is closed when the test ends.
func Open(t testing.TB, opts ...func(*eventlog.Config)) *eventlog.Log {
	t.Helper()
	cfg := eventlog.Config{DataDir: t.TempDir(), Durability: eventlog.Lazy}
	for _, o := range opts {
		o(&cfg)
	}
	l, err := eventlog.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("eventlogtest: open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Durable makes the log use the default durability, group commit.
func Durable(c *eventlog.Config) { c.Durability = eventlog.GroupCommit }
