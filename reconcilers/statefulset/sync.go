package statefulset

// Ported from k8s.io/kubernetes pkg/controller/statefulset/stateful_set_control.go and
// stateful_set.go (Copyright The Kubernetes Authors, Apache License 2.0); Parallel runs every
// pod at once (bounded) instead of in slow-start batches.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/history"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/ownerref"
	"github.com/logplane/logplane/registry"
)

func (c *Controller) reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	obj, ok := c.ix.Object(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	set, ok := obj.(*appsv1.StatefulSet)
	if !ok {
		return engine.Result{}, fmt.Errorf("%w: statefulsets decode to %T", engine.ErrTerminal, obj)
	}
	selector, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil || selector.Empty() {
		return engine.Result{}, fmt.Errorf("%w: statefulset %s/%s has an invalid selector: %v", engine.ErrTerminal, set.Namespace, set.Name, err)
	}
	cause := req.Cause
	if m, ok := c.ix.Meta(req.Key); ok && m.SpecSeq > 0 {
		cause = m.SpecSeq
	}
	h := c.history.WithCause(cause)
	if err := c.adoptOrphanRevisions(ctx, h, set, selector); err != nil {
		return engine.Result{}, err
	}
	pods, err := c.claimPods(ctx, set, selector, cause)
	if err != nil {
		return engine.Result{}, err
	}
	status, err := c.updateStatefulSetAll(ctx, h, set, pods, cause)
	if err != nil {
		return engine.Result{}, err
	}
	// Look again once the ready pods have been ready for minReadySeconds.
	if status != nil && set.Spec.MinReadySeconds > 0 && status.ReadyReplicas != status.AvailableReplicas {
		return engine.Result{RequeueAfter: time.Duration(set.Spec.MinReadySeconds) * time.Second}, nil
	}
	return engine.Result{}, nil
}

// adoptOrphanRevisions adopts the revisions without a controller that the set's selector matches.
func (c *Controller) adoptOrphanRevisions(ctx context.Context, h *history.History, set *appsv1.StatefulSet, selector labels.Selector) error {
	if set.DeletionTimestamp != nil {
		return nil
	}
	revisions, err := h.ListControllerRevisions(set, selector)
	if err != nil {
		return err
	}
	for _, r := range revisions {
		if metav1.GetControllerOfNoCopy(r) == nil {
			if _, err := h.AdoptControllerRevision(ctx, set, controllerKind, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// claimPods returns the pods the set controls, once it has adopted the orphans that its selector
// matches and whose names are of the set, and released those that no longer match.
func (c *Controller) claimPods(ctx context.Context, set *appsv1.StatefulSet, selector labels.Selector, cause uint64) ([]*corev1.Pod, error) {
	isMember := func(p *corev1.Pod) bool { return isMemberOf(set, p) }
	match := func(p *corev1.Pod) bool { return selector.Matches(labels.Set(p.Labels)) && isMember(p) }
	var claimed []*corev1.Pod
	var errs []error
	for _, p := range informer.Controlled[*corev1.Pod](c.ix, podsResource, set.UID) {
		if match(p) {
			claimed = append(claimed, p)
		} else if set.DeletionTimestamp == nil {
			if err := ownerref.Release(ctx, c.w, c.pods, p.Namespace, p.Name, p.UID, []types.UID{set.UID}, c.request(cause)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if set.DeletionTimestamp != nil {
		return claimed, errors.Join(errs...)
	}
	adopted, err := ownerref.AdoptOrphans(ctx, c.w, c.ix, c.pods, set.Namespace, selector, isMember, *metav1.NewControllerRef(set, controllerKind), c.request(cause))
	return append(claimed, adopted...), errors.Join(append(errs, err)...)
}

// updateStatefulSetAll is Kubernetes' UpdateStatefulSet: the revisions, the pods, the status,
// and the history truncated to the revisionHistoryLimit.
func (c *Controller) updateStatefulSetAll(ctx context.Context, h *history.History, set *appsv1.StatefulSet, pods []*corev1.Pod, cause uint64) (*appsv1.StatefulSetStatus, error) {
	set = set.DeepCopy()
	selector, _ := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	revisions, err := h.ListControllerRevisions(set, selector)
	if err != nil {
		return nil, err
	}
	history.SortControllerRevisions(revisions)
	current, update, status, err := c.performUpdate(ctx, h, set, pods, revisions, cause)
	truncErr := c.truncateHistory(ctx, h, set, pods, revisions, current, update)
	return status, errors.Join(err, truncErr)
}

func (c *Controller) performUpdate(ctx context.Context, h *history.History, set *appsv1.StatefulSet, pods []*corev1.Pod,
	revisions []*appsv1.ControllerRevision, cause uint64) (*appsv1.ControllerRevision, *appsv1.ControllerRevision, *appsv1.StatefulSetStatus, error) {
	current, update, collisionCount, err := c.getStatefulSetRevisions(ctx, h, set, revisions)
	if err != nil {
		return current, update, nil, err
	}
	status, err := c.updateStatefulSet(ctx, set, current, update, collisionCount, pods, cause)
	if err != nil && status == nil {
		return current, update, nil, err
	}
	statusErr := c.updateStatefulSetStatus(ctx, set, status, cause)
	return current, update, status, errors.Join(err, statusErr)
}

// getStatefulSetRevisions returns the current and update revisions, creating the update
// revision, or renumbering an equal earlier one (a rollback), if the template changed.
func (c *Controller) getStatefulSetRevisions(ctx context.Context, h *history.History, set *appsv1.StatefulSet,
	revisions []*appsv1.ControllerRevision) (*appsv1.ControllerRevision, *appsv1.ControllerRevision, int32, error) {
	var current, update *appsv1.ControllerRevision
	revisionCount := len(revisions)
	var collisionCount int32
	if set.Status.CollisionCount != nil {
		collisionCount = *set.Status.CollisionCount
	}
	update, err := newRevision(set, nextRevision(revisions), &collisionCount)
	if err != nil {
		return nil, nil, collisionCount, err
	}
	equal := history.FindEqualRevisions(revisions, update)
	equalCount := len(equal)
	switch {
	case equalCount > 0 && history.EqualRevision(revisions[revisionCount-1], equal[equalCount-1]):
		update = revisions[revisionCount-1]
	case equalCount > 0:
		update, err = h.UpdateControllerRevision(ctx, equal[equalCount-1], update.Revision)
	default:
		update, err = h.CreateControllerRevision(ctx, set, update, &collisionCount)
	}
	if err != nil {
		return nil, nil, collisionCount, err
	}
	for i := range revisions {
		if revisions[i].Name == set.Status.CurrentRevision {
			current = revisions[i]
			break
		}
	}
	if current == nil {
		current = update
	}
	return current, update, collisionCount, nil
}

// truncateHistory deletes the oldest revisions that no pod and neither the current nor the
// update revision uses, beyond revisionHistoryLimit.
func (c *Controller) truncateHistory(ctx context.Context, h *history.History, set *appsv1.StatefulSet, pods []*corev1.Pod,
	revisions []*appsv1.ControllerRevision, current, update *appsv1.ControllerRevision) error {
	live := map[string]bool{}
	if current != nil {
		live[current.Name] = true
	}
	if update != nil {
		live[update.Name] = true
	}
	for _, p := range pods {
		live[getPodRevision(p)] = true
	}
	var old []*appsv1.ControllerRevision
	for _, r := range revisions {
		if !live[r.Name] {
			old = append(old, r)
		}
	}
	limit := 10
	if set.Spec.RevisionHistoryLimit != nil {
		limit = int(*set.Spec.RevisionHistoryLimit)
	}
	if limit < 0 || len(old) <= limit {
		return nil
	}
	for _, r := range old[:len(old)-limit] {
		if err := h.DeleteControllerRevision(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func computeStatus(status *appsv1.StatefulSetStatus, minReadySeconds int32, current, update *appsv1.ControllerRevision, now time.Time, lists ...[]*corev1.Pod) {
	status.Replicas, status.ReadyReplicas, status.AvailableReplicas, status.CurrentReplicas, status.UpdatedReplicas = 0, 0, 0, 0, 0
	for _, list := range lists {
		for _, pod := range list {
			if pod == nil {
				continue
			}
			if isCreated(pod) {
				status.Replicas++
			}
			if isRunningAndReady(pod) {
				status.ReadyReplicas++
				if isRunningAndAvailable(pod, minReadySeconds, now) {
					status.AvailableReplicas++
				}
			}
			if isCreated(pod) && !isTerminating(pod) {
				rev := getPodRevision(pod)
				if rev == current.Name {
					status.CurrentReplicas++
				}
				if rev == update.Name {
					status.UpdatedReplicas++
				}
			}
		}
	}
}

// runForAll runs fn on each index: in order, stopping at the first that says to (monotonic);
// or all at once, at most burst at a time.
func runForAll(n int, fn func(i int) (bool, error), monotonic bool, burst int) (bool, error) {
	if monotonic {
		for i := range n {
			if stop, err := fn(i); stop || err != nil {
				return true, err
			}
		}
		return false, nil
	}
	errs := make([]error, n)
	sem := make(chan struct{}, burst)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, errs[i] = fn(i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return true, err
	}
	return false, nil
}

// updateStatefulSet creates, updates and deletes pods to bring the set closer to its spec and
// returns the status to record.
func (c *Controller) updateStatefulSet(ctx context.Context, set *appsv1.StatefulSet, currentRevision, updateRevision *appsv1.ControllerRevision,
	collisionCount int32, pods []*corev1.Pod, cause uint64) (*appsv1.StatefulSetStatus, error) {
	now := c.now()
	currentSet, err := ApplyRevision(set, currentRevision)
	if err != nil {
		return nil, err
	}
	updateSet, err := ApplyRevision(set, updateRevision)
	if err != nil {
		return nil, err
	}
	status := appsv1.StatefulSetStatus{
		ObservedGeneration: set.Generation,
		CurrentRevision:    currentRevision.Name,
		UpdateRevision:     updateRevision.Name,
		CollisionCount:     &collisionCount,
		Conditions:         set.Status.Conditions,
	}
	minReady := set.Spec.MinReadySeconds
	computeStatus(&status, minReady, currentRevision, updateRevision, now, pods)

	replicaCount := int(replicasOf(set))
	replicas := make([]*corev1.Pod, replicaCount)
	condemned := make([]*corev1.Pod, 0, len(pods))
	for _, pod := range pods {
		switch {
		case podInOrdinalRange(pod, set):
			replicas[getOrdinal(pod)-getStartOrdinal(set)] = pod
		case getOrdinal(pod) >= 0:
			condemned = append(condemned, pod)
		}
	}
	start, end := getStartOrdinal(set), getEndOrdinal(set)
	for ord := start; ord <= end; ord++ {
		if replicas[ord-start] == nil {
			replicas[ord-start] = newVersionedStatefulSetPod(currentSet, updateSet, currentRevision.Name, updateRevision.Name, ord)
		}
	}
	sort.Sort(descendingOrdinal(condemned))

	var firstUnavailablePod *corev1.Pod
	for _, p := range replicas {
		if isUnavailable(p, minReady, now) {
			firstUnavailablePod = p
			break
		}
	}
	if firstUnavailablePod == nil {
		for i := len(condemned) - 1; i >= 0; i-- {
			if isUnavailable(condemned[i], minReady, now) {
				firstUnavailablePod = condemned[i]
				break
			}
		}
	}
	if set.DeletionTimestamp != nil {
		return &status, nil
	}
	monotonic := !allowsBurst(set)
	done := func(err error) (*appsv1.StatefulSetStatus, error) {
		computeStatus(&status, minReady, currentRevision, updateRevision, now, replicas, condemned)
		return &status, err
	}

	// The pods of the ordinals kept: recreate failed ones, create missing ones, fix identities.
	processReplica := func(i int) (bool, error) {
		pod := replicas[i]
		if isFailed(pod) || isSucceeded(pod) {
			if pod.DeletionTimestamp == nil {
				if err := c.deleteStatefulPod(ctx, set, pod, cause); err != nil {
					return true, err
				}
			}
			return true, nil
		}
		if !isCreated(pod) {
			if c.podClaimIsStale(set, pod) {
				return true, nil // its claim goes first; the claim's deletion brings us back
			}
			if err := c.createStatefulPod(ctx, set, pod, cause); err != nil {
				return true, err
			}
			if monotonic {
				return true, nil
			}
			return false, nil
		}
		if isPending(pod) {
			if err := c.createPersistentVolumeClaims(ctx, set, pod, cause); err != nil {
				return true, err
			}
		}
		if isTerminating(pod) && monotonic {
			return true, nil
		}
		if !isRunningAndReady(pod) && monotonic {
			return true, nil
		}
		if !isRunningAndAvailable(pod, minReady, now) && monotonic {
			return true, nil
		}
		match, err := c.claimsMatchRetentionPolicy(updateSet, pod)
		if err != nil {
			match = true
		}
		if identityMatches(set, pod) && storageMatches(set, pod) && match {
			return false, nil
		}
		if err := c.updateStatefulPod(ctx, updateSet, pod.DeepCopy(), cause); err != nil {
			return true, err
		}
		return false, nil
	}
	if stop, err := runForAll(len(replicas), processReplica, monotonic, c.cfg.Burst); stop || err != nil {
		return done(err)
	}

	// The claims of condemned pods get the owners their retention policy wants.
	fixPodClaim := func(i int) (bool, error) {
		if match, err := c.claimsMatchRetentionPolicy(updateSet, condemned[i]); err != nil {
			return true, err
		} else if !match {
			if err := c.updatePodClaimForRetentionPolicy(ctx, updateSet, condemned[i], cause); err != nil {
				return true, err
			}
		}
		return false, nil
	}
	if stop, err := runForAll(len(condemned), fixPodClaim, monotonic, c.cfg.Burst); stop || err != nil {
		return done(err)
	}

	// Scale down: the highest ordinal first, each once every other pod is available.
	processCondemned := func(i int) (bool, error) {
		pod := condemned[i]
		if isTerminating(pod) {
			return monotonic, nil
		}
		if !isRunningAndReady(pod) && monotonic && pod != firstUnavailablePod {
			return true, nil
		}
		if !isRunningAndAvailable(pod, minReady, now) && monotonic && pod != firstUnavailablePod {
			return true, nil
		}
		return true, c.deleteStatefulPod(ctx, set, pod, cause)
	}
	if stop, err := runForAll(len(condemned), processCondemned, monotonic, c.cfg.Burst); stop || err != nil {
		return done(err)
	}
	computeStatus(&status, minReady, currentRevision, updateRevision, now, replicas, condemned)

	if set.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return &status, nil
	}
	return c.rollingUpdate(ctx, set, replicas, updateRevision, status, now, cause)
}

// rollingUpdate deletes, from the highest ordinal down to the partition, the pods not at the
// update revision, so that at most maxUnavailable pods are unavailable.
func (c *Controller) rollingUpdate(ctx context.Context, set *appsv1.StatefulSet, replicas []*corev1.Pod, updateRevision *appsv1.ControllerRevision,
	status appsv1.StatefulSetStatus, now time.Time, cause uint64) (*appsv1.StatefulSetStatus, error) {
	updateMin, maxUnavailable := 0, 1
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		if ru.Partition != nil {
			updateMin = int(*ru.Partition)
		}
		var err error
		if maxUnavailable, err = getStatefulSetMaxUnavailable(ru.MaxUnavailable, len(replicas)); err != nil {
			return &status, err
		}
	}
	unavailable := 0
	for _, p := range replicas {
		if isUnavailable(p, set.Spec.MinReadySeconds, now) {
			unavailable++
		}
	}
	if unavailable >= maxUnavailable {
		return &status, nil
	}
	toDelete := maxUnavailable - unavailable
	for target := len(replicas) - 1; target >= updateMin && toDelete > 0; target-- {
		if getPodRevision(replicas[target]) != updateRevision.Name && !isTerminating(replicas[target]) {
			if err := c.deleteStatefulPod(ctx, set, replicas[target], cause); err != nil {
				return &status, err
			}
			toDelete--
			status.CurrentReplicas--
		}
	}
	return &status, nil
}

// updateStatefulSetStatus records status, completing a finished rolling update, if it differs
// from the set's.
func (c *Controller) updateStatefulSetStatus(ctx context.Context, set *appsv1.StatefulSet, status *appsv1.StatefulSetStatus, cause uint64) error {
	completeRollingUpdate(set, status)
	if !inconsistentStatus(set, status) {
		return nil
	}
	uid := set.UID
	_, err := c.w.Modify(ctx, c.sets, set.Namespace, set.Name, c.request(cause), registry.UpdateOptions{Subresource: "status"},
		func(cur runtime.Object) (runtime.Object, error) {
			s, ok := cur.(*appsv1.StatefulSet)
			if !ok || s.UID != uid {
				return nil, errSkip
			}
			s = s.DeepCopy()
			st := *status.DeepCopy()
			st.Conditions = s.Status.Conditions
			s.Status = st
			return s, nil
		})
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("statefulset: updating the status of %s/%s: %w", set.Namespace, set.Name, err)
}
