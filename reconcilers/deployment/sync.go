package deployment

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/ownerref"
	"github.com/logplane/logplane/registry"
)

// run is one reconcile of one deployment: d is a copy whose status the reconcile builds.
type run struct {
	r   *Reconciler
	ctx context.Context
	d   *appsv1.Deployment
	// cause of the writes to replica sets: the deployment's latest spec change; statusCause of
	// the deployment's own status: the event that triggered the reconcile.
	cause, statusCause uint64
	now                time.Time
	requeue            time.Duration
}

// Reconcile brings one deployment closer to its spec.
func (r *Reconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	obj, ok := r.ix.Object(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	d0, ok := obj.(*appsv1.Deployment)
	if !ok {
		return engine.Result{}, fmt.Errorf("%w: deployments decode to %T", engine.ErrTerminal, obj)
	}
	s := &run{r: r, ctx: ctx, d: d0.DeepCopy(), cause: req.Cause, statusCause: req.Cause, now: r.now()}
	if m, ok := r.ix.Meta(req.Key); ok && m.SpecSeq > 0 {
		s.cause = m.SpecSeq
	}
	err := s.sync()
	return engine.Result{RequeueAfter: s.requeue}, err
}

func (s *run) sync() error {
	d := s.d
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return fmt.Errorf("%w: deployment %s/%s: %v", engine.ErrTerminal, d.Namespace, d.Name, err)
	}
	if selector.Empty() {
		s.r.event(d, s.statusCause, corev1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			return s.updateStatus(d.Status)
		}
		return nil
	}
	rsList, err := s.claimReplicaSets(selector)
	if err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		return s.syncStatusOnly(rsList)
	}
	if err := s.checkPausedConditions(); err != nil {
		return err
	}
	if d.Spec.Paused {
		return s.scaleSync(rsList)
	}
	scaling, err := s.isScalingEvent(rsList)
	if err != nil {
		return err
	}
	if scaling {
		return s.scaleSync(rsList)
	}
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		return s.rolloutRecreate(rsList)
	case appsv1.RollingUpdateDeploymentStrategyType:
		return s.rolloutRolling(rsList)
	}
	return fmt.Errorf("%w: unexpected deployment strategy type %q", engine.ErrTerminal, d.Spec.Strategy.Type)
}

func (s *run) request(cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(Name), Cause: cause}
}

// replicaSet returns the decoded replica set of a projected object.
func (s *run) replicaSet(o *projections.Object) (*appsv1.ReplicaSet, error) {
	if obj, ok := s.r.ix.Object(o.Key); ok {
		if rs, ok := obj.(*appsv1.ReplicaSet); ok && rs.ResourceVersion == strconv.FormatUint(o.Seq, 10) {
			return rs, nil
		}
	}
	obj, err := o.Decode()
	if err != nil {
		return nil, err
	}
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return nil, fmt.Errorf("deployment: replicasets decode to %T", obj)
	}
	return rs, nil
}

// claimReplicaSets returns the replica sets the deployment controls, once it has adopted the
// orphans its selector matches and released those it controls that its selector no longer
// matches. They are the index's shared copies: copy one before changing it.
func (s *run) claimReplicaSets(selector labels.Selector) ([]*appsv1.ReplicaSet, error) {
	d := s.d
	candidates := map[eventlog.Key]*appsv1.ReplicaSet{}
	objs, _ := s.r.store.List(projections.Query{Resource: replicaSetsResource, Namespace: d.Namespace, Labels: selector})
	for _, o := range objs {
		rs, err := s.replicaSet(o)
		if err != nil {
			s.r.log.Error("deployment: skipping a replica set that cannot be read", "key", o.Key, "err", err)
			continue
		}
		candidates[o.Key] = rs
	}
	for _, k := range s.r.ix.Dependents(d.UID) {
		if k.Group != replicaSetsResource.Group || k.Resource != replicaSetsResource.Resource {
			continue
		}
		if _, ok := candidates[k]; ok {
			continue
		}
		if obj, ok := s.r.ix.Object(k); ok {
			if rs, ok := obj.(*appsv1.ReplicaSet); ok {
				candidates[k] = rs
			}
		}
	}
	var out []*appsv1.ReplicaSet
	var errs []error
	for _, rs := range candidates {
		matches := selector.Matches(labels.Set(rs.Labels))
		if ref := metav1.GetControllerOfNoCopy(rs); ref != nil {
			if ref.UID != d.UID {
				continue
			}
			if matches {
				out = append(out, rs)
			} else if d.DeletionTimestamp == nil {
				errs = append(errs, s.release(rs))
			}
			continue
		}
		if !matches || d.DeletionTimestamp != nil || rs.DeletionTimestamp != nil {
			continue
		}
		adopted, err := s.adopt(rs)
		if err != nil {
			errs = append(errs, err)
		} else if adopted != nil {
			out = append(out, adopted)
		}
	}
	return out, errors.Join(errs...)
}

func (s *run) controllerRef() metav1.OwnerReference {
	return ownerref.Controller("apps/v1", "Deployment", s.d.Name, s.d.UID)
}

func (s *run) adopt(rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	out, err := ownerref.Adopt(s.ctx, s.r.w, s.r.kRS, rs.Namespace, rs.Name, rs.UID, s.controllerRef(), s.request(s.cause))
	if err != nil || out == nil {
		return nil, err
	}
	return out.(*appsv1.ReplicaSet), nil
}

func (s *run) release(rs *appsv1.ReplicaSet) error {
	return ownerref.Release(s.ctx, s.r.w, s.r.kRS, rs.Namespace, rs.Name, rs.UID, []types.UID{s.d.UID}, s.request(s.cause))
}

// updateRS writes the spec and annotations of a changed copy of a replica set, unless its spec
// changed since it was read (its status may have: that is no reason to start over).
func (s *run) updateRS(rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	out, err := s.r.w.Modify(s.ctx, s.r.kRS, rs.Namespace, rs.Name, s.request(s.cause), registry.UpdateOptions{}, func(obj runtime.Object) (runtime.Object, error) {
		cur := obj.(*appsv1.ReplicaSet)
		if cur.UID != rs.UID || cur.Generation != rs.Generation {
			return nil, apierrors.NewConflict(replicaSetsResource, rs.Name, errors.New("the replica set changed since it was read"))
		}
		cur.Spec = rs.Spec
		cur.Annotations = rs.Annotations
		cur.ResourceVersion = ""
		return cur, nil
	})
	if err != nil {
		return nil, fmt.Errorf("deployment: updating replica set %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	return out.(*appsv1.ReplicaSet), nil
}

// updateStatus writes the deployment's status, unless its spec changed since the reconcile read
// it.
func (s *run) updateStatus(st appsv1.DeploymentStatus) error {
	d := s.d
	out, err := s.r.w.Modify(s.ctx, s.r.kDep, d.Namespace, d.Name, s.request(s.statusCause), registry.UpdateOptions{Subresource: "status"}, func(obj runtime.Object) (runtime.Object, error) {
		cur := obj.(*appsv1.Deployment)
		if cur.UID != d.UID || cur.Generation != d.Generation {
			return nil, apierrors.NewConflict(deploymentsResource, d.Name, errors.New("the deployment changed since it was read"))
		}
		cur.Status = st
		cur.ResourceVersion = ""
		return cur, nil
	})
	if err != nil {
		return fmt.Errorf("deployment: updating the status of %s/%s: %w", d.Namespace, d.Name, err)
	}
	s.d = out.(*appsv1.Deployment)
	return nil
}

// setRevision puts the revision annotation on the deployment (written by updateRevision).
func setRevision(d *appsv1.Deployment, rev string) bool {
	if d.Annotations[revisionAnnotation] == rev {
		return false
	}
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[revisionAnnotation] = rev
	return true
}

// updateRevisionAndStatus writes the deployment's revision annotation (metadata, through the
// main resource) and then its status.
func (s *run) updateRevisionAndStatus(rev string) error {
	st := s.d.Status
	d := s.d
	if d.Annotations[revisionAnnotation] != rev {
		out, err := s.r.w.Modify(s.ctx, s.r.kDep, d.Namespace, d.Name, s.request(s.statusCause), registry.UpdateOptions{}, func(obj runtime.Object) (runtime.Object, error) {
			cur := obj.(*appsv1.Deployment)
			if cur.UID != d.UID || cur.Generation != d.Generation {
				return nil, apierrors.NewConflict(deploymentsResource, d.Name, errors.New("the deployment changed since it was read"))
			}
			setRevision(cur, rev)
			cur.ResourceVersion = ""
			return cur, nil
		})
		if err != nil {
			return fmt.Errorf("deployment: updating the revision of %s/%s: %w", d.Namespace, d.Name, err)
		}
		s.d = out.(*appsv1.Deployment)
	}
	if apiequality.Semantic.DeepEqual(s.d.Status, st) {
		return nil
	}
	return s.updateStatus(st)
}

// checkPausedConditions marks a paused or resumed deployment in its Progressing condition, so
// that the time it was paused does not count against its progress deadline.
func (s *run) checkPausedConditions() error {
	d := s.d
	if !hasProgressDeadline(d) {
		return nil
	}
	cond := getCondition(d.Status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == reasonTimedOut {
		return nil // a deployment that timed out stays so
	}
	paused := cond != nil && cond.Reason == reasonPaused
	st := *d.Status.DeepCopy()
	switch {
	case d.Spec.Paused && !paused:
		setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonPaused, "Deployment is paused", s.now))
	case !d.Spec.Paused && paused:
		setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonResumed, "Deployment is resumed", s.now))
	default:
		return nil
	}
	return s.updateStatus(st)
}

// replicaSetsAndRevision splits the deployment's replica sets into the new one (whose template is
// the deployment's, created if create says so and none is) and the old ones, and brings the
// revision annotations up to date.
func (s *run) replicaSetsAndRevision(rsList []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	sorted := append([]*appsv1.ReplicaSet{}, rsList...)
	sortByCreation(sorted)
	var existing *appsv1.ReplicaSet
	var old []*appsv1.ReplicaSet
	for _, rs := range sorted {
		if existing == nil && equalIgnoreHash(&rs.Spec.Template, &s.d.Spec.Template) {
			existing = rs
			continue
		}
		old = append(old, rs)
	}
	newRS, err := s.newReplicaSet(existing, old, create)
	if err != nil {
		return nil, nil, err
	}
	return newRS, old, nil
}

func (s *run) newReplicaSet(existing *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, error) {
	d := s.d
	newRevision := strconv.FormatInt(maxRevision(old)+1, 10)
	if existing != nil {
		rs := existing.DeepCopy()
		changed := setNewReplicaSetAnnotations(d, rs, newRevision, true)
		if changed || rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			var err error
			if rs, err = s.updateRS(rs); err != nil {
				return nil, err
			}
		}
		needsUpdate := d.Annotations[revisionAnnotation] != rs.Annotations[revisionAnnotation]
		if hasProgressDeadline(d) && getCondition(d.Status, appsv1.DeploymentProgressing) == nil {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonFoundNewRS,
				fmt.Sprintf("Found new replica set %q", rs.Name), s.now))
			needsUpdate = true
		}
		if needsUpdate {
			if err := s.updateRevisionAndStatus(rs.Annotations[revisionAnnotation]); err != nil {
				return nil, err
			}
		}
		return rs, nil
	}
	if !create {
		return nil, nil
	}
	template := d.Spec.Template.DeepCopy()
	hash := computeHash(template, d.Status.CollisionCount)
	template.Labels = withLabel(d.Spec.Template.Labels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	selector := d.Spec.Selector.DeepCopy()
	if selector.MatchLabels == nil {
		selector.MatchLabels = map[string]string{}
	}
	selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	zero := int32(0)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: template.Labels,
			OwnerReferences: []metav1.OwnerReference{s.controllerRef()},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: &zero, MinReadySeconds: d.Spec.MinReadySeconds, Selector: selector, Template: *template},
	}
	count := newRSNewReplicas(d, append(append([]*appsv1.ReplicaSet{}, old...), rs), rs)
	rs.Spec.Replicas = &count
	setNewReplicaSetAnnotations(d, rs, newRevision, false)
	created, err := s.r.w.Create(s.ctx, s.r.kRS, rs, s.request(s.cause))
	alreadyExists := false
	switch {
	case apierrors.IsAlreadyExists(err):
		alreadyExists = true
		obj, ok := s.r.ix.Object(eventlog.Key{Group: "apps", Resource: "replicasets", Namespace: d.Namespace, Name: rs.Name})
		if ok {
			if cur, ok := obj.(*appsv1.ReplicaSet); ok {
				if ref := metav1.GetControllerOfNoCopy(cur); ref != nil && ref.UID == d.UID && equalIgnoreHash(&d.Spec.Template, &cur.Spec.Template) {
					created, err = cur, nil
					break
				}
			}
		}
		// A replica set of that name that is not this template's: a hash collision. Bump the
		// collision count, which changes the hash, and try again.
		st := *d.Status.DeepCopy()
		if st.CollisionCount == nil {
			st.CollisionCount = new(int32)
		}
		*st.CollisionCount++
		if uerr := s.updateStatus(st); uerr != nil {
			return nil, errors.Join(err, uerr)
		}
		s.r.log.Info("deployment: hash collision, bumping collisionCount", "deployment", d.Name, "collisionCount", *st.CollisionCount)
		return nil, err
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		if hasProgressDeadline(d) {
			st := *d.Status.DeepCopy()
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, reasonFailedRSCreate, msg, s.now))
			if uerr := s.updateStatus(st); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
		s.r.event(d, s.cause, corev1.EventTypeWarning, "FailedCreate", "%s", msg)
		return nil, err
	}
	newRS := created.(*appsv1.ReplicaSet)
	if !alreadyExists && count > 0 {
		s.r.event(s.d, s.cause, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s to %d", newRS.Name, count)
	}
	d = s.d
	if !alreadyExists && hasProgressDeadline(d) {
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewReplicaSet,
			fmt.Sprintf("Created new replica set %q", newRS.Name), s.now))
	}
	if err := s.updateRevisionAndStatus(newRevision); err != nil {
		return nil, err
	}
	return newRS, nil
}

func withLabel(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

// newRSNewReplicas is how many replicas the new replica set should have now.
func newRSNewReplicas(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	switch d.Spec.Strategy.Type {
	case appsv1.RollingUpdateDeploymentStrategyType:
		maxTotal := replicas(d) + maxSurge(d)
		current := sumReplicas(all)
		if current >= maxTotal {
			return rsReplicas(newRS)
		}
		up := min(maxTotal-current, replicas(d)-rsReplicas(newRS))
		return rsReplicas(newRS) + max(up, 0)
	}
	return replicas(d)
}

// scaleRS sets a replica set's replicas (and its replicas annotations), recording a
// ScalingReplicaSet event when the size changes. It returns the replica set as written.
func (s *run) scaleRS(rs *appsv1.ReplicaSet, newScale int32) (bool, *appsv1.ReplicaSet, error) {
	cur := rsReplicas(rs)
	c := rs.DeepCopy()
	annotationsChanged := setReplicasAnnotations(c, replicas(s.d), replicas(s.d)+maxSurge(s.d))
	if cur == newScale && !annotationsChanged {
		return false, rs, nil
	}
	c.Spec.Replicas = &newScale
	out, err := s.updateRS(c)
	if err != nil {
		return false, nil, err
	}
	if cur != newScale {
		op := "up"
		if newScale < cur {
			op = "down"
		}
		s.r.event(s.d, s.cause, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s to %d from %d", op, rs.Name, newScale, cur)
	}
	return cur != newScale, out, nil
}

// isScalingEvent: an active replica set records desired replicas other than the deployment's.
func (s *run) isScalingEvent(rsList []*appsv1.ReplicaSet) (bool, error) {
	newRS, old, err := s.replicaSetsAndRevision(rsList, false)
	if err != nil {
		return false, err
	}
	for _, rs := range activeReplicaSets(append(old, newRS)) {
		if desired, ok := intAnnotation(rs, desiredReplicasAnnotation); ok && desired != replicas(s.d) {
			return true, nil
		}
	}
	return false, nil
}

// scaleSync handles a paused deployment or a scaling event: it scales the replica sets, cleans
// up old ones of a paused deployment, and syncs the status.
func (s *run) scaleSync(rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := s.replicaSetsAndRevision(rsList, false)
	if err != nil {
		return err
	}
	newRS, old, err = s.scale(newRS, old)
	if err != nil {
		return err
	}
	if s.d.Spec.Paused {
		if err := s.cleanup(old); err != nil {
			return err
		}
	}
	return s.syncStatus(append(old, newRS), newRS)
}

// scale sizes the replica sets for the deployment's replicas: all of them to the one active
// replica set; old ones to zero once the new one is saturated; else, in a rolling update, the
// difference spread over the active ones in proportion to their sizes.
func (s *run) scale(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	d := s.d
	all := append(append([]*appsv1.ReplicaSet{}, old...), newRS)
	replace := func(prev, next *appsv1.ReplicaSet) {
		if prev == newRS {
			newRS = next
		}
		for i := range old {
			if old[i] == prev {
				old[i] = next
			}
		}
	}
	if rs := activeOrLatest(newRS, old); rs != nil {
		if rsReplicas(rs) == replicas(d) {
			return newRS, old, nil
		}
		_, out, err := s.scaleRS(rs, replicas(d))
		if err != nil {
			return nil, nil, err
		}
		replace(rs, out)
		return newRS, old, nil
	}
	if saturated(d, newRS) {
		for _, rs := range activeReplicaSets(old) {
			_, out, err := s.scaleRS(rs, 0)
			if err != nil {
				return nil, nil, err
			}
			replace(rs, out)
		}
		return newRS, old, nil
	}
	if !isRollingUpdate(d) {
		return newRS, old, nil
	}
	active := activeReplicaSets(all)
	allowed := int32(0)
	if replicas(d) > 0 {
		allowed = replicas(d) + maxSurge(d)
	}
	toAdd := allowed - sumReplicas(active)
	switch {
	case toAdd > 0:
		sortBySizeNewer(active)
	case toAdd < 0:
		sortBySizeOlder(active)
	}
	added := int32(0)
	sizes := make([]int32, len(active))
	for i, rs := range active {
		if toAdd != 0 {
			p := proportion(rs, d, toAdd, added)
			sizes[i] = rsReplicas(rs) + p
			added += p
		} else {
			sizes[i] = rsReplicas(rs)
		}
	}
	for i, rs := range active {
		if i == 0 && toAdd != 0 {
			sizes[i] = max(sizes[i]+toAdd-added, 0) // leftovers to the largest
		}
		_, out, err := s.scaleRS(rs, sizes[i])
		if err != nil {
			return nil, nil, err
		}
		replace(rs, out)
	}
	return newRS, old, nil
}

// activeOrLatest is the only active replica set, or the newest if none is active; nil if more
// than one is active.
func activeOrLatest(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(old) == 0 {
		return nil
	}
	sorted := append([]*appsv1.ReplicaSet{}, old...)
	sortByCreation(sorted)
	for i, j := 0, len(sorted)-1; i < j; i, j = i+1, j-1 {
		sorted[i], sorted[j] = sorted[j], sorted[i]
	}
	active := activeReplicaSets(append(sorted, newRS))
	switch len(active) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return sorted[0]
	case 1:
		return active[0]
	}
	return nil
}

// saturated: the new replica set has all the deployment's replicas, available.
func saturated(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	desired, ok := intAnnotation(rs, desiredReplicasAnnotation)
	return ok && desired == replicas(d) && rsReplicas(rs) == replicas(d) && rs.Status.AvailableReplicas == replicas(d)
}

// proportion is the share of toAdd (less what was added already) a replica set gets, by its
// size relative to the deployment's size when it was last scaled (the max-replicas annotation).
func proportion(rs *appsv1.ReplicaSet, d *appsv1.Deployment, toAdd, added int32) int32 {
	if rs == nil || rsReplicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	fraction := replicaSetFraction(rs, d)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(fraction, allowed)
	}
	return max(fraction, allowed)
}

func replicaSetFraction(rs *appsv1.ReplicaSet, d *appsv1.Deployment) int32 {
	if replicas(d) == 0 {
		return -rsReplicas(rs)
	}
	deploymentReplicas := replicas(d) + maxSurge(d)
	annotated, ok := intAnnotation(rs, maxReplicasAnnotation)
	if !ok || annotated == 0 {
		annotated = d.Status.Replicas
	}
	if annotated == 0 {
		return 0
	}
	size := float64(rsReplicas(rs)*deploymentReplicas) / float64(annotated)
	return int32(math.Round(size)) - rsReplicas(rs)
}

// cleanup deletes the oldest replica sets beyond revisionHistoryLimit that have no pods.
func (s *run) cleanup(old []*appsv1.ReplicaSet) error {
	d := s.d
	if !hasRevisionHistoryLimit(d) {
		return nil
	}
	var alive []*appsv1.ReplicaSet
	for _, rs := range old {
		if rs != nil && rs.DeletionTimestamp == nil {
			alive = append(alive, rs)
		}
	}
	diff := len(alive) - int(*d.Spec.RevisionHistoryLimit)
	if diff <= 0 {
		return nil
	}
	sortByRevision(alive)
	var errs []error
	for _, rs := range alive[:diff] {
		if rs.Status.Replicas != 0 || rsReplicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration || rs.DeletionTimestamp != nil {
			continue
		}
		uid := rs.UID
		_, _, err := s.r.w.Delete(s.ctx, s.r.kRS, rs.Namespace, rs.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}, s.request(s.cause))
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deployment: deleting old replica set %s/%s: %w", rs.Namespace, rs.Name, err))
		}
	}
	return errors.Join(errs...)
}
