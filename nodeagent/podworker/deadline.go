package podworker

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// The kubelet's activeDeadlineHandler (pkg/kubelet/active_deadline.go): a pod
// active on the node longer than spec.activeDeadlineSeconds fails with this
// reason and message, and its containers are killed.
const (
	ReasonDeadlineExceeded  = "DeadlineExceeded"
	MessageDeadlineExceeded = "Pod was active on the node longer than the specified deadline"
)

// activeDeadline returns how long the pod has left before its active
// deadline, counted from its start time as the kubelet counts it; ok is
// false when it has no deadline or has not started.
func (w *worker) activeDeadline(pod *corev1.Pod) (left time.Duration, ok bool) {
	if pod.Spec.ActiveDeadlineSeconds == nil || w.startTime == nil || w.startTime.IsZero() {
		return 0, false
	}
	allowed := time.Duration(*pod.Spec.ActiveDeadlineSeconds) * time.Second
	return allowed - w.clock().Since(w.startTime.Time), true
}

// checkDeadline evicts the pod once it is past its active deadline (a
// deadline shortened by an update counts at once) and otherwise returns
// when to look again.
func (w *worker) checkDeadline(pod *corev1.Pod) time.Duration {
	if w.evictReason != "" || w.terminal(pod) {
		return 0
	}
	left, ok := w.activeDeadline(pod)
	if !ok {
		return 0
	}
	if left > 0 {
		return left
	}
	w.evictReason, w.evictMessage = ReasonDeadlineExceeded, MessageDeadlineExceeded
	w.event(pod, "", EventNormal, ReasonDeadlineExceeded, MessageDeadlineExceeded)
	return 0
}

// killRunning stops every running container of an evicted pod within the
// pod's grace period, as the kubelet kills a pod that reached a terminal
// phase; the watchers record the exits.
func (w *worker) killRunning(ctx context.Context, pod *corev1.Pod) {
	grace := gracePeriod(pod, nil)
	for _, s := range allContainers(pod) {
		w.mu.Lock()
		c := w.ctr(s.spec.Name, s.init)
		cur, killing := c.cur, c.killing
		if cur != nil && cur.State == runtimeapi.StateRunning && !killing {
			c.killing = true
		}
		w.mu.Unlock()
		if cur == nil || cur.State != runtimeapi.StateRunning || killing {
			continue
		}
		w.event(pod, fieldPath(s.spec.Name, s.init), EventNormal, "Killing", "Stopping container "+s.spec.Name)
		go func(id string, s containerSpec) {
			if err := w.stopContainer(ctx, pod, s.spec, s.init, id, grace); err != nil && ctx.Err() == nil {
				w.report(fmt.Errorf("podworker: stop %s: %w", s.spec.Name, err))
			}
		}(cur.ID, s)
	}
}
