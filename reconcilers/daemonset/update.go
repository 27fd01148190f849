package daemonset

// Ported from k8s.io/kubernetes pkg/controller/daemon/update.go (rollingUpdate,
// findUpdatedPodsOnNode, updatedDesiredNodeCounts), v1.34.4; Copyright The Kubernetes Authors,
// Apache License 2.0.

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/logplane/logplane/eventlog"
)

// rollingUpdate deletes old pods, or creates new pods beside them, within maxUnavailable and
// maxSurge; manage replaces what it deletes.
func (c *Controller) rollingUpdate(ctx context.Context, key eventlog.Key, ds *appsv1.DaemonSet, selector labels.Selector, nodes []*corev1.Node, hash string, cause uint64) error {
	nodeToPods, err := c.nodesToDaemonPods(ctx, ds, selector, false, cause)
	if err != nil {
		return fmt.Errorf("daemonset: the pods of %s/%s by node: %w", ds.Namespace, ds.Name, err)
	}
	maxSurge, maxUnavailable, desired, err := updatedDesiredNodeCounts(ds, nodes, nodeToPods)
	if err != nil {
		return fmt.Errorf("daemonset: %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	now := metav1.NewTime(c.clock.Now())
	generation := templateGeneration(ds)
	// Nodes in a fixed order, so that the same picture makes the same choices.
	names := make([]string, 0, len(nodeToPods))
	for n := range nodeToPods {
		names = append(names, n)
	}
	sort.Strings(names)

	if maxSurge == 0 {
		// Without surge: delete just enough old pods to stay within maxUnavailable, and let
		// manage create their replacements. A node with both an old and a new pod, or with
		// none, counts as unavailable; deleted pods do not count, so that updates progress
		// while nodes are down.
		var numUnavailable int
		var replacements, candidates []*corev1.Pod
		for _, name := range names {
			newPod, oldPod, ok := findUpdatedPodsOnNode(nodeToPods[name], hash, generation)
			if !ok {
				numUnavailable++ // excess pods: manage cleans the node up
				continue
			}
			switch {
			case oldPod == nil && newPod == nil, oldPod != nil && newPod != nil:
				numUnavailable++
			case newPod != nil:
				if !isPodAvailable(newPod, ds.Spec.MinReadySeconds, now) {
					numUnavailable++
				}
			default:
				switch {
				case !isPodAvailable(oldPod, ds.Spec.MinReadySeconds, now):
					replacements = append(replacements, oldPod) // unavailable already: replace it
					numUnavailable++
				case numUnavailable >= maxUnavailable:
				default:
					candidates = append(candidates, oldPod)
				}
			}
		}
		remaining := min(max(maxUnavailable-numUnavailable, 0), len(candidates))
		return c.syncNodes(ctx, key, ds, append(replacements, candidates[:remaining]...), nil, hash, cause)
	}

	// With surge: create a new pod beside each unavailable old one, and beside up to maxSurge
	// available old ones; delete an old pod once the new one beside it is available.
	var oldPodsToDelete, shouldNotRunPodsToDelete []*corev1.Pod
	var candidateNewNodes, allowedNewNodes []string
	var numSurge, numAvailable int
	nodeByName := make(map[string]*corev1.Node, len(nodes))
	for _, n := range nodes {
		nodeByName[n.Name] = n
	}
	for _, name := range names {
		newPod, oldPod, ok := findUpdatedPodsOnNode(nodeToPods[name], hash, generation)
		if !ok {
			numSurge++ // excess pods: manage cleans the node up
			continue
		}
		if oldPod != nil {
			if isPodAvailable(oldPod, ds.Spec.MinReadySeconds, now) {
				numAvailable++
			}
		} else if newPod != nil && isPodAvailable(newPod, ds.Spec.MinReadySeconds, now) {
			numAvailable++
		}
		switch {
		case oldPod == nil:
			// manage handles the node
		case newPod == nil:
			shouldRun := false // on a node that is gone (manage deletes its pods)
			if node := nodeByName[name]; node != nil {
				shouldRun, _ = NodeShouldRunDaemonPod(node, ds)
			}
			switch {
			case !isPodAvailable(oldPod, ds.Spec.MinReadySeconds, now):
				if !shouldRun {
					oldPodsToDelete = append(oldPodsToDelete, oldPod)
					continue
				}
				allowedNewNodes = append(allowedNewNodes, name)
			case !shouldRun:
				shouldNotRunPodsToDelete = append(shouldNotRunPodsToDelete, oldPod)
			case numSurge >= maxSurge:
			default:
				candidateNewNodes = append(candidateNewNodes, name)
			}
		default:
			if !isPodAvailable(newPod, ds.Spec.MinReadySeconds, now) {
				numSurge++ // waiting for the new pod
				continue
			}
			oldPodsToDelete = append(oldPodsToDelete, oldPod)
		}
	}
	// With maxSurge the owner expects full availability: a pod of a node that should no longer
	// run one goes only once another node's pod is available.
	if deletable := min(numAvailable-desired, len(shouldNotRunPodsToDelete)); deletable > 0 {
		oldPodsToDelete = append(oldPodsToDelete, shouldNotRunPodsToDelete[:deletable]...)
	}
	remaining := min(max(maxSurge-numSurge, 0), len(candidateNewNodes))
	return c.syncNodes(ctx, key, ds, oldPodsToDelete, append(allowedNewNodes, candidateNewNodes[:remaining]...), hash, cause)
}

// findUpdatedPodsOnNode returns the node's pod of the current template and its old one (not
// being deleted), ok false if it has more than one of either.
func findUpdatedPodsOnNode(pods []*corev1.Pod, hash string, generation *int64) (newPod, oldPod *corev1.Pod, ok bool) {
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if isPodUpdated(p, hash, generation) {
			if newPod != nil {
				return nil, nil, false
			}
			newPod = p
		} else {
			if oldPod != nil {
				return nil, nil, false
			}
			oldPod = p
		}
	}
	return newPod, oldPod, true
}

// updatedDesiredNodeCounts returns maxSurge and maxUnavailable as numbers of pods, and how many
// nodes should run a pod; it adds an empty entry to nodeToPods for each of those nodes that has
// none.
func updatedDesiredNodeCounts(ds *appsv1.DaemonSet, nodes []*corev1.Node, nodeToPods map[string][]*corev1.Pod) (maxSurge, maxUnavailable, desired int, err error) {
	for _, n := range nodes {
		if run, _ := NodeShouldRunDaemonPod(n, ds); !run {
			continue
		}
		desired++
		if _, ok := nodeToPods[n.Name]; !ok {
			nodeToPods[n.Name] = nil
		}
	}
	if maxUnavailable, err = unavailableCount(ds, desired); err != nil {
		return 0, 0, 0, fmt.Errorf("invalid value for MaxUnavailable: %w", err)
	}
	if maxSurge, err = surgeCount(ds, desired); err != nil {
		return 0, 0, 0, fmt.Errorf("invalid value for MaxSurge: %w", err)
	}
	// An impossible configuration (no surge, no unavailability) gets Kubernetes' default of
	// one unavailable pod.
	if desired > 0 && maxUnavailable == 0 && maxSurge == 0 {
		maxUnavailable = 1
	}
	return maxSurge, maxUnavailable, desired, nil
}
