package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	client "github.com/containerd/containerd"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	apitask "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/logplane/logplane/dataplane/crilog"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// Labels the runtime keeps on containers beside runtimeapi's.
const (
	labelLogPath    = runtimeapi.LabelPrefix + "log-path"
	labelImage      = runtimeapi.LabelPrefix + "image"
	labelImageID    = runtimeapi.LabelPrefix + "image-id"
	labelTTY        = runtimeapi.LabelPrefix + "tty"
	labelStdin      = runtimeapi.LabelPrefix + "stdin"      // "true": the process's stdin stays open for attach
	labelStdinOnce  = runtimeapi.LabelPrefix + "stdin.once" // "true": closed when the first attach ends
	labelStartedAt  = runtimeapi.LabelPrefix + "started-at"
	labelFinishedAt = runtimeapi.LabelPrefix + "finished-at"
	labelExitCode   = runtimeapi.LabelPrefix + "exit-code"
	labelReason     = runtimeapi.LabelPrefix + "reason"
	labelMessage    = runtimeapi.LabelPrefix + "message"
)

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b)
}

// CreateContainer creates a container in the sandbox from cfg; the image must
// be present (EnsureImage). It returns the container's ID.
func (r *Runtime) CreateContainer(ctx context.Context, sandboxID string, cfg runtimeapi.ContainerConfig) (string, error) {
	sb, err := r.Sandbox(ctx, sandboxID)
	if err != nil {
		return "", err
	}
	img, err := r.getImage(ctx, cfg.Image)
	if err != nil {
		return "", err
	}
	if err := r.ensureUnpacked(ctx, img); err != nil {
		return "", err
	}
	ic, err := r.imageConfig(ctx, img)
	if err != nil {
		return "", err
	}
	args := cfg.Command
	if len(args) == 0 {
		args = ic.Entrypoint
		if len(cfg.Args) == 0 {
			args = append(slicesClone(args), ic.Cmd...)
		}
	}
	args = append(slicesClone(args), cfg.Args...)
	if len(args) == 0 {
		return "", fmt.Errorf("containerd: container %s: no command and the image has none", cfg.Name)
	}

	id := newID()
	logDir := filepath.Join(r.podLogDir(sb), cfg.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return "", fmt.Errorf("containerd: log dir: %w", err)
	}
	logPath := filepath.Join(logDir, strconv.Itoa(cfg.Attempt)+".log")

	// The sandbox's files are read-only with a read-only root filesystem, as
	// the CRI plugin mounts them (containerMounts).
	ro := cfg.Security.ReadonlyRootfs
	mounts := []specs.Mount{
		bind(filepath.Join(sb.Dir, "hosts"), "/etc/hosts", ro),
		bind(filepath.Join(sb.Dir, "hostname"), "/etc/hostname", ro),
		bind(filepath.Join(sb.Dir, "resolv.conf"), "/etc/resolv.conf", ro),
	}
	for _, m := range cfg.Mounts {
		mounts = append(mounts, bind(m.HostPath, m.ContainerPath, m.ReadOnly))
	}
	mounts = withoutShadowed(mounts)
	security, err := securityOpts(cfg.Security, ic.User)
	if err != nil {
		return "", fmt.Errorf("containerd: container %s: %w", cfg.Name, err)
	}
	specOpts := []oci.SpecOpts{
		withImageDefaults(ic),
		oci.WithProcessArgs(args...),
		oci.WithEnv(cfg.Env),
		oci.WithHostname(sb.Hostname),
		oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNSPath}),
		oci.WithMounts(mounts),
	}
	specOpts = append(specOpts, podNamespaceOpts(sb)...)
	if cfg.WorkingDir != "" {
		specOpts = append(specOpts, oci.WithProcessCwd(cfg.WorkingDir))
	}
	if cfg.TTY {
		specOpts = append(specOpts, oci.WithTTY)
	}
	if l := cfg.Resources.MemoryLimitBytes; l > 0 {
		specOpts = append(specOpts, oci.WithMemoryLimit(uint64(l)))
	}
	if l := cfg.Resources.CPULimitMilli; l > 0 {
		const period = 100000
		quota := l * period / 1000
		if quota < 1000 {
			quota = 1000
		}
		specOpts = append(specOpts, oci.WithCPUCFS(quota, period))
	}
	if req := cfg.Resources.CPURequestMilli; req > 0 {
		shares := uint64(req * 1024 / 1000)
		if shares < 2 {
			shares = 2
		}
		specOpts = append(specOpts, oci.WithCPUShares(shares))
	}
	var user specs.User
	specOpts = append(append(specOpts, security...), captureUser(&user))

	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, map[string]string{
		runtimeapi.LabelPodUID:        sb.PodUID,
		runtimeapi.LabelPodName:       sb.PodName,
		runtimeapi.LabelPodNamespace:  sb.PodNamespace,
		runtimeapi.LabelSandboxID:     sb.ID,
		runtimeapi.LabelContainerName: cfg.Name,
		runtimeapi.LabelAttempt:       strconv.Itoa(cfg.Attempt),
		labelLogPath:                  logPath,
		labelImage:                    cfg.Image,
		labelImageID:                  imageID(img),
		labelTTY:                      strconv.FormatBool(cfg.TTY),
		labelStdin:                    strconv.FormatBool(cfg.Stdin),
		labelStdinOnce:                strconv.FormatBool(cfg.StdinOnce),
	})
	var ropts any
	if r.cfg.RuncRoot != "" {
		ropts = &runcoptions.Options{Root: r.cfg.RuncRoot}
	}
	_, err = r.client.NewContainer(ctx, id,
		client.WithImage(img),
		client.WithSnapshotter(r.cfg.Snapshotter),
		client.WithNewSnapshot(id, img),
		client.WithRuntime(r.cfg.Shim, ropts),
		client.WithNewSpec(specOpts...),
		client.WithContainerLabels(labels),
		withUserLabel(&user),
	)
	if err != nil {
		return "", fmt.Errorf("containerd: create container %s: %w", cfg.Name, err)
	}
	return id, nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

func bind(src, dst string, ro bool) specs.Mount {
	opts := []string{"rbind", "rprivate"}
	if ro {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	return specs.Mount{Source: src, Destination: dst, Type: "bind", Options: opts}
}

// watcher waits for the exit of one started container and records it.
type watcher struct {
	id      string
	task    client.Task
	io      cio.IO
	closers []func() error
	done    chan struct{}
	err     error     // set before done is closed
	attach  *attachIO // the task's stdio as attach sees it
	// stopWait ends the task.Wait of an adopted task once its exit is seen.
	stopWait context.CancelFunc
}

// streams opens the container's log for appending and returns the stdout
// and stderr writers of the CRI log file, and how to close them.
func openLog(path string) (stdout, stderr *crilog.StreamWriter, closers []func() error, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("containerd: open log: %w", err)
	}
	lf := crilog.NewFile(f, nil)
	stdout, stderr = lf.Stream(crilog.Stdout), lf.Stream(crilog.Stderr)
	return stdout, stderr, []func() error{stdout.Close, stderr.Close, f.Close}, nil
}

// StartContainer starts a created container.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return notFound("container", id, err)
	}
	info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return notFound("container", id, err)
	}
	stdout, stderr, closers, err := openLog(info.Labels[labelLogPath])
	if err != nil {
		return err
	}
	closeAll := func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	att := newAttachIO(info.Labels, stdout, stderr)
	closers = append(closers, att.close) // closeAll sees it too
	opts := []cio.Opt{cio.WithStreams(att.stdin(), att.stdout, att.stderr), cio.WithFIFODir(r.cfg.FIFODir)}
	if info.Labels[labelTTY] == "true" {
		opts = append(opts, cio.WithTerminal)
	}
	task, err := c.NewTask(ctx, cio.NewCreator(opts...))
	if err != nil {
		return errors.Join(fmt.Errorf("containerd: create task %s: %w", id, err), closeAll())
	}
	statusC, err := task.Wait(r.ctx)
	if err == nil {
		err = task.Start(ctx)
	}
	if err != nil {
		_, derr := task.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
		return errors.Join(fmt.Errorf("containerd: start %s: %w", id, err), derr, closeAll())
	}
	if _, err := c.SetLabels(ctx, map[string]string{labelStartedAt: time.Now().UTC().Format(time.RFC3339Nano)}); err != nil {
		return fmt.Errorf("containerd: label %s: %w", id, err)
	}
	w := &watcher{id: id, task: task, io: task.IO(), closers: closers, done: make(chan struct{}), attach: att}
	r.mu.Lock()
	r.watchers[id] = w
	r.mu.Unlock()
	r.wg.Add(1)
	go r.watch(w, statusC)
	return nil
}

// ensureWatcher returns the watcher of a started container, attaching to its
// task if this Runtime did not start it (adoption). It returns nil when the
// container has no task: never started, or exited and recorded. Concurrent
// calls for one container share one attach; r.mu is not held during it, so
// containers are attached (and stopped, and removed) in parallel.
func (r *Runtime) ensureWatcher(ctx context.Context, id string) (*watcher, error) {
	r.mu.Lock()
	w := r.watchers[id]
	r.mu.Unlock()
	if w != nil {
		return w, nil
	}
	// The attach outlives a caller that gives up: the others share it.
	ch := r.attaching.DoChan(id, func() (any, error) {
		return r.attachWatcher(context.WithoutCancel(ctx), id)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		w, _ := res.Val.(*watcher) // nil: no task
		return w, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// attachWatcher attaches to the task of container id and starts its watcher,
// unless a watcher appeared meanwhile (StartContainer's): then it is that one.
func (r *Runtime) attachWatcher(ctx context.Context, id string) (*watcher, error) {
	r.mu.Lock()
	w := r.watchers[id]
	r.mu.Unlock()
	if w != nil {
		return w, nil
	}
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, notFound("container", id, err)
	}
	info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return nil, notFound("container", id, err)
	}
	if info.Labels[labelFinishedAt] != "" {
		return nil, nil
	}
	stdout, stderr, closers, err := openLog(info.Labels[labelLogPath])
	if err != nil {
		return nil, err
	}
	att := newAttachIO(info.Labels, stdout, stderr)
	closers = append(closers, att.close)
	opts := []cio.Opt{cio.WithStreams(att.stdin(), att.stdout, att.stderr)}
	if info.Labels[labelTTY] == "true" {
		opts = append(opts, cio.WithTerminal)
	}
	task, err := c.Task(ctx, cio.NewAttach(opts...))
	if err != nil && !errdefs.IsNotFound(err) {
		// The FIFOs may be gone (a data directory lost): go on without logs.
		task, err = c.Task(ctx, nil)
	}
	if err != nil {
		for _, c := range closers {
			c() // nothing was written; a close error changes nothing
		}
		if errdefs.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("containerd: attach %s: %w", id, err)
	}
	waitCtx, stopWait := context.WithCancel(r.ctx)
	statusC, err := task.Wait(waitCtx)
	if err != nil {
		stopWait()
		return nil, fmt.Errorf("containerd: wait %s: %w", id, err)
	}
	w = &watcher{id: id, task: task, io: task.IO(), closers: closers, done: make(chan struct{}), attach: att, stopWait: stopWait}
	r.mu.Lock()
	if other := r.watchers[id]; other != nil {
		r.mu.Unlock()
		// Started by this Runtime while we attached: its watcher owns the task.
		stopWait()
		if w.io != nil {
			w.io.Cancel()
			w.io.Close() // the FIFOs stay; the other watcher has them open
		}
		for _, c := range closers {
			c() // nothing was written; a close error changes nothing
		}
		return other, nil
	}
	r.watchers[id] = w
	r.wg.Add(1)
	r.mu.Unlock()
	go r.watch(w, statusC)
	return w, nil
}

func (r *Runtime) watch(w *watcher, statusC <-chan client.ExitStatus) {
	defer r.wg.Done()
	var st client.ExitStatus
	select {
	case st = <-statusC:
	case <-r.ctx.Done():
		// The Runtime is closing: leave the task to the next Runtime.
		if w.io != nil {
			w.io.Cancel()
			w.io.Close() // the FIFOs stay for the next Runtime to attach to
		}
		w.err = fmt.Errorf("containerd: runtime closed while waiting for %s: %w", w.id, r.ctx.Err())
		r.forget(w)
		return
	}
	w.err = r.finish(w, st)
	r.forget(w)
}

func (r *Runtime) forget(w *watcher) {
	r.mu.Lock()
	delete(r.watchers, w.id)
	r.mu.Unlock()
	if w.stopWait != nil {
		w.stopWait()
	}
	close(w.done)
}

// finish records the exit of a container in its labels, drains and closes
// its log, and deletes its task (which ends its shim).
func (r *Runtime) finish(w *watcher, st client.ExitStatus) error {
	ctx := r.ctx
	code, exitedAt, err := st.Result()
	if err != nil {
		return fmt.Errorf("containerd: exit status of %s: %w", w.id, err)
	}
	oom := r.oomKilled(ctx, w.task)
	if w.io != nil {
		drained := make(chan struct{})
		go func() { w.io.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(2 * time.Second):
			w.io.Cancel()
		}
	}
	var errs []error
	for _, c := range w.closers {
		errs = append(errs, c())
	}
	reason := runtimeapi.ReasonError
	switch {
	case oom:
		reason = runtimeapi.ReasonOOMKilled
	case code == 0:
		reason = runtimeapi.ReasonCompleted
	}
	if exitedAt.IsZero() {
		exitedAt = time.Now()
	}
	c, err := r.client.LoadContainer(ctx, w.id)
	if err != nil {
		return errors.Join(append(errs, notFound("container", w.id, err))...)
	}
	if _, err := c.SetLabels(ctx, map[string]string{
		labelFinishedAt: exitedAt.UTC().Format(time.RFC3339Nano),
		labelExitCode:   strconv.FormatUint(uint64(code), 10),
		labelReason:     reason,
	}); err != nil {
		errs = append(errs, fmt.Errorf("containerd: record exit of %s: %w", w.id, err))
	}
	if _, err := w.task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		// Another client (an older Runtime still open) may have deleted it first.
		if _, terr := c.Task(ctx, nil); !errdefs.IsNotFound(terr) {
			errs = append(errs, fmt.Errorf("containerd: delete task %s: %w", w.id, err))
		}
	}
	return errors.Join(errs...)
}

// WaitContainer blocks until the started container id has exited, then
// returns its status. A container that is not running (never started, or
// already exited) returns its status at once.
func (r *Runtime) WaitContainer(ctx context.Context, id string) (runtimeapi.ContainerStatus, error) {
	w, err := r.ensureWatcher(ctx, id)
	if err != nil {
		return runtimeapi.ContainerStatus{}, err
	}
	if w != nil {
		select {
		case <-w.done:
			if w.err != nil {
				return runtimeapi.ContainerStatus{}, w.err
			}
		case <-ctx.Done():
			return runtimeapi.ContainerStatus{}, ctx.Err()
		}
	}
	return r.ContainerStatus(ctx, id)
}

// StopContainer stops a running container: SIGTERM, then SIGKILL once grace
// has passed (at once if grace <= 0). It returns when the container has
// exited. Stopping a container that is not running succeeds.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	w, err := r.ensureWatcher(ctx, id)
	if err != nil || w == nil {
		return err
	}
	if grace > 0 {
		if err := w.task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("containerd: SIGTERM %s: %w", id, err)
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-w.done:
			return w.err
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := w.task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: SIGKILL %s: %w", id, err)
	}
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RemoveContainer kills the container if it runs, then removes it, its
// snapshot and its log. Removing a container that is gone succeeds.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("containerd: load %s: %w", id, err)
	}
	var stopErr error
	if err := r.StopContainer(ctx, id, 0); err != nil && !errors.Is(err, runtimeapi.ErrNotFound) {
		stopErr = err
	}
	if t, err := c.Task(ctx, nil); err == nil {
		if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return errors.Join(stopErr, fmt.Errorf("containerd: delete task %s: %w", id, err))
		}
	}
	info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return errors.Join(stopErr, notFound("container", id, err))
	}
	if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: delete container %s: %w", id, err)
	}
	if p := info.Labels[labelLogPath]; p != "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("containerd: remove log: %w", err)
		}
	}
	return nil
}

// ContainerStatus returns the status of one container. If it is not known,
// the error wraps runtimeapi.ErrNotFound.
func (r *Runtime) ContainerStatus(ctx context.Context, id string) (runtimeapi.ContainerStatus, error) {
	c, err := r.client.ContainerService().Get(ctx, id)
	if err != nil {
		return runtimeapi.ContainerStatus{}, notFound("container", id, err)
	}
	var proc *apitask.Process
	if c.Labels[labelFinishedAt] == "" {
		resp, err := r.client.TaskService().Get(ctx, &tasksapi.GetRequest{ContainerID: id})
		switch {
		case err == nil:
			proc = resp.Process
		case !errdefs.IsNotFound(errdefs.FromGRPC(err)):
			return runtimeapi.ContainerStatus{}, fmt.Errorf("containerd: task of %s: %w", id, err)
		}
	}
	if proc != nil && proc.Status == apitask.Status_STOPPED {
		// Exited but not recorded yet: let the watcher record it (OOM or
		// not) so that no caller sees an exit without its reason.
		return r.WaitContainer(ctx, id)
	}
	return statusOf(c, proc), nil
}

// ListContainers returns the status of the containers of the pod with the
// given UID, or of all the runtime's containers if podUID is empty.
func (r *Runtime) ListContainers(ctx context.Context, podUID string) ([]runtimeapi.ContainerStatus, error) {
	var filters []string
	if podUID != "" {
		filters = append(filters, fmt.Sprintf("labels.%q==%q", runtimeapi.LabelPodUID, podUID))
	}
	cs, err := r.client.ContainerService().List(ctx, filters...)
	if err != nil {
		return nil, fmt.Errorf("containerd: list containers: %w", err)
	}
	resp, err := r.client.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("containerd: list tasks: %w", err)
	}
	procs := map[string]*apitask.Process{}
	for _, p := range resp.Tasks {
		procs[p.ID] = p
	}
	out := make([]runtimeapi.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		if c.Labels[runtimeapi.LabelPodUID] == "" {
			continue // not ours
		}
		if p := procs[c.ID]; p != nil && p.Status == apitask.Status_STOPPED && c.Labels[labelFinishedAt] == "" {
			st, err := r.WaitContainer(ctx, c.ID) // see ContainerStatus
			if err != nil {
				return nil, err
			}
			out = append(out, st)
			continue
		}
		out = append(out, statusOf(c, procs[c.ID]))
	}
	return out, nil
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{} // absent or unreadable: not reached
	}
	return t
}

func statusOf(c containers.Container, proc *apitask.Process) runtimeapi.ContainerStatus {
	attempt, _ := strconv.Atoi(c.Labels[runtimeapi.LabelAttempt]) // our own label; 0 if absent
	st := runtimeapi.ContainerStatus{
		ID:        c.ID,
		SandboxID: c.Labels[runtimeapi.LabelSandboxID],
		PodUID:    c.Labels[runtimeapi.LabelPodUID],
		Name:      c.Labels[runtimeapi.LabelContainerName],
		Attempt:   attempt,
		Image:     c.Labels[labelImage],
		ImageID:   c.Labels[labelImageID],
		CreatedAt: c.CreatedAt,
		StartedAt: parseTime(c.Labels[labelStartedAt]),
		LogPath:   c.Labels[labelLogPath],
		Labels:    c.Labels,
		User:      parseUserLabel(c.Labels[labelUser]),
		State:     runtimeapi.StateCreated,
	}
	if f := c.Labels[labelFinishedAt]; f != "" {
		code, _ := strconv.ParseInt(c.Labels[labelExitCode], 10, 32) // written by finish
		st.State, st.FinishedAt, st.ExitCode = runtimeapi.StateExited, parseTime(f), int32(code)
		st.Reason, st.Message = c.Labels[labelReason], c.Labels[labelMessage]
		return st
	}
	switch {
	case proc == nil && !st.StartedAt.IsZero():
		// Started, but its task is gone unrecorded (containerd or the machine restarted).
		st.State, st.ExitCode, st.Reason = runtimeapi.StateExited, 255, runtimeapi.ReasonError
		st.Message = "container state lost: its task is gone"
		st.FinishedAt = st.StartedAt
	case proc == nil:
	case proc.Status == apitask.Status_RUNNING || proc.Status == apitask.Status_PAUSED || proc.Status == apitask.Status_PAUSING:
		st.State = runtimeapi.StateRunning
	case proc.Status == apitask.Status_STOPPED:
		st.State, st.ExitCode = runtimeapi.StateExited, int32(proc.ExitStatus)
		st.Reason = runtimeapi.ReasonError
		if proc.ExitStatus == 0 {
			st.Reason = runtimeapi.ReasonCompleted
		}
		if proc.ExitedAt != nil {
			st.FinishedAt = proc.ExitedAt.AsTime()
		}
	case proc.Status == apitask.Status_CREATED:
	default:
		st.State = runtimeapi.StateUnknown
	}
	return st
}
