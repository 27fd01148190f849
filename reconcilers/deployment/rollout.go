package deployment

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// rolloutRolling makes one step of a rolling update: scale the new replica set up within the
// surge, or the old ones down within the unavailability budget, or clean up once complete.
func (s *run) rolloutRolling(rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := s.replicaSetsAndRevision(rsList, true)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet{}, old...), newRS)
	scaledUp, newRS, err := s.reconcileNewReplicaSet(all, newRS)
	if err != nil {
		return err
	}
	if scaledUp {
		return s.syncRolloutStatus(append(old, newRS), newRS)
	}
	scaledDown, old, err := s.reconcileOldReplicaSets(old, newRS)
	if err != nil {
		return err
	}
	if scaledDown {
		return s.syncRolloutStatus(append(old, newRS), newRS)
	}
	if complete(s.d, &s.d.Status) {
		if err := s.cleanup(old); err != nil {
			return err
		}
	}
	return s.syncRolloutStatus(append(old, newRS), newRS)
}

func (s *run) reconcileNewReplicaSet(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, *appsv1.ReplicaSet, error) {
	d := s.d
	switch {
	case rsReplicas(newRS) == replicas(d):
		return false, newRS, nil
	case rsReplicas(newRS) > replicas(d):
		return s.scaleRS(newRS, replicas(d))
	}
	return s.scaleRS(newRS, newRSNewReplicas(d, all, newRS))
}

// reconcileOldReplicaSets scales old replica sets down as far as availability allows: first
// their unhealthy replicas, then healthy ones, oldest replica sets first.
func (s *run) reconcileOldReplicaSets(old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, []*appsv1.ReplicaSet, error) {
	d := s.d
	if sumReplicas(old) == 0 {
		return false, old, nil
	}
	all := append(append([]*appsv1.ReplicaSet{}, old...), newRS)
	minAvailable := replicas(d) - maxUnavailable(d)
	newUnavailable := max(rsReplicas(newRS)-newRS.Status.AvailableReplicas, 0)
	maxScaledDown := sumReplicas(all) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false, old, nil
	}
	old = append([]*appsv1.ReplicaSet{}, old...)
	sortByCreation(old)
	// Unhealthy replicas first: they cost no availability.
	cleaned := int32(0)
	for i, rs := range old {
		if cleaned >= maxScaledDown {
			break
		}
		// A status that lags a scale-down counts more available replicas than the spec asks
		// for: none of them is unhealthy (subtracting would scale the replica set up).
		if rsReplicas(rs) == 0 || rs.Status.AvailableReplicas >= rsReplicas(rs) {
			continue
		}
		n := min(maxScaledDown-cleaned, rsReplicas(rs)-rs.Status.AvailableReplicas)
		_, out, err := s.scaleRS(rs, rsReplicas(rs)-n)
		if err != nil {
			return false, nil, err
		}
		old[i] = out
		cleaned += n
	}
	// Then available ones, down to minAvailable. Pods beyond a replica set's spec are on their
	// way out (its status has not caught up with a scale-down yet): they do not count.
	available := int32(0)
	for _, rs := range append(append([]*appsv1.ReplicaSet{}, old...), newRS) {
		if rs != nil {
			available += min(rsReplicas(rs), rs.Status.AvailableReplicas)
		}
	}
	scaledDown := int32(0)
	if available > minAvailable {
		total := available - minAvailable
		for i, rs := range old {
			if scaledDown >= total {
				break
			}
			if rsReplicas(rs) == 0 {
				continue
			}
			n := min(rsReplicas(rs), total-scaledDown)
			_, out, err := s.scaleRS(rs, rsReplicas(rs)-n)
			if err != nil {
				return false, nil, err
			}
			old[i] = out
			scaledDown += n
		}
	}
	return cleaned+scaledDown > 0, old, nil
}

// rolloutRecreate scales every old replica set to zero, waits for their pods to be gone, then
// scales the new replica set up.
func (s *run) rolloutRecreate(rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := s.replicaSetsAndRevision(rsList, false)
	if err != nil {
		return err
	}
	scaledDown := false
	for i, rs := range old {
		if rsReplicas(rs) == 0 {
			continue
		}
		scaled, out, err := s.scaleRS(rs, 0)
		if err != nil {
			return err
		}
		old[i] = out
		scaledDown = scaledDown || scaled
	}
	if scaledDown {
		return s.syncRolloutStatus(append(old, newRS), newRS)
	}
	if s.oldPodsRunning(newRS, old) {
		return s.syncRolloutStatus(append(old, newRS), newRS)
	}
	if newRS == nil {
		if newRS, old, err = s.replicaSetsAndRevision(rsList, true); err != nil {
			return err
		}
	}
	if rsReplicas(newRS) != replicas(s.d) {
		if _, newRS, err = s.scaleRS(newRS, replicas(s.d)); err != nil {
			return err
		}
	}
	if complete(s.d, &s.d.Status) {
		if err := s.cleanup(old); err != nil {
			return err
		}
	}
	return s.syncRolloutStatus(append(old, newRS), newRS)
}

// oldPodsRunning: a pod of an old replica set has not finished (a Recreate waits for them).
func (s *run) oldPodsRunning(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) bool {
	if sumStatus(old, actualReplicas) > 0 {
		return true
	}
	for _, rs := range old {
		if rs == nil || (newRS != nil && rs.UID == newRS.UID) {
			continue
		}
		for _, k := range s.r.ix.Dependents(rs.UID) {
			if k.Resource != "pods" || k.Group != "" {
				continue
			}
			obj, ok := s.r.ix.Object(k)
			if !ok {
				continue
			}
			p, ok := obj.(*corev1.Pod)
			if !ok {
				continue
			}
			switch p.Status.Phase {
			case corev1.PodFailed, corev1.PodSucceeded:
				continue
			}
			return true
		}
	}
	return false
}

// calculateStatus is the deployment status its replica sets make.
func (s *run) calculateStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) appsv1.DeploymentStatus {
	d := s.d
	available := sumStatus(all, availableReplicas)
	unavailable := max(sumReplicas(all)-available, 0)
	st := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            sumStatus(all, actualReplicas),
		UpdatedReplicas:     sumStatus([]*appsv1.ReplicaSet{newRS}, actualReplicas),
		ReadyReplicas:       sumStatus(all, readyReplicas),
		AvailableReplicas:   available,
		UnavailableReplicas: unavailable,
		CollisionCount:      d.Status.CollisionCount,
	}
	st.Conditions = append(st.Conditions, d.Status.Conditions...)
	if available >= replicas(d)-maxUnavailable(d) {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionTrue, reasonMinimumAvailable, "Deployment has minimum availability.", s.now))
	} else {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionFalse, reasonMinimumUnavailable, "Deployment does not have minimum availability.", s.now))
	}
	return st
}

// syncStatus writes the status the replica sets make, if it changed.
func (s *run) syncStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	st := s.calculateStatus(all, newRS)
	if apiequality.Semantic.DeepEqual(s.d.Status, st) {
		return nil
	}
	return s.updateStatus(st)
}

// syncStatusOnly is the status of a deployment being deleted.
func (s *run) syncStatusOnly(rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := s.replicaSetsAndRevision(rsList, false)
	if err != nil {
		return err
	}
	return s.syncStatus(append(old, newRS), newRS)
}

// syncRolloutStatus writes the status of a rollout, with the Progressing condition: complete
// (NewReplicaSetAvailable), progressing (ReplicaSetUpdated, its lastUpdateTime moved with each
// progress) or timed out (ProgressDeadlineExceeded) once progressDeadlineSeconds passed with no
// progress; and the first ReplicaFailure of its replica sets.
func (s *run) syncRolloutStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	d := s.d
	st := s.calculateStatus(all, newRS)
	if !hasProgressDeadline(d) {
		removeCondition(&st, appsv1.DeploymentProgressing)
	}
	cur := getCondition(d.Status, appsv1.DeploymentProgressing)
	completed := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == reasonNewRSAvailable
	if hasProgressDeadline(d) && !completed {
		name := func(format, deploymentFormat string) string {
			if newRS != nil {
				return fmt.Sprintf(format, newRS.Name)
			}
			return fmt.Sprintf(deploymentFormat, d.Name)
		}
		switch {
		case complete(d, &st):
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewRSAvailable,
				name("ReplicaSet %q has successfully progressed.", "Deployment %q has successfully progressed."), s.now))
		case progressing(d, &st):
			c := newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonReplicaSetUpdated,
				name("ReplicaSet %q is progressing.", "Deployment %q is progressing."), s.now)
			// Progress moves lastUpdateTime even when the reason stays.
			if cur != nil {
				if cur.Status == corev1.ConditionTrue {
					c.LastTransitionTime = cur.LastTransitionTime
				}
				removeCondition(&st, appsv1.DeploymentProgressing)
			}
			setCondition(&st, c)
		case timedOut(d, &st, s.now):
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, reasonTimedOut,
				name("ReplicaSet %q has timed out progressing.", "Deployment %q has timed out progressing."), s.now))
		}
	}
	if f := replicaFailure(all, newRS); f != nil {
		setCondition(&st, *f)
	} else {
		removeCondition(&st, appsv1.DeploymentReplicaFailure)
	}
	if apiequality.Semantic.DeepEqual(d.Status, st) {
		s.requeueStuck(&st)
		return nil
	}
	if err := s.updateStatus(st); err != nil {
		return err
	}
	s.requeueStuck(&st)
	return nil
}

// requeueStuck asks to look again when the progress deadline of a rollout in progress passes.
func (s *run) requeueStuck(st *appsv1.DeploymentStatus) {
	d := s.d
	c := getCondition(*st, appsv1.DeploymentProgressing)
	if !hasProgressDeadline(d) || c == nil || complete(d, st) || c.Reason == reasonTimedOut {
		return
	}
	after := c.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second).Sub(s.now)
	if after < time.Second {
		after = time.Second
	}
	s.requeue = after + 100*time.Millisecond
}

// replicaFailure is the ReplicaFailure condition of the new replica set, else of an old one.
func replicaFailure(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) *appsv1.DeploymentCondition {
	for _, rs := range append([]*appsv1.ReplicaSet{newRS}, all...) {
		if rs == nil {
			continue
		}
		for _, c := range rs.Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure {
				return &appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: c.Status,
					LastTransitionTime: c.LastTransitionTime, LastUpdateTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message}
			}
		}
	}
	return nil
}
