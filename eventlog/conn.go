package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// A request on a NATS connection is at most once across a loss of the connection. nats.go
// drops what it had written to a connection whose server is gone: bytes it was flushing when the
// write failed ("read/write on closed pipe"), and bytes still buffered when it noticed the loss
// and began to reconnect. A JetStream publish that went that way waits for an acknowledgement
// that never comes, until its deadline, while the server (the same one restarted, or another
// of the cluster) is already back and taking writes. That is what a restart of the embedded
// server did to appends in flight (TestAppendsAcrossRestarts).
//
// connWatch follows the connection's state, so that a request learns at once that the
// connection it was sent on was lost while it waited (whileConnected), and can wait for the
// connection to be back (waitUp) and find out what became of it (Log.settle).

// errConnLost is the cause of a request context that whileConnected ended.
var errConnLost = errors.New("eventlog: the connection to the server was lost")

// reconnectGrace bounds how long a request whose connection was lost waits for the connection
// to come back before it fails with ErrUnavailable. The embedded server restarts in tens of
// milliseconds, and clients try again every 250 ms.
const reconnectGrace = 10 * time.Second

type connWatch struct {
	ch chan nats.Status

	mu   sync.Mutex
	lost context.Context // ends at the next loss of the connection, then is replaced
	lose context.CancelCauseFunc
	up   chan struct{} // closed while the connection is up
	done chan struct{} // closed once the connection is closed for good
}

// watchConn follows nc's state from now on. stop ends it.
func watchConn(nc *nats.Conn) *connWatch {
	w := &connWatch{up: make(chan struct{}), done: make(chan struct{})}
	w.lost, w.lose = context.WithCancelCause(context.Background())
	// Status events are sent as they happen, under the connection's lock, on a buffered
	// channel; a loss is never missed: if the buffer were full, the events in it would still
	// end the current lost context when read.
	w.ch = nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	if nc.IsConnected() {
		close(w.up)
	} else {
		w.note(nc.Status())
	}
	go func() {
		for s := range w.ch {
			w.note(s)
		}
	}()
	return w
}

func (w *connWatch) note(s nats.Status) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.done:
		return
	default:
	}
	if s == nats.CONNECTED {
		select {
		case <-w.up:
		default:
			close(w.up)
		}
		return
	}
	// RECONNECTING, DISCONNECTED or CLOSED: whatever was in flight may be lost.
	w.lose(errConnLost)
	w.lost, w.lose = context.WithCancelCause(context.Background())
	select {
	case <-w.up:
		w.up = make(chan struct{})
	default:
	}
	if s == nats.CLOSED {
		w.lose(errConnLost) // a request sent from now on is lost at once
		close(w.done)
	}
}

// stop ends the watch once the connection is closed.
func (w *connWatch) stop(nc *nats.Conn) {
	nc.RemoveStatusListener(w.ch)
	w.note(nats.CLOSED)
}

// whileConnected returns a context that ends with ctx, or with cause errConnLost when the
// connection is lost, and a function to release it. A request sent under it after the call
// either gets its answer or learns that it may have been lost.
func (w *connWatch) whileConnected(ctx context.Context) (context.Context, func()) {
	w.mu.Lock()
	lost := w.lost
	w.mu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(lost, func() { cancel(errConnLost) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

// wasLost reports whether the request made under rctx (from whileConnected on ctx) ended because
// the connection was lost, rather than because ctx ended.
func wasLost(ctx, rctx context.Context) bool {
	return ctx.Err() == nil && errors.Is(context.Cause(rctx), errConnLost)
}

// waitUp returns once the connection is up, ErrClosed if it was closed, ErrUnavailable if it
// is not back within reconnectGrace, or ctx's error.
func (w *connWatch) waitUp(ctx context.Context) error {
	w.mu.Lock()
	up, done := w.up, w.done
	w.mu.Unlock()
	select {
	case <-done:
		return ErrClosed
	case <-up:
		return nil
	default:
	}
	t := time.NewTimer(reconnectGrace)
	defer t.Stop()
	select {
	case <-done:
		return ErrClosed
	case <-up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("eventlog: waiting for the connection to the server to come back: %w", ctx.Err())
	case <-t.C:
		return fmt.Errorf("%w: the connection to the server was lost and is not back after %v", ErrUnavailable, reconnectGrace)
	}
}
