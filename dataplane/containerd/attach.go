package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

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

type attachClient struct {
	stdout, stderr io.Writer
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

// fanout writes to the log, then to the attached clients; a client that
// fails to take its output is dropped, never holding up the container.
type fanout struct {
	a      *attachIO
	log    io.Writer
	stream func(*attachClient) io.Writer
}

func (f fanout) Write(p []byte) (int, error) {
	n, err := f.log.Write(p)
	f.a.mu.Lock()
	for c := range f.a.clients {
		if w := f.stream(c); w != nil {
			if _, werr := w.Write(p); werr != nil {
				delete(f.a.clients, c)
			}
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
	c := &attachClient{stdout: opts.Stdout, stderr: opts.Stderr}
	if opts.TTY {
		c.stderr = nil
	}
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
	}
	if withStdin && a.once {
		a.inW.Close() // the client went away: StdinOnce ends the input
	}
	return nil
}
