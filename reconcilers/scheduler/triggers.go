package scheduler

import (
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
)

// wakeInterval is the least time between two wakes of every pod that fit nowhere: a storm of
// deletions (a Deployment scaled down by thousands) wakes them a few times, not once per pod.
const wakeInterval = 200 * time.Millisecond

// podQueued says whether a pod's change queues the pod: a pending pod of ours changed, or a
// pod that fit nowhere changed (to forget it if it is no longer ours to schedule).
func (s *Scheduler) podQueued(ev engine.Event) bool {
	return s.pendingOurs(ev.New) || s.isPending(podKey(ev.Object().Key))
}

// pendingOurs says whether a pod revision waits for this scheduler.
func (s *Scheduler) pendingOurs(o *projections.Object) bool {
	return o != nil && o.Fields["spec.nodeName"] == "" && s.ours(o.Fields["spec.schedulerName"]) && !terminalPhase(o.Fields["status.phase"])
}

// wakes returns every pod that fit nowhere when a node appears or changes in a way that may let
// it in, or when a pod's change may (podMayLetIn). Those are tried again once
// their back-off is over, not before. A wake asked for within wakeInterval of the last one is
// given with the first change of any resource after it.
func (s *Scheduler) wakes(ev engine.Event) []eventlog.Key {
	wake := false
	switch ev.Resource() {
	case podsResource:
		wake = !s.pendingOurs(ev.New) && s.podMayLetIn(ev.Change)
	case nodesResource:
		wake = nodeMayFitMore(ev.Change)
	case claimsResource, volumesResource, classesResource:
		wake = true // a claim, volume or class may let in a pod that waits for its volumes
	}
	return s.wakePending(wake)
}

// podMayLetIn reports whether a pod's change may let in a pod that fit nowhere: a bound pod
// that went away, ended or moved (freeing its room), changed its labels (which anti-affinity
// and spreading select on), or, while some pods wait for other pods (required pod affinity,
// topology spread), a pod that was bound.
func (s *Scheduler) podMayLetIn(c projections.Change) bool {
	bound := func(o *projections.Object) bool {
		return o != nil && o.Fields["spec.nodeName"] != "" && !terminalPhase(o.Fields["status.phase"])
	}
	oldBound, newBound := bound(c.Old), bound(c.New)
	moved := c.Old == nil || c.New == nil || c.New.Fields["spec.nodeName"] != c.Old.Fields["spec.nodeName"]
	freed := oldBound && (!newBound || moved)
	relabelled := oldBound && newBound && !moved && !maps.Equal(c.Old.Labels, c.New.Labels)
	placed := newBound && (!oldBound || moved) && s.awaiting()
	return freed || relabelled || placed
}

// awaiting reports whether a pod that fit nowhere waits for other pods to be placed.
func (s *Scheduler) awaiting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.awaitingPods > 0
}

// wakePending returns the keys of every pod that fit nowhere if a wake is due: asked for now
// (want) or before, and none given in the last wakeInterval. A wake asked for within the
// interval is given with the first change after it.
func (s *Scheduler) wakePending(want bool) []eventlog.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	if want {
		s.wakeDue = true
	}
	if !s.wakeDue {
		return nil
	}
	if len(s.pending) == 0 {
		s.wakeDue = false
		return nil
	}
	now := s.now()
	if now.Sub(s.lastWake) < wakeInterval {
		return nil
	}
	s.lastWake, s.wakeDue = now, false
	out := make([]eventlog.Key, 0, len(s.pending))
	for _, pp := range s.pending {
		out = append(out, pp.key)
	}
	return out
}

// nodeMayFitMore reports whether a node change may let in a pod that did not fit before: a new
// node, or a change of readiness, cordon, taints, labels or allocatable. Heartbeats (condition
// times) and other status changes do not count.
func nodeMayFitMore(c projections.Change) bool {
	if c.New == nil {
		return false
	}
	if c.Old == nil {
		return true
	}
	oldObj, err1 := c.Old.Decode()
	newObj, err2 := c.New.Decode()
	o, ok1 := oldObj.(*corev1.Node)
	n, ok2 := newObj.(*corev1.Node)
	if err1 != nil || err2 != nil || !ok1 || !ok2 {
		return true // cannot tell: look again
	}
	return ready(o) != ready(n) ||
		o.Spec.Unschedulable != n.Spec.Unschedulable ||
		!slices.EqualFunc(o.Spec.Taints, n.Spec.Taints, func(a, b corev1.Taint) bool {
			return a.Key == b.Key && a.Value == b.Value && a.Effect == b.Effect
		}) ||
		!maps.Equal(o.Labels, n.Labels) ||
		!apiequality.Semantic.DeepEqual(o.Status.Allocatable, n.Status.Allocatable) ||
		!apiequality.Semantic.DeepEqual(o.Status.Capacity, n.Status.Capacity)
}

func ready(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}
