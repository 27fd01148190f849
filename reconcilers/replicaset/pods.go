package replicaset

import (
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// relatedPods are the active pods of the other replica sets that share this one's controller
// (the other revisions of a Deployment): deleting a pod on a node where they have pods too
// spreads what remains.
func (c *Controller) relatedPods(rs *appsv1.ReplicaSet) []*corev1.Pod {
	owner := metav1.GetControllerOfNoCopy(rs)
	if owner == nil {
		return nil
	}
	var out []*corev1.Pod
	for _, sk := range c.ix.Dependents(owner.UID) {
		if sk.Resource != replicaSetsResource.Resource || sk.Group != replicaSetsResource.Group {
			continue
		}
		m, ok := c.ix.Meta(sk)
		if !ok || m.UID == rs.UID {
			continue
		}
		for _, pk := range c.ix.Dependents(m.UID) {
			if pk.Resource != podsResource.Resource || pk.Group != "" {
				continue
			}
			if obj, ok := c.ix.Object(pk); ok {
				if p, ok := obj.(*corev1.Pod); ok && isActive(p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// podsToDelete picks n of pods to delete, in Kubernetes' order: unscheduled before scheduled,
// pending before unknown before running, not ready before ready, doubled up on a node (with
// related pods) before alone, ready for less time before more, more restarts before fewer,
// newer before older.
func podsToDelete(pods, related []*corev1.Pod, n int) []*corev1.Pod {
	if n >= len(pods) {
		return pods
	}
	onNode := map[string]int{}
	for _, p := range append(append([]*corev1.Pod{}, pods...), related...) {
		if p.Spec.NodeName != "" {
			onNode[p.Spec.NodeName]++
		}
	}
	ranked := rankedPods{pods: append([]*corev1.Pod{}, pods...), rank: make([]int, len(pods))}
	for i, p := range ranked.pods {
		ranked.rank[i] = onNode[p.Spec.NodeName]
	}
	sort.Sort(ranked)
	return ranked.pods[:n]
}

type rankedPods struct {
	pods []*corev1.Pod
	rank []int // pods on the same node, this one included
}

func (r rankedPods) Len() int { return len(r.pods) }
func (r rankedPods) Swap(i, j int) {
	r.pods[i], r.pods[j] = r.pods[j], r.pods[i]
	r.rank[i], r.rank[j] = r.rank[j], r.rank[i]
}

func (r rankedPods) Less(i, j int) bool {
	a, b := r.pods[i], r.pods[j]
	pair := activePods{a, b}
	if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") ||
		phaseOrder[a.Status.Phase] != phaseOrder[b.Status.Phase] ||
		isPodReady(a) != isPodReady(b) {
		return pair.Less(0, 1)
	}
	if r.rank[i] != r.rank[j] {
		return r.rank[i] > r.rank[j]
	}
	return pair.Less(0, 1)
}
