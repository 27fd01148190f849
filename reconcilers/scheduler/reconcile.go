package scheduler

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

// pendingPod is what the scheduler remembers of a pod that fit nowhere: when to try it again,
// and what it last reported.
type pendingPod struct {
	key      eventlog.Key
	uid      types.UID
	failures int
	next     time.Time // not tried again before
	message  string    // of the last FailedScheduling event
	eventAt  time.Time // when it was last reported
	// podConstraints: where it may go depends on the pods placed elsewhere (required pod
	// affinity, topology spread constraints), so a pod placed or relabelled may let it in.
	podConstraints bool
}

// Conditions the scheduler sets on pods it cannot bind, as kube-scheduler sets them.
const (
	reasonSchedulingGated  = "SchedulingGated"
	messageSchedulingGated = "Scheduling is blocked due to non-empty scheduling gates"
)

// Reconcile schedules the pod with req.Key if it is pending and this scheduler's to schedule.
func (s *Scheduler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	if err := s.cluster.waitReady(ctx); err != nil {
		return engine.Result{}, err
	}
	key := podKey(req.Key)
	obj, ok := s.store.Get(req.Key)
	if !ok || obj.Fields["spec.nodeName"] != "" || !s.ours(obj.Fields["spec.schedulerName"]) {
		s.dropPending(key)
		return engine.Result{}, nil
	}
	// The cache must have applied the pod's revision, and the change that asked for this
	// reconcile (a node or pod change that woke it).
	if err := s.cluster.waitApplied(ctx, max(obj.Seq, req.Cause)); err != nil {
		return engine.Result{}, err
	}
	pod, err := decodePod(obj)
	if err != nil {
		return engine.Result{}, fmt.Errorf("%w: %v", engine.ErrTerminal, err)
	}
	if pod.DeletionTimestamp != nil || placement.Terminated(pod) {
		s.dropPending(key)
		return engine.Result{}, nil
	}
	if len(pod.Spec.SchedulingGates) > 0 {
		cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: reasonSchedulingGated, Message: messageSchedulingGated}
		return engine.Result{}, s.setCondition(ctx, pod, cond, req.Cause)
	}
	if wait := s.backoffLeft(key, pod.UID); wait > 0 {
		return engine.Result{RequeueAfter: wait}, nil
	}

	start := time.Now()
	pi := placement.NewPod(pod)
	vols, verr := s.volumesOf(pod)
	if verr != nil {
		pi.SetVolumes(verr, nil)
	} else if vols != nil {
		pi.SetVolumes(nil, vols.filter)
	}
	d := s.cluster.schedule(pi)
	if d.Node == "" {
		res, err := s.unschedulable(ctx, req.Key, pod, pi.HasPodConstraints(), d.Err.Error(), req.Cause)
		s.observe(resultUnschedulable, start)
		return res, err
	}
	if err := s.preBind(ctx, vols, d.Node, req.Cause); err != nil {
		s.cluster.forget(key, pod.UID)
		s.observe(resultError, start)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return engine.Result{RequeueAfter: s.cfg.InitialBackoff}, nil
		}
		return engine.Result{}, errorf("binding the volumes of %s on %s: %w", key, d.Node, err)
	}
	if err := s.w.Bind(ctx, pod, d.Node, req.Cause); err != nil {
		s.cluster.forget(key, pod.UID)
		s.stats.bindErrors.Add(1)
		s.observe(resultError, start)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			// Gone, bound by someone else, or recreated: its next revision says what to do.
			return engine.Result{}, nil
		}
		return engine.Result{}, errorf("binding %s to %s: %w", key, d.Node, err)
	}
	s.dropPending(key)
	s.observe(resultScheduled, start)
	s.stats.bound.Add(1)
	s.events.Event(pod, req.Cause, corev1.EventTypeNormal, ReasonScheduled, ScheduledMessage(pod.Namespace, pod.Name, d.Node))
	return engine.Result{}, nil
}

// preBind writes what the pod's volumes need before the pod is bound to node (bindVolumes).
func (s *Scheduler) preBind(ctx context.Context, vols *podVolumes, node string, cause uint64) error {
	if vols == nil || len(vols.unbound) == 0 {
		return nil
	}
	n, ok := s.nodeObject(node)
	if !ok {
		return fmt.Errorf("node %s is not known", node)
	}
	return s.bindVolumes(ctx, vols, n, cause)
}

// observe counts a scheduling attempt that started at start.
func (s *Scheduler) observe(result string, start time.Time) {
	s.metrics.attempts.WithLabelValues(result, s.cfg.Name).Inc()
	s.metrics.duration.WithLabelValues(result, s.cfg.Name).Observe(time.Since(start).Seconds())
}

// ours reports whether a pod with schedulerName is this scheduler's to schedule.
func (s *Scheduler) ours(schedulerName string) bool {
	return schedulerName == "" || schedulerName == s.cfg.Name
}

func decodePod(o *projections.Object) (*corev1.Pod, error) {
	obj, err := o.Decode()
	if err != nil {
		return nil, err
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, errorf("%s decodes to %T, not a Pod", o.Key, obj)
	}
	return p, nil
}

// unschedulable records that pod fits nowhere: PodScheduled False with the message, a
// FailedScheduling event (reported again at most every EventRepeat while the message stays the
// same), and a try again after the back-off.
func (s *Scheduler) unschedulable(ctx context.Context, k eventlog.Key, pod *corev1.Pod, podConstraints bool, msg string, cause uint64) (engine.Result, error) {
	s.stats.unschedulable.Add(1)
	now := s.now()
	key := podKey(k)
	s.mu.Lock()
	pp := s.pending[key]
	if pp == nil || pp.uid != pod.UID {
		s.dropPendingLocked(key)
		pp = &pendingPod{key: k, uid: pod.UID}
		s.pending[key] = pp
	}
	if pp.podConstraints != podConstraints {
		pp.podConstraints = podConstraints
		if podConstraints {
			s.awaitingPods++
		} else {
			s.awaitingPods--
		}
	}
	pp.failures++
	wait := s.backoff(pp.failures)
	pp.next = now.Add(wait)
	report := msg != pp.message || now.Sub(pp.eventAt) >= s.cfg.EventRepeat
	if report {
		pp.message, pp.eventAt = msg, now
	}
	s.mu.Unlock()

	if report {
		s.events.Event(pod, cause, corev1.EventTypeWarning, ReasonFailedScheduling, msg)
	}
	cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg}
	if err := s.setCondition(ctx, pod, cond, cause); err != nil {
		return engine.Result{}, err
	}
	return engine.Result{RequeueAfter: wait}, nil
}

// setCondition writes cond on the pod's status unless the pod has it already.
func (s *Scheduler) setCondition(ctx context.Context, pod *corev1.Pod, cond corev1.PodCondition, cause uint64) error {
	for _, c := range pod.Status.Conditions {
		if c.Type == cond.Type && c.Status == cond.Status && c.Reason == cond.Reason && c.Message == cond.Message {
			return nil
		}
	}
	cond.LastTransitionTime = metav1.NewTime(s.now())
	err := s.w.SetPodCondition(ctx, pod, cond, cause)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone or recreated: its next revision says what to do
	}
	if err != nil {
		return errorf("setting %s=%s on %s/%s: %w", cond.Type, cond.Status, pod.Namespace, pod.Name, err)
	}
	return nil
}

// SetCondition sets cond in status as Kubernetes does (podutil.UpdatePodCondition): the
// transition time changes only when the status does. It reports whether anything changed.
// Writers use it to apply SetPodCondition to the pod's current revision.
func SetCondition(status *corev1.PodStatus, cond corev1.PodCondition) bool {
	for i := range status.Conditions {
		c := &status.Conditions[i]
		if c.Type != cond.Type {
			continue
		}
		if c.Status == cond.Status && c.Reason == cond.Reason && c.Message == cond.Message {
			return false
		}
		if c.Status == cond.Status {
			cond.LastTransitionTime = c.LastTransitionTime
		}
		*c = cond
		return true
	}
	status.Conditions = append(status.Conditions, cond)
	return true
}

// backoff is the wait after the n-th failure in a row: InitialBackoff doubled n-1 times, at most
// MaxBackoff.
func (s *Scheduler) backoff(n int) time.Duration {
	d := s.cfg.InitialBackoff
	for i := 1; i < n && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

// backoffLeft returns how long a pod that fit nowhere must still wait before it is tried again.
func (s *Scheduler) backoffLeft(key string, uid types.UID) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	pp := s.pending[key]
	if pp == nil || pp.uid != uid {
		return 0
	}
	return pp.next.Sub(s.now())
}

func (s *Scheduler) dropPending(key string) {
	s.mu.Lock()
	s.dropPendingLocked(key)
	s.mu.Unlock()
}

func (s *Scheduler) dropPendingLocked(key string) {
	if pp := s.pending[key]; pp != nil && pp.podConstraints {
		s.awaitingPods--
	}
	delete(s.pending, key)
}

func (s *Scheduler) isPending(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[key]
	return ok
}
