// Package eventlogtest starts real logs for tests: an embedded nats-server with JetStream in a
// temporary directory, removed when the test ends. Only tests import it.
package eventlogtest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// Listening makes the embedded server accept clients on a random loopback port, so that a test
// can reach it as another process would (see PublishRaw).
func Listening(c *eventlog.Config) { c.Listen = "127.0.0.1:0" }

// PublishRaw writes data as it is on subject into the log's stream, bypassing every check the
// Log makes, as a buggy or hostile client could; it returns the message's sequence. The log
// must have been opened Listening. Tests use it to put what no Log would write into the stream.
func PublishRaw(t testing.TB, l *eventlog.Log, subject string, data []byte) uint64 {
	t.Helper()
	url := l.ClientURL()
	if url == "" {
		t.Fatal("eventlogtest: PublishRaw needs a log opened with Listening")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("eventlogtest: connect %s: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ack, err := js.Publish(ctx, subject, data)
	if err != nil {
		t.Fatalf("eventlogtest: publish to %s: %v", subject, err)
	}
	return ack.Sequence
}
