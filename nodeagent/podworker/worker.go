package podworker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// Waiting reasons, as Kubernetes reports them.
const (
	ReasonContainerCreating          = "ContainerCreating"
	ReasonPodInitializing            = "PodInitializing"
	ReasonCrashLoopBackOff           = "CrashLoopBackOff"
	ReasonErrImagePull               = "ErrImagePull"
	ReasonImagePullBackOff           = "ImagePullBackOff"
	ReasonErrImageNeverPull          = "ErrImageNeverPull"
	ReasonInvalidImageName           = "InvalidImageName"
	ReasonCreateContainerConfigError = "CreateContainerConfigError"
	ReasonCreateContainerError       = "CreateContainerError"
	ReasonRunContainerError          = "RunContainerError"
)

// worker drives one pod.
type worker struct {
	m    *Manager
	uid  types.UID
	wake chan struct{}

	mu        sync.Mutex // guards desired, forgotten and ctrs (waiters and probes write them)
	desired   *corev1.Pod
	forgotten bool
	killGrace *int64 // set by Manager.Kill: the grace period to stop within
	ctrs      map[string]*ctr

	// hasSandbox is read by the metrics.
	hasSandbox atomic.Bool

	// Owned by the run goroutine.
	adopted     bool
	admitted    bool      // the node's admission checks ran (admit)
	seen        time.Time // when the manager first got the pod
	fresh       bool      // the pod had not started before this agent got it
	seenRunning bool      // the pod has been seen running
	sandbox     *runtimeapi.Sandbox
	sandboxErr  string
	// evictReason and evictMessage are set once the pod has failed on the
	// node's own decision (DeadlineExceeded): its phase is Failed from then on.
	evictReason, evictMessage string
	// stopped: the pod's containers were stopped for its deletion; its phase is then terminal,
	// as the kubelet's for a terminal pod (guarded by mu).
	stopped    bool
	volumesDue time.Time // when configMap and secret volumes are next refreshed
	startTime  *metav1.Time
	lastStatus *corev1.PodStatus
}

// ctr is the observed state of one container of the pod.
type ctr struct {
	name string
	init bool
	// cur is the latest instance, prev the one before (for lastState and
	// logs --previous); nil when there is none.
	cur, prev *runtimeapi.ContainerStatus
	// waitReason and waitMessage explain why the container is not running
	// when it should be (ErrImagePull, CrashLoopBackOff, ...).
	waitReason, waitMessage string

	probeCancel context.CancelFunc
	started     bool      // the startup probe succeeded (or there is none)
	ready       bool      // the readiness probe succeeds (or there is none)
	killReason  string    // a probe asked for a restart
	killing     bool      // a stop is in progress
	pullRetryAt time.Time // when an image pull that failed is tried again
}

func newWorker(m *Manager, pod *corev1.Pod) *worker {
	return &worker{m: m, uid: pod.UID, desired: pod, wake: make(chan struct{}, 1), ctrs: map[string]*ctr{}, seen: m.cfg.Clock.Now()}
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) setDesired(pod *corev1.Pod) {
	w.mu.Lock()
	w.desired = pod
	w.mu.Unlock()
	w.poke()
}

func (w *worker) forget(grace *int64) {
	w.mu.Lock()
	w.forgotten = true
	if grace != nil {
		w.killGrace = grace
	}
	w.mu.Unlock()
	w.poke()
}

func (w *worker) clock() clock.WithTicker { return w.m.cfg.Clock }

func (w *worker) report(err error) {
	if err != nil && w.m.cfg.OnError != nil {
		w.m.cfg.OnError(w.uid, err)
	}
}

func (w *worker) run(ctx context.Context) {
	defer w.stopProbes()
	for {
		next, done := w.sync(ctx)
		if done {
			return
		}
		var timeout <-chan time.Time
		var t clock.Timer
		if next > 0 {
			t = w.clock().NewTimer(next)
			timeout = t.C()
		}
		select {
		case <-w.wake:
		case <-timeout:
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (w *worker) stopProbes() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.ctrs {
		if c.probeCancel != nil {
			c.probeCancel()
			c.probeCancel = nil
		}
	}
}

// sync does one round of driving the pod towards its desired state and
// returns when it wants to be called again (0: when something happens).
func (w *worker) sync(ctx context.Context) (time.Duration, bool) {
	w.mu.Lock()
	pod, forgotten := w.desired, w.forgotten
	w.mu.Unlock()

	if !w.adopted {
		if err := w.adopt(ctx, pod); err != nil {
			w.report(err)
			return time.Second, false
		}
		w.adopted = true
	}
	if !w.admitted {
		w.admit(pod)
	}
	if forgotten || pod.DeletionTimestamp != nil {
		w.mu.Lock()
		if w.killGrace != nil {
			pod = pod.DeepCopy()
			pod.DeletionGracePeriodSeconds = w.killGrace
		}
		w.mu.Unlock()
		if err := w.terminate(ctx, pod); err != nil {
			w.report(err)
			return time.Second, false
		}
		return 0, true
	}

	var requeue time.Duration
	want := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	want(w.checkDeadline(pod))
	if w.evictReason != "" {
		w.killRunning(ctx, pod)
		w.publish(pod)
		return requeue, false
	}
	if w.sandbox == nil {
		if err := w.claimsBound(ctx, pod); err != nil {
			w.event(pod, "", EventWarning, "FailedMount", err.Error())
			w.publish(pod)
			return min(w.m.cfg.BackOff, claimRetry), false
		}
		sb, err := w.m.cfg.Runtime.CreateSandbox(ctx, w.sandboxConfig(pod))
		if err != nil {
			w.sandboxErr = err.Error()
			w.event(pod, "", EventWarning, "FailedCreatePodSandBox", fmt.Sprintf("Failed to create pod sandbox: %v", err))
			w.publish(pod)
			return w.m.cfg.BackOff, false
		}
		w.sandbox, w.sandboxErr = &sb, ""
		w.hasSandbox.Store(true)
		w.m.metrics.startedPods.Inc()
	}

	if !w.terminal(pod) {
		initDone := true
		for i := range pod.Spec.InitContainers {
			spec := &pod.Spec.InitContainers[i]
			done, d := w.syncInit(ctx, pod, spec)
			want(d)
			if !done {
				initDone = false
				break
			}
		}
		if initDone {
			for i := range pod.Spec.Containers {
				want(w.syncContainer(ctx, pod, &pod.Spec.Containers[i], false))
			}
		}
		want(w.refreshVolumes(ctx, pod))
	}
	w.publish(pod)
	return requeue, false
}

// terminal tells whether the pod has reached Succeeded or Failed: then
// nothing is started any more. As in the kubelet, a pod never leaves a
// terminal phase: one its status in the log already has, or an eviction.
func (w *worker) terminal(pod *corev1.Pod) bool {
	if w.evictReason != "" || isTerminal(pod.Status.Phase) {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return isTerminal(w.phaseLocked(pod))
}

func isTerminal(p corev1.PodPhase) bool { return p == corev1.PodSucceeded || p == corev1.PodFailed }

func (w *worker) ctr(name string, init bool) *ctr {
	c, ok := w.ctrs[name]
	if !ok {
		c = &ctr{name: name, init: init}
		w.ctrs[name] = c
	}
	return c
}

// syncInit runs an init container to completion; done is true once it has
// succeeded.
func (w *worker) syncInit(ctx context.Context, pod *corev1.Pod, spec *corev1.Container) (done bool, requeue time.Duration) {
	w.mu.Lock()
	c := w.ctr(spec.Name, true)
	cur := c.cur
	w.mu.Unlock()
	if cur != nil && cur.State == runtimeapi.StateExited && cur.ExitCode == 0 {
		return true, 0
	}
	return false, w.syncContainer(ctx, pod, spec, true)
}

func shouldRestart(policy corev1.RestartPolicy, code int32, init bool) bool {
	switch {
	case init:
		return code != 0 && policy != corev1.RestartPolicyNever
	case policy == corev1.RestartPolicyNever:
		return false
	case policy == corev1.RestartPolicyOnFailure:
		return code != 0
	default:
		return true
	}
}

func (w *worker) backoffKey(name string) string { return string(w.uid) + "/" + name }

// syncContainer starts, restarts or kills one container as needed.
func (w *worker) syncContainer(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, init bool) time.Duration {
	rt := w.m.cfg.Runtime
	w.mu.Lock()
	c := w.ctr(spec.Name, init)
	cur, killReason, killing, waitReason := c.cur, c.killReason, c.killing, c.waitReason
	w.mu.Unlock()

	switch {
	case cur != nil && cur.State == runtimeapi.StateRunning:
		if killing {
			return 0
		}
		reason := killReason
		if reason == "" && cur.Labels[labelSpecHash] != "" && cur.Labels[labelSpecHash] != specHash(spec) {
			reason = fmt.Sprintf("Container %s definition changed, will be restarted", spec.Name)
		}
		if reason != "" {
			w.mu.Lock()
			c.killing = true
			w.mu.Unlock()
			w.event(pod, fieldPath(spec.Name, init), EventNormal, "Killing", reason)
			grace := gracePeriod(pod, nil)
			if killReason != "" {
				grace = probeGrace(pod, spec, killReason)
			}
			go func(id string) {
				if err := w.stopContainer(ctx, pod, spec, init, id, grace); err != nil && ctx.Err() == nil {
					w.report(fmt.Errorf("podworker: stop %s: %w", spec.Name, err))
				}
			}(cur.ID)
		}
		return 0
	case cur != nil && cur.State != runtimeapi.StateExited:
		// Created but never started (a previous agent died in between), or
		// unknown: remove it and start the same attempt anew.
		if err := rt.RemoveContainer(ctx, cur.ID); err != nil {
			w.report(err)
			return time.Second
		}
		w.mu.Lock()
		c.cur = nil
		w.mu.Unlock()
		return w.start(ctx, pod, spec, init, cur.Attempt)
	case cur != nil: // exited
		if !shouldRestart(pod.Spec.RestartPolicy, cur.ExitCode, init) {
			return 0
		}
		if waitReason == ReasonErrImagePull || waitReason == ReasonImagePullBackOff || waitReason == ReasonCreateContainerConfigError ||
			waitReason == ReasonCreateContainerError || waitReason == ReasonErrImageNeverPull {
			// The restart is under way; start retries it after its own back-off.
			return w.start(ctx, pod, spec, init, cur.Attempt+1)
		}
		key := w.backoffKey(spec.Name)
		bo := w.m.backoff
		if bo.IsInBackOffSince(key, cur.FinishedAt) {
			delay := bo.Get(key)
			left := delay - w.clock().Since(cur.FinishedAt)
			if waitReason != ReasonCrashLoopBackOff {
				w.event(pod, fieldPath(spec.Name, init), EventWarning, "BackOff",
					fmt.Sprintf("Back-off restarting failed container %s in pod %s_%s(%s)", spec.Name, pod.Name, pod.Namespace, pod.UID))
			}
			w.mu.Lock()
			c.waitReason = ReasonCrashLoopBackOff
			c.waitMessage = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, spec.Name, pod.Name, pod.Namespace, pod.UID)
			w.mu.Unlock()
			if left <= 0 {
				left = time.Millisecond
			}
			return left
		}
		bo.Next(key, w.clock().Now())
		return w.start(ctx, pod, spec, init, cur.Attempt+1)
	default:
		return w.start(ctx, pod, spec, init, 0)
	}
}

// failStart is setWaiting for a start that failed, counted by the reason.
func (w *worker) failStart(c *ctr, init bool, reason, message string) {
	w.m.metrics.startErrors.WithLabelValues(containerType(init), reason).Inc()
	w.setWaiting(c, reason, message)
}

func (w *worker) setWaiting(c *ctr, reason, message string) {
	w.mu.Lock()
	c.waitReason, c.waitMessage = reason, message
	w.mu.Unlock()
}

// start pulls the image and creates and starts instance attempt of a container.
func (w *worker) start(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, init bool, attempt int) time.Duration {
	rt := w.m.cfg.Runtime
	fp := fieldPath(spec.Name, init)
	w.mu.Lock()
	c := w.ctr(spec.Name, init)
	waitReason := c.waitReason
	w.mu.Unlock()

	// Image.
	ibKey := string(w.uid) + "/" + spec.Image
	ibo := w.m.imageBackoff
	if (waitReason == ReasonErrImagePull || waitReason == ReasonImagePullBackOff) && ibo.IsInBackOffSinceUpdate(ibKey, w.clock().Now()) {
		if waitReason != ReasonImagePullBackOff {
			w.event(pod, fp, EventNormal, "BackOff", fmt.Sprintf("Back-off pulling image %q", spec.Image))
		}
		w.setWaiting(c, ReasonImagePullBackOff, fmt.Sprintf("Back-off pulling image %q", spec.Image))
		w.mu.Lock()
		left := c.pullRetryAt.Sub(w.clock().Now())
		w.mu.Unlock()
		if left <= 0 {
			left = time.Millisecond
		}
		return left
	}
	img, err := w.pull(ctx, pod, spec, fp)
	if err != nil {
		switch {
		case errors.Is(err, runtimeapi.ErrImageNeverPull):
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", spec.Image)
			w.event(pod, fp, EventWarning, ReasonErrImageNeverPull, msg)
			w.failStart(c, init, ReasonErrImageNeverPull, msg)
			return w.m.cfg.BackOff
		case errors.Is(err, runtimeapi.ErrInvalidImageName):
			msg := fmt.Sprintf("Failed to apply default image tag %q: %v", spec.Image, err)
			w.event(pod, fp, EventWarning, "InspectFailed", msg)
			w.failStart(c, init, ReasonInvalidImageName, msg)
			return 0
		default:
			w.event(pod, fp, EventWarning, "Failed", fmt.Sprintf("Failed to pull image %q: %v", spec.Image, err))
			w.event(pod, fp, EventWarning, "Failed", "Error: "+ReasonErrImagePull)
			w.failStart(c, init, ReasonErrImagePull, fmt.Sprintf("Failed to pull image %q: %v", spec.Image, err))
			ibo.Next(ibKey, w.clock().Now())
			w.mu.Lock()
			c.pullRetryAt = w.clock().Now().Add(ibo.Get(ibKey))
			w.mu.Unlock()
			w.poke() // report ErrImagePull, then ImagePullBackOff while waiting
			return 0
		}
	}
	ibo.Reset(ibKey)

	// Configuration: env, volumes, security, resources.
	cfg, err := w.containerConfig(ctx, pod, spec, attempt, img)
	if err != nil {
		w.event(pod, fp, EventWarning, "Failed", "Error: "+err.Error())
		w.failStart(c, init, ReasonCreateContainerConfigError, err.Error())
		return w.m.cfg.BackOff
	}
	cfg.Image = img.Ref
	id, err := rt.CreateContainer(ctx, w.sandbox.ID, cfg)
	if err != nil {
		w.event(pod, fp, EventWarning, "Failed", "Error: "+err.Error())
		w.failStart(c, init, ReasonCreateContainerError, err.Error())
		return w.m.cfg.BackOff
	}
	w.event(pod, fp, EventNormal, "Created", "Created container "+spec.Name)
	if err := rt.StartContainer(ctx, id); err != nil {
		w.event(pod, fp, EventWarning, "Failed", "Error: "+err.Error())
		w.failStart(c, init, ReasonRunContainerError, err.Error())
		if rerr := rt.RemoveContainer(ctx, id); rerr != nil {
			w.report(rerr)
		}
		return w.m.cfg.BackOff
	}
	w.event(pod, fp, EventNormal, "Started", "Started container "+spec.Name)
	w.m.metrics.startedContainers.WithLabelValues(containerType(init)).Inc()
	st, err := rt.ContainerStatus(ctx, id)
	if err != nil {
		w.report(err)
		st = runtimeapi.ContainerStatus{ID: id, Name: spec.Name, Attempt: attempt, State: runtimeapi.StateRunning,
			StartedAt: w.clock().Now(), Image: cfg.Image, ImageID: img.ID, Labels: cfg.Labels}
	}
	st = *withTerminationMessage(ctx, spec, &st) // it may have exited already
	w.mu.Lock()
	old := c.prev
	if c.cur != nil {
		c.prev = c.cur
	}
	c.cur = &st
	c.waitReason, c.waitMessage = "", ""
	c.killReason, c.killing = "", false
	w.mu.Unlock()
	if msg, err := w.postStart(ctx, pod, spec, init, id); err != nil {
		w.m.metrics.startErrors.WithLabelValues(containerType(init), ReasonPostStartHookError).Inc()
		if st, serr := rt.ContainerStatus(ctx, id); serr == nil {
			st := withTerminationMessage(ctx, spec, &st)
			w.mu.Lock()
			c.cur = st
			if shouldRestart(pod.Spec.RestartPolicy, st.ExitCode, init) {
				// As the kubelet's reason cache: shown while it waits to restart.
				c.waitReason, c.waitMessage = ReasonPostStartHookError, msg
			}
			w.mu.Unlock()
		}
	}
	if old != nil && old.ID != id {
		// Only the previous instance is kept, for lastState and logs --previous.
		if err := rt.RemoveContainer(ctx, old.ID); err != nil {
			w.report(err)
		}
	}
	w.watch(ctx, pod, spec, c, st, false)
	return 0
}

// pull makes the image present according to the pull policy, with the
// events Kubernetes records.
func (w *worker) pull(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, fp string) (runtimeapi.Image, error) {
	rt := w.m.cfg.Runtime
	policy := pullPolicy(spec)
	if policy == runtimeapi.PullNever {
		return rt.EnsureImage(ctx, spec.Image, runtimeapi.PullNever)
	}
	if policy == runtimeapi.PullIfNotPresent {
		img, err := rt.EnsureImage(ctx, spec.Image, runtimeapi.PullNever)
		if err == nil {
			w.event(pod, fp, EventNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine", spec.Image))
			return img, nil
		}
		if !errors.Is(err, runtimeapi.ErrImageNeverPull) {
			return img, err
		}
	}
	w.event(pod, fp, EventNormal, "Pulling", fmt.Sprintf("Pulling image %q", spec.Image))
	start := w.clock().Now()
	img, err := rt.EnsureImage(ctx, spec.Image, policy)
	if err != nil {
		return img, err
	}
	d := w.clock().Since(start).Round(time.Millisecond)
	w.event(pod, fp, EventNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q in %s (%s including waiting). Image size: %d bytes.", spec.Image, d, d, img.Size))
	return img, nil
}

// watch starts waiting for the exit of a running instance, and its probes.
func (w *worker) watch(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, c *ctr, st runtimeapi.ContainerStatus, adopted bool) {
	go func() {
		for {
			res, err := w.m.cfg.Runtime.WaitContainer(ctx, st.ID)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				w.report(fmt.Errorf("podworker: wait for %s: %w", spec.Name, err))
				if errors.Is(err, runtimeapi.ErrNotFound) {
					return
				}
				select {
				case <-w.clock().After(time.Second):
					continue
				case <-ctx.Done():
					return
				}
			}
			res = *withTerminationMessage(ctx, spec, &res)
			w.mu.Lock()
			if c.cur != nil && c.cur.ID == st.ID {
				c.cur = &res
				c.ready, c.killing = false, false
				if c.probeCancel != nil {
					c.probeCancel()
					c.probeCancel = nil
				}
			}
			w.mu.Unlock()
			w.poke()
			return
		}
	}()
	w.startProbes(ctx, pod, spec, c, st, adopted)
}

// adopt rebuilds the pod's state from the runtime: its sandbox, and the
// current and previous instance of each container; running ones are watched
// again, not restarted.
func (w *worker) adopt(ctx context.Context, pod *corev1.Pod) error {
	rt := w.m.cfg.Runtime
	w.fresh = pod.Status.StartTime == nil
	if pod.Status.Phase == corev1.PodFailed && (pod.Status.Reason == ReasonDeadlineExceeded || pod.Status.Reason == ReasonSysctlForbidden) {
		w.evictReason, w.evictMessage = pod.Status.Reason, pod.Status.Message
	}
	if pod.Status.StartTime != nil {
		t := *pod.Status.StartTime
		w.startTime = &t
	} else {
		t := metav1.NewTime(w.clock().Now())
		w.startTime = &t
	}
	sbs, err := rt.ListSandboxes(ctx)
	if err != nil {
		return fmt.Errorf("podworker: adopt: %w", err)
	}
	for i := range sbs {
		if sbs[i].PodUID == string(pod.UID) {
			sb := sbs[i]
			w.sandbox = &sb
			w.hasSandbox.Store(true)
		}
	}
	cs, err := rt.ListContainers(ctx, string(pod.UID))
	if err != nil {
		return fmt.Errorf("podworker: adopt: %w", err)
	}
	keep := map[string]bool{}
	specs := allContainers(pod)
	for _, s := range specs {
		cur, prev := latest(cs, s.spec.Name)
		cur, prev = withTerminationMessage(ctx, s.spec, cur), withTerminationMessage(ctx, s.spec, prev)
		w.mu.Lock()
		c := w.ctr(s.spec.Name, s.init)
		c.cur, c.prev = cur, prev
		w.mu.Unlock()
		for _, x := range []*runtimeapi.ContainerStatus{cur, prev} {
			if x != nil {
				keep[x.ID] = true
			}
		}
		if cur != nil && cur.State == runtimeapi.StateRunning {
			if cur.Attempt > 0 {
				// A restart happened before: keep backing off from there.
				w.m.backoff.Next(w.backoffKey(s.spec.Name), cur.StartedAt)
			}
			w.watch(ctx, pod, s.spec, c, *cur, true)
		}
	}
	for _, x := range cs {
		if !keep[x.ID] {
			if err := rt.RemoveContainer(ctx, x.ID); err != nil {
				return fmt.Errorf("podworker: adopt: remove stale container: %w", err)
			}
		}
	}
	return nil
}

type containerSpec struct {
	spec *corev1.Container
	init bool
}

func allContainers(pod *corev1.Pod) []containerSpec {
	var out []containerSpec
	for i := range pod.Spec.InitContainers {
		out = append(out, containerSpec{&pod.Spec.InitContainers[i], true})
	}
	for i := range pod.Spec.Containers {
		out = append(out, containerSpec{&pod.Spec.Containers[i], false})
	}
	return out
}

// terminate stops the pod's containers within its grace period, removes
// them and the sandbox, and tells the sink that the pod is gone.
func (w *worker) terminate(ctx context.Context, pod *corev1.Pod) error {
	rt := w.m.cfg.Runtime
	w.stopProbes()
	grace := gracePeriod(pod, nil)
	var wg sync.WaitGroup
	errs := make([]error, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	for i, s := range allContainers(pod) {
		w.mu.Lock()
		c := w.ctr(s.spec.Name, s.init)
		cur := c.cur
		w.mu.Unlock()
		if cur == nil || cur.State != runtimeapi.StateRunning {
			continue
		}
		w.event(pod, fieldPath(s.spec.Name, s.init), EventNormal, "Killing", "Stopping container "+s.spec.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.stopContainer(ctx, pod, s.spec, s.init, cur.ID, grace); err != nil {
				errs[i] = fmt.Errorf("podworker: stop %s: %w", s.spec.Name, err)
				return
			}
			st, err := rt.ContainerStatus(ctx, cur.ID)
			if err != nil {
				errs[i] = err
				return
			}
			w.mu.Lock()
			if c.cur != nil && c.cur.ID == st.ID {
				c.cur = withTerminationMessage(ctx, s.spec, &st)
				c.ready = false
			}
			w.mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.publish(pod)
	if w.sandbox != nil {
		if err := rt.RemoveSandbox(ctx, w.sandbox.ID); err != nil {
			return fmt.Errorf("podworker: remove sandbox: %w", err)
		}
	} else {
		cs, err := rt.ListContainers(ctx, string(pod.UID))
		if err != nil {
			return err
		}
		for _, c := range cs {
			if err := rt.RemoveContainer(ctx, c.ID); err != nil {
				return err
			}
		}
	}
	if err := unmountVolumes(filepath.Join(w.m.cfg.VolumeDir, string(pod.UID))); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(w.m.cfg.VolumeDir, string(pod.UID))); err != nil {
		return fmt.Errorf("podworker: remove volumes: %w", err)
	}
	for _, s := range allContainers(pod) {
		w.m.backoff.DeleteEntry(w.backoffKey(s.spec.Name))
	}
	w.m.cfg.Status.PodTerminated(pod)
	return nil
}

// gracePeriod is the pod's termination grace period: the deletion's if set,
// else the spec's, else 30s; override (a probe's) wins when set.
func gracePeriod(pod *corev1.Pod, override *int64) time.Duration {
	s := int64(30)
	switch {
	case override != nil:
		s = *override
	case pod.DeletionGracePeriodSeconds != nil:
		s = *pod.DeletionGracePeriodSeconds
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		s = *pod.Spec.TerminationGracePeriodSeconds
	}
	return time.Duration(s) * time.Second
}

func probeGrace(pod *corev1.Pod, spec *corev1.Container, reason string) time.Duration {
	for _, p := range []*corev1.Probe{spec.LivenessProbe, spec.StartupProbe} {
		if p != nil && p.TerminationGracePeriodSeconds != nil {
			return gracePeriod(pod, p.TerminationGracePeriodSeconds)
		}
	}
	return gracePeriod(pod, nil)
}

func fieldPath(name string, init bool) string {
	if init {
		return "spec.initContainers{" + name + "}"
	}
	return "spec.containers{" + name + "}"
}

func (w *worker) event(pod *corev1.Pod, fieldPath, typ, reason, msg string) {
	w.m.cfg.Events.Event(corev1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion, FieldPath: fieldPath,
	}, typ, reason, msg)
}

// publish computes the pod's status and hands it to the sink if it changed.
func (w *worker) publish(pod *corev1.Pod) {
	st := w.status(pod)
	if w.lastStatus != nil && equality.Semantic.DeepEqual(*w.lastStatus, st) {
		return
	}
	w.lastStatus = &st
	if !w.seenRunning && st.Phase == corev1.PodRunning {
		w.seenRunning = true
		if w.fresh {
			w.m.metrics.podStart.Observe(w.clock().Since(w.seen).Seconds())
		}
	}
	w.m.cfg.Status.PodStatus(pod, *st.DeepCopy())
}
