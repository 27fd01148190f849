package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/containerd/cgroups/stats/v1"
	v2 "github.com/containerd/cgroups/v2/stats"
	client "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/logplane/logplane/dataplane/crilog"
	"github.com/logplane/logplane/dataplane/podnet"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// Exec runs a process in the running container id and returns its exit
// code once it has exited and its output is copied. When ctx ends first the
// process is killed and ctx's error returned.
func (r *Runtime) Exec(ctx context.Context, id string, opts runtimeapi.ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return -1, errors.New("containerd: exec: empty command")
	}
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return -1, notFound("container", id, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return -1, notFound("task of container", id, err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return -1, fmt.Errorf("containerd: exec: spec of %s: %w", id, err)
	}
	pspec := *spec.Process
	pspec.Args = opts.Cmd
	pspec.Terminal = opts.TTY

	var stdin io.Reader
	var proc client.Process
	var closeStdin sync.Once
	doneStdin := func() {
		closeStdin.Do(func() {
			if proc != nil {
				// The process may be gone already; nothing to report then.
				_ = proc.CloseIO(context.WithoutCancel(ctx), client.WithStdinCloser)
			}
		})
	}
	started := make(chan struct{})
	if opts.Stdin != nil {
		stdin = &eofReader{r: opts.Stdin, started: started, onEOF: doneStdin}
	}
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if stdout == stderr {
		// Both streams are copied concurrently: one writer needs a lock.
		stdout = &lockedWriter{w: stdout}
		stderr = stdout
	}
	cioOpts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(filepath.Join(r.cfg.DataDir, "fifo"))}
	if opts.TTY {
		cioOpts = append(cioOpts, cio.WithTerminal)
	}
	execID := "exec-" + newID()[:12]
	proc, err = task.Exec(ctx, execID, &pspec, cio.NewCreator(cioOpts...))
	if err != nil {
		return -1, fmt.Errorf("containerd: exec in %s: %w", id, err)
	}
	defer func() {
		// The exec process is ours to delete; an error only means it is gone.
		_, _ = proc.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
	}()
	statusC, err := proc.Wait(ctx)
	if err != nil {
		return -1, fmt.Errorf("containerd: exec wait: %w", err)
	}
	if err := proc.Start(ctx); err != nil {
		return -1, fmt.Errorf("containerd: exec start: %w", err)
	}
	close(started)
	if opts.Resize != nil {
		go func() {
			for sz := range opts.Resize {
				// A resize of a process that has exited fails; that is fine.
				_ = proc.Resize(ctx, uint32(sz.Width), uint32(sz.Height))
			}
		}()
	}
	// ended kills the process when ctx ended first, and returns ctx's error.
	ended := func() error {
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded // passed, and ctx's timer about to say so
		}
		if err := proc.Kill(context.WithoutCancel(ctx), syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			return errors.Join(cause, fmt.Errorf("containerd: kill exec: %w", err))
		}
		return cause
	}
	// The timeout counts from the start, as containerd's CRI ExecSync does:
	// the exec's setup (RPCs, runc exec) under load is not the command's time.
	var timedOut <-chan time.Time
	if opts.Timeout > 0 {
		t := time.NewTimer(opts.Timeout)
		defer t.Stop()
		timedOut = t.C
	}
	select {
	case <-timedOut:
		if err := proc.Kill(context.WithoutCancel(ctx), syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			return -1, errors.Join(runtimeapi.ErrExecTimeout, fmt.Errorf("containerd: kill exec: %w", err))
		}
		return -1, fmt.Errorf("containerd: exec %q in %s: %w after %s", strings.Join(opts.Cmd, " "), id, runtimeapi.ErrExecTimeout, opts.Timeout)
	case st := <-statusC:
		code, _, err := st.Result()
		if err != nil && contextEnded(ctx) {
			return -1, ended() // the wait ended with ctx, the process did not
		}
		if err != nil {
			return -1, fmt.Errorf("containerd: exec status: %w", err)
		}
		if pio := proc.IO(); pio != nil {
			drained := make(chan struct{})
			go func() { pio.Wait(); close(drained) }()
			select {
			case <-drained:
			case <-time.After(2 * time.Second):
				pio.Cancel()
			}
		}
		return int(code), nil
	case <-ctx.Done():
		return -1, ended()
	}
}

// contextEnded tells whether ctx has ended or its deadline has passed: containerd, which gets
// the deadline with each call, may report it before ctx's own timer has fired.
func contextEnded(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// eofReader closes the process's stdin once the caller's stdin is drained.
type eofReader struct {
	r       io.Reader
	started <-chan struct{}
	onEOF   func()
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, io.EOF) {
		go func() { <-e.started; e.onEOF() }()
	}
	return n, err
}

// Logs copies the log of container id to w (see runtimeapi.LogOptions);
// following ends when ctx ends or the container has exited and its log is drained.
func (r *Runtime) Logs(ctx context.Context, id string, opts runtimeapi.LogOptions, w io.Writer) error {
	st, err := r.ContainerStatus(ctx, id)
	if err != nil {
		return err
	}
	done := func() bool {
		s, err := r.ContainerStatus(ctx, id)
		if err != nil {
			return true
		}
		if s.State != runtimeapi.StateExited {
			return false
		}
		r.mu.Lock()
		_, watching := r.watchers[id] // still draining its output
		r.mu.Unlock()
		return !watching
	}
	return crilog.Read(ctx, st.LogPath, crilog.Options{
		Follow:     opts.Follow,
		TailLines:  opts.TailLines,
		Since:      opts.Since,
		Timestamps: opts.Timestamps,
		LimitBytes: opts.LimitBytes,
		Done:       done,
	}, w)
}

// PortForward returns a connection to port on the loopback of the
// sandbox's network namespace, as `kubectl port-forward` does.
func (r *Runtime) PortForward(ctx context.Context, sandboxID string, port int32) (net.Conn, error) {
	sb, err := r.Sandbox(ctx, sandboxID)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	if sb.HostNetwork {
		// The pod listens in the node's own network namespace.
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("containerd: port-forward to %s: %w", addr, err)
		}
		return c, nil
	}
	return podnet.Dial(ctx, sb.NetNSPath, "tcp", addr)
}

// Stats returns the CPU and memory use of a running container.
func (r *Runtime) Stats(ctx context.Context, id string) (runtimeapi.ContainerStats, error) {
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return runtimeapi.ContainerStats{}, notFound("container", id, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return runtimeapi.ContainerStats{}, notFound("task of container", id, err)
	}
	m, err := task.Metrics(ctx)
	if err != nil {
		return runtimeapi.ContainerStats{}, fmt.Errorf("containerd: metrics of %s: %w", id, err)
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return runtimeapi.ContainerStats{}, fmt.Errorf("containerd: metrics of %s: %w", id, err)
	}
	st := runtimeapi.ContainerStats{ContainerID: id, Timestamp: time.Now()}
	if m.Timestamp != nil {
		st.Timestamp = m.Timestamp.AsTime()
	}
	switch d := data.(type) {
	case *v1.Metrics:
		if d.CPU != nil && d.CPU.Usage != nil {
			st.CPUUsageNanos = d.CPU.Usage.Total
		}
		if d.Memory != nil && d.Memory.Usage != nil {
			st.MemoryUsageBytes = d.Memory.Usage.Usage
			st.MemoryWorkingSetBytes = st.MemoryUsageBytes
			if d.Memory.TotalInactiveFile < st.MemoryWorkingSetBytes {
				st.MemoryWorkingSetBytes -= d.Memory.TotalInactiveFile
			}
		}
	case *v2.Metrics:
		if d.CPU != nil {
			st.CPUUsageNanos = d.CPU.UsageUsec * 1000
		}
		if d.Memory != nil {
			st.MemoryUsageBytes = d.Memory.Usage
			st.MemoryWorkingSetBytes = st.MemoryUsageBytes
			if d.Memory.InactiveFile < st.MemoryWorkingSetBytes {
				st.MemoryWorkingSetBytes -= d.Memory.InactiveFile
			}
		}
	default:
		return st, fmt.Errorf("containerd: metrics of %s: unknown type %T", id, data)
	}
	return st, nil
}

// oomKilled tells whether the kernel's OOM killer killed a process of the
// task's cgroup. It must be asked before the task is deleted (with the task
// goes its cgroup). It reads the cgroup's oom_kill counter through the task's
// metrics, or from the cgroup files when the metrics lack it.
func (r *Runtime) oomKilled(ctx context.Context, task client.Task) bool {
	if m, err := task.Metrics(ctx); err == nil {
		if data, err := typeurl.UnmarshalAny(m.Data); err == nil {
			switch d := data.(type) {
			case *v1.Metrics:
				if d.MemoryOomControl != nil {
					return d.MemoryOomControl.OomKill > 0
				}
			case *v2.Metrics:
				if d.MemoryEvents != nil {
					return d.MemoryEvents.OomKill > 0
				}
			}
		}
	}
	spec, err := task.Spec(ctx)
	if err != nil || spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return false
	}
	cg := spec.Linux.CgroupsPath
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", cg, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup", cg, "memory.events"),
	} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if n, ok := strings.CutPrefix(line, "oom_kill "); ok {
				v, err := strconv.Atoi(strings.TrimSpace(n))
				return err == nil && v > 0
			}
		}
	}
	return false
}
