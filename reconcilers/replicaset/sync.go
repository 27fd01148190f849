package replicaset

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
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
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/ownerref"
	"github.com/logplane/logplane/reconcilers/slowstart"
	"github.com/logplane/logplane/registry"
)

func (c *Controller) request(kd *setKind, cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(kd.name), Cause: cause}
}

func (c *Controller) notePodLoss(set eventlog.Key, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq > c.podLosses[set] {
		c.podLosses[set] = seq
	}
}

// causes returns the causes to record for the pods a reconcile creates and deletes: the latest
// change of the set's spec, or the loss of a pod if that came later; the triggering event when
// neither is known.
func (c *Controller) causes(key eventlog.Key, req engine.Request) (create, remove uint64) {
	spec := req.Cause
	if m, ok := c.ix.Meta(key); ok && m.SpecSeq > 0 {
		spec = m.SpecSeq
	}
	c.mu.Lock()
	loss := c.podLosses[key]
	c.mu.Unlock()
	return max(spec, loss), spec
}

func (c *Controller) reconcile(ctx context.Context, kd *setKind, req engine.Request) (engine.Result, error) {
	key := req.Key
	obj, ok := c.ix.Object(key)
	if !ok {
		c.exp.Delete(key)
		c.mu.Lock()
		delete(c.podLosses, key)
		delete(c.batches, key)
		c.mu.Unlock()
		return engine.Result{}, nil
	}
	rs, err := kd.view(obj)
	if err != nil {
		return engine.Result{}, fmt.Errorf("%w: %v", engine.ErrTerminal, err)
	}
	selector, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || selector.Empty() {
		return engine.Result{}, fmt.Errorf("%w: %s %s/%s has an invalid selector: %v", engine.ErrTerminal, kd.k.Kind, rs.Namespace, rs.Name, err)
	}
	needsSync := c.exp.Satisfied(key)
	createCause, deleteCause := c.causes(key, req)
	pods, err := c.claimPods(ctx, kd, rs, selector, req.Cause)
	if err != nil {
		return engine.Result{}, err
	}
	var manageErr error
	if needsSync && rs.DeletionTimestamp == nil {
		manageErr = c.manageReplicas(ctx, kd, key, rs, pods, createCause, deleteCause)
	}
	now := c.now()
	status := calculateStatus(rs, pods, manageErr, now)
	if err := c.updateStatus(ctx, kd, rs, status, req.Cause); err != nil {
		return engine.Result{}, errors.Join(manageErr, err)
	}
	if manageErr != nil {
		return engine.Result{}, manageErr
	}
	// Look again once the ready pods have been ready for minReadySeconds.
	if replicas := replicasOf(rs); rs.Spec.MinReadySeconds > 0 && status.ReadyReplicas == replicas && status.AvailableReplicas != replicas {
		return engine.Result{RequeueAfter: time.Duration(rs.Spec.MinReadySeconds) * time.Second}, nil
	}
	return engine.Result{}, nil
}

func replicasOf(rs *appsv1.ReplicaSet) int32 {
	if rs.Spec.Replicas == nil {
		return 1
	}
	return *rs.Spec.Replicas
}

// claimPods returns the active pods the set controls once it has adopted the orphans its
// selector matches and released the pods it controls that its selector no longer matches. The
// candidates come from the informer index: the set's dependents and the namespace's orphans.
func (c *Controller) claimPods(ctx context.Context, kd *setKind, rs *appsv1.ReplicaSet, selector labels.Selector, cause uint64) ([]*corev1.Pod, error) {
	var claimed []*corev1.Pod
	var errs []error
	for _, p := range informer.Controlled[*corev1.Pod](c.ix, podsResource, rs.UID) {
		if !isActive(p) {
			continue
		}
		if selector.Matches(labels.Set(p.Labels)) {
			claimed = append(claimed, p)
		} else if rs.DeletionTimestamp == nil {
			if err := c.release(ctx, kd, rs, p, cause); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if rs.DeletionTimestamp != nil {
		return claimed, errors.Join(errs...)
	}
	for _, k := range c.ix.Orphans(podsResource, rs.Namespace) {
		p, _ := informer.Get[*corev1.Pod](c.ix, podsResource, k)
		if p == nil || !isActive(p) || metav1.GetControllerOfNoCopy(p) != nil || !selector.Matches(labels.Set(p.Labels)) {
			continue
		}
		adopted, err := c.adopt(ctx, kd, rs, p, cause)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if adopted != nil {
			claimed = append(claimed, adopted)
		}
	}
	return claimed, errors.Join(errs...)
}

func isActive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func isTerminalPhase(phase string) bool {
	return phase == string(corev1.PodSucceeded) || phase == string(corev1.PodFailed)
}

func phaseOf(o *projections.Object) string {
	if o == nil {
		return ""
	}
	return o.Fields["status.phase"]
}

// adopt makes the set the controller of an orphan pod. It returns nil, nil if the pod went away
// or got another controller meanwhile.
func (c *Controller) adopt(ctx context.Context, kd *setKind, rs *appsv1.ReplicaSet, p *corev1.Pod, cause uint64) (*corev1.Pod, error) {
	// The set must still be the one we read, and not being deleted.
	if cur, ok := c.ix.Object(eventlog.Key{Group: kd.k.Group, Resource: kd.k.Resource, Namespace: rs.Namespace, Name: rs.Name}); !ok {
		return nil, nil
	} else if m, ok := cur.(metav1.Object); !ok || m.GetUID() != rs.UID || m.GetDeletionTimestamp() != nil {
		return nil, nil
	}
	out, err := ownerref.Adopt(ctx, c.w, c.pods, p.Namespace, p.Name, p.UID, kd.controllerRef(rs), c.request(kd, cause))
	if err != nil || out == nil {
		return nil, err
	}
	pod, ok := out.(*corev1.Pod)
	if !ok {
		return nil, fmt.Errorf("replicaset: pods decode to %T", out)
	}
	return pod, nil
}

// errSkip ends a mutation that has nothing to do.
var errSkip = errors.New("replicaset: nothing to do")

// release removes the set's owner reference from a pod it no longer selects.
func (c *Controller) release(ctx context.Context, kd *setKind, rs *appsv1.ReplicaSet, p *corev1.Pod, cause uint64) error {
	return ownerref.Release(ctx, c.w, c.pods, p.Namespace, p.Name, p.UID, []types.UID{rs.UID}, c.request(kd, cause))
}

// manageReplicas creates or deletes pods so that the set gets closer to spec.replicas, at most
// BurstReplicas at a time.
func (c *Controller) manageReplicas(ctx context.Context, kd *setKind, key eventlog.Key, rs *appsv1.ReplicaSet, pods []*corev1.Pod, createCause, deleteCause uint64) error {
	diff := len(pods) - int(replicasOf(rs))
	switch {
	case diff < 0:
		n := min(-diff, c.cfg.BurstReplicas)
		c.exp.ExpectCreations(key, n)
		called, last, err := slowstart.Batch(n, c.startBatch(key), func(int) error {
			err := c.createPod(ctx, kd, rs, createCause)
			if err != nil {
				c.exp.CreationObserved(key) // it will not come
			}
			return err
		})
		c.exp.Lower(key, n-called, 0) // the creations skipped are retried by a later reconcile
		c.noteBatch(key, last, err)
		return err
	case diff > 0:
		n := min(diff, c.cfg.BurstReplicas)
		toDelete := podsToDelete(pods, c.relatedPods(rs), n)
		keys := make([]eventlog.Key, len(toDelete))
		for i, p := range toDelete {
			keys[i] = eventlog.Key{Resource: "pods", Namespace: p.Namespace, Name: p.Name}
		}
		c.exp.ExpectDeletions(key, keys)
		var wg sync.WaitGroup
		errs := make([]error, len(toDelete))
		for i, p := range toDelete {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.deletePod(ctx, kd, rs, p, deleteCause)
				if err == nil {
					return
				}
				c.exp.DeletionObserved(key, keys[i])
				if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					errs[i] = err // else gone or replaced already: nothing to report
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	return nil
}

// startBatch is the first batch size of a set's next creations: 1 for a set that has not
// created pods yet or whose last creation failed, else the size its last batch reached, so that
// a set scaling up by many bursts does not start each burst over at a single pod.
func (c *Controller) startBatch(set eventlog.Key) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.batches[set], 1)
}

func (c *Controller) noteBatch(set eventlog.Key, last int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		delete(c.batches, set)
		return
	}
	c.batches[set] = last
}

// podFromTemplate is the pod a set creates: its template, with the set as controller.
func podFromTemplate(kd *setKind, rs *appsv1.ReplicaSet) (*corev1.Pod, error) {
	t := rs.Spec.Template.DeepCopy()
	if len(t.Labels) == 0 {
		return nil, errors.New("unable to create pods, no labels")
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       rs.Namespace,
			GenerateName:    rs.Name + "-",
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			Finalizers:      t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{kd.controllerRef(rs)},
		},
		Spec: t.Spec,
	}
	return pod, nil
}

func (c *Controller) createPod(ctx context.Context, kd *setKind, rs *appsv1.ReplicaSet, cause uint64) error {
	pod, err := podFromTemplate(kd, rs)
	if err == nil {
		var out runtime.Object
		out, err = c.w.Create(ctx, c.pods, pod, c.request(kd, cause))
		if err == nil {
			c.event(kd, rs, cause, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", out.(*corev1.Pod).Name)
			return nil
		}
	}
	if !namespaceTerminating(err) {
		c.event(kd, rs, cause, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
	}
	return fmt.Errorf("replicaset: creating a pod of %s/%s: %w", rs.Namespace, rs.Name, err)
}

func namespaceTerminating(err error) bool {
	var se apierrors.APIStatus
	if !errors.As(err, &se) || se.Status().Details == nil {
		return false
	}
	for _, c := range se.Status().Details.Causes {
		if c.Type == corev1.NamespaceTerminatingCause {
			return true
		}
	}
	return false
}

func (c *Controller) deletePod(ctx context.Context, kd *setKind, rs *appsv1.ReplicaSet, p *corev1.Pod, cause uint64) error {
	uid := p.UID
	_, _, err := c.w.Delete(ctx, c.pods, p.Namespace, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}, c.request(kd, cause))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return err
	}
	if err != nil {
		c.event(kd, rs, cause, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
		return fmt.Errorf("replicaset: deleting pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	c.event(kd, rs, cause, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
	return nil
}

func (c *Controller) event(kd *setKind, rs *appsv1.ReplicaSet, cause uint64, typ, reason, format string, args ...any) {
	if kd.events == nil {
		return
	}
	obj, ok := c.ix.Object(eventlog.Key{Group: kd.k.Group, Resource: kd.k.Resource, Namespace: rs.Namespace, Name: rs.Name})
	if !ok {
		return
	}
	kd.events.Eventf(obj, cause, typ, reason, format, args...)
}

// calculateStatus is the status of a set controlling pods.
func calculateStatus(rs *appsv1.ReplicaSet, pods []*corev1.Pod, manageErr error, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	templateLabels := labels.Set(rs.Spec.Template.Labels).AsSelectorPreValidated()
	var fully, ready, available int32
	for _, p := range pods {
		if templateLabels.Matches(labels.Set(p.Labels)) {
			fully++
		}
		if isPodReady(p) {
			ready++
			if isPodAvailable(p, rs.Spec.MinReadySeconds, metav1.NewTime(now)) {
				available++
			}
		}
	}
	failure := condition(st.Conditions, appsv1.ReplicaSetReplicaFailure)
	switch {
	case manageErr != nil && failure == nil:
		reason := ""
		if diff := len(pods) - int(replicasOf(rs)); diff < 0 {
			reason = "FailedCreate"
		} else if diff > 0 {
			reason = "FailedDelete"
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now), Reason: reason, Message: manageErr.Error(),
		})
	case manageErr == nil && failure != nil:
		st.Conditions = slices.DeleteFunc(st.Conditions, func(c appsv1.ReplicaSetCondition) bool {
			return c.Type == appsv1.ReplicaSetReplicaFailure
		})
	}
	st.Replicas = int32(len(pods))
	st.FullyLabeledReplicas = fully
	st.ReadyReplicas = ready
	st.AvailableReplicas = available
	return st
}

func condition(cs []appsv1.ReplicaSetCondition, t appsv1.ReplicaSetConditionType) *appsv1.ReplicaSetCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// updateStatus writes the status if it changed, with observedGeneration the generation read.
func (c *Controller) updateStatus(ctx context.Context, kd *setKind, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus, cause uint64) error {
	st.ObservedGeneration = rs.Generation
	if apiequality.Semantic.DeepEqual(rs.Status, st) {
		return nil
	}
	_, err := c.w.Modify(ctx, kd.k, rs.Namespace, rs.Name, c.request(kd, cause), registry.UpdateOptions{Subresource: "status"},
		func(cur runtime.Object) (runtime.Object, error) {
			m, ok := cur.(metav1.Object)
			if !ok || m.GetUID() != rs.UID {
				return nil, errSkip
			}
			if err := kd.setStatus(cur, st); err != nil {
				return nil, err
			}
			return cur, nil
		})
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("replicaset: updating the status of %s/%s: %w", rs.Namespace, rs.Name, err)
}

// matchingSets returns the keys of the sets of kd in ns whose selector matches lbls.
func (c *Controller) matchingSets(kd *setKind, ns string, lbls labels.Set) []eventlog.Key {
	var out []eventlog.Key
	for _, obj := range c.ix.Objects(kd.k.GroupResource(), ns, nil) {
		rs, err := kd.view(obj)
		if err != nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(lbls) {
			continue
		}
		out = append(out, eventlog.Key{Group: kd.k.Group, Resource: kd.k.Resource, Namespace: ns, Name: rs.Name})
	}
	return out
}
