package scheduler

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

// mapChange turns a change into the pods to look at: a pending pod of ours that changed; and
// every pod that fit nowhere when a node appears or changes in a way that may let it in, or when
// a bound pod goes away or ends, freeing its room. Those are tried again once their back-off is
// over, not before.
func (s *Scheduler) mapChange(c projections.Change) []eventlog.Key {
	switch resourceOf(c) {
	case podsResource:
		return s.podChanged(c)
	case nodesResource:
		if nodeMayFitMore(c) {
			return s.pendingKeys()
		}
	}
	return nil
}

func (s *Scheduler) podChanged(c projections.Change) []eventlog.Key {
	bound := func(o *projections.Object) bool {
		return o != nil && o.Fields["spec.nodeName"] != "" && !terminalPhase(o.Fields["status.phase"])
	}
	if n := c.New; n != nil && n.Fields["spec.nodeName"] == "" && s.ours(n.Fields["spec.schedulerName"]) && !terminalPhase(n.Fields["status.phase"]) {
		return []eventlog.Key{n.Key}
	}
	var keys []eventlog.Key
	if bound(c.Old) && (!bound(c.New) || c.New.Fields["spec.nodeName"] != c.Old.Fields["spec.nodeName"]) {
		keys = s.pendingKeys()
	}
	o := c.New
	if o == nil {
		o = c.Old
	}
	if s.isPending(podKey(o.Key)) {
		keys = append(keys, o.Key) // to forget it
	}
	return keys
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
