package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// attachIO is a task's stdio as seen by attach: output goes to the CRI log
// and to every attached client; stdin, for containers created with Stdin,
// is a pipe that stays open (the process waits for input) until a client
// writes to it, or, with StdinOnce, until the first client detaches. The
// pipe lives in the Runtime's process: when it exits, the process's stdin
// reaches EOF, as a container's does when its attached CRI client goes.
type attachIO struct {
	stdout, stderr io.Writer
	once           bool

	mu      sync.Mutex
	clients map[*attachClient]struct{}
	in      *io.PipeReader // nil without stdin
	inW     *io.PipeWriter
	inUsed  bool // a client has had stdin (StdinOnce)
	closed  bool
}

// attachClient is one attached client. Its output goes through a bounded
// queue drained by a goroutine of its own, so a slow client never holds up
// the container's output or its log; a client that falls 256 writes behind
// is dropped (its attach ends).
type attachClient struct {
	stdout, stderr io.Writer
	queue          chan attachChunk
	gone           chan struct{} // closed when the client is dropped or its writer failed
	goneOnce       sync.Once
}

type attachChunk struct {
	w io.Writer
	p []byte
}

func newAttachClient(stdout, stderr io.Writer) *attachClient {
	c := &attachClient{stdout: stdout, stderr: stderr, queue: make(chan attachChunk, 256), gone: make(chan struct{})}
	go func() {
		for {
			select {
			case ch := <-c.queue:
				if _, err := ch.w.Write(ch.p); err != nil {
					c.drop()
					return
				}
			case <-c.gone:
				return
			}
		}
	}()
	return c
}

func (c *attachClient) drop() { c.goneOnce.Do(func() { close(c.gone) }) }

// send queues p for w, or drops the client when its queue is full.
func (c *attachClient) send(w io.Writer, p []byte) bool {
	select {
	case c.queue <- attachChunk{w: w, p: append([]byte(nil), p...)}:
		return true
	case <-c.gone:
		return false
	default:
		c.drop()
		return false
	}
}

// flush waits (a little) until the client's queue is written.
func (c *attachClient) flush() {
	deadline := time.After(2 * time.Second)
	for len(c.queue) > 0 {
		select {
		case <-c.gone:
			return
		case <-deadline:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func newAttachIO(labels map[string]string, stdout, stderr io.Writer) *attachIO {
	a := &attachIO{once: labels[labelStdinOnce] == "true", clients: map[*attachClient]struct{}{}}
	a.stdout = fanout{a, stdout, func(c *attachClient) io.Writer { return c.stdout }}
	a.stderr = fanout{a, stderr, func(c *attachClient) io.Writer { return c.stderr }}
	if labels[labelStdin] == "true" {
		a.in, a.inW = io.Pipe()
	}
	return a
}

// stdin is the task's stdin stream: nil when the container has none.
func (a *attachIO) stdin() io.Reader {
	if a.in == nil {
		return nil
	}
	return a.in
}

func (a *attachIO) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	if a.inW != nil {
		a.inW.Close() // a pipe's close never fails
	}
	return nil
}

// fanout writes to the log, then queues the bytes for every attached client.
type fanout struct {
	a      *attachIO
	log    io.Writer
	stream func(*attachClient) io.Writer
}

func (f fanout) Write(p []byte) (int, error) {
	n, err := f.log.Write(p)
	f.a.mu.Lock()
	for c := range f.a.clients {
		if w := f.stream(c); w != nil && !c.send(w, p) {
			delete(f.a.clients, c)
		}
	}
	f.a.mu.Unlock()
	return n, err
}

// Attach connects a client to a running container's main process until ctx
// ends or the process exits: its output from now on, its stdin if it was
// created with Stdin, and TTY resizes. The error wraps
// runtimeapi.ErrNotFound when the container is unknown or not running.
func (r *Runtime) Attach(ctx context.Context, id string, opts runtimeapi.AttachOptions) error {
	w, err := r.ensureWatcher(ctx, id)
	if err != nil {
		return err
	}
	if w == nil || w.attach == nil {
		return fmt.Errorf("containerd: container %s is not running: %w", id, runtimeapi.ErrNotFound)
	}
	a := w.attach
	stderr := opts.Stderr
	if opts.TTY {
		stderr = nil
	}
	c := newAttachClient(opts.Stdout, stderr)
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return fmt.Errorf("containerd: container %s has exited: %w", id, runtimeapi.ErrNotFound)
	}
	a.clients[c] = struct{}{}
	withStdin := opts.Stdin != nil && a.inW != nil && !(a.once && a.inUsed)
	if withStdin {
		a.inUsed = true
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.clients, c)
		a.mu.Unlock()
		c.flush() // what the process wrote before it exited reaches the client
		c.drop()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opts.Resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-opts.Resize:
					if !ok {
						return
					}
					// A resize the task refuses (it exited) changes nothing for the client.
					_ = w.task.Resize(ctx, uint32(sz.Width), uint32(sz.Height))
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if withStdin {
		go func() {
			_, err := io.Copy(a.inW, opts.Stdin)
			if a.once && (err == nil || !errors.Is(err, io.ErrClosedPipe)) {
				a.inW.Close() // StdinOnce: the process sees EOF once its client is done
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-w.done:
	case <-c.gone: // the client could not keep up, or went away
	}
	if withStdin && a.once {
		a.inW.Close() // the client went away: StdinOnce ends the input
	}
	return nil
}
