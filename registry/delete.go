package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// Delete deletes the object, or starts its deletion. It returns the object as it is after the
// call and whether it is gone:
//   - with preconditions (uid, resourceVersion) that do not hold: 409 Conflict;
//   - an object of a kind whose deletion is a phase (Strategy.Terminate: a Namespace is marked
//     Terminating) is marked; the namespace lifecycle then deletes its content and removes it;
//   - an object with finalizers (including the orphan or foregroundDeletion finalizer that the
//     propagation policy asks for, recorded for the garbage collector) gets a deletionTimestamp
//     and stays until its finalizers are removed;
//   - an object of a kind with a grace period (Strategy.GracePeriod: a pod bound to a node) is
//     deleted gracefully: deletionTimestamp is now plus the grace period, and the node agent
//     removes it once its containers are stopped (by deleting it again with a grace period of
//     0); a pod on no node, or already finished, goes at once;
//   - anything else is removed: a tombstone is appended, carrying the last state.
func (r *Registry) Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req Request) (runtime.Object, bool, error) {
	key := keyOf(k, ns, name)
	fromLog := false
	for attempt := 0; ; attempt++ {
		cur, err := r.current(ctx, k, key, fromLog)
		if err != nil {
			return nil, false, err
		}
		m, _ := meta.Accessor(cur.obj)
		// Preconditions are checked against the revision read, on every attempt (rest.BeforeDelete;
		// Kubernetes names the kind, not the resource, in these messages).
		if p := opts.Preconditions; p != nil {
			byKind := schema.GroupResource{Group: k.Group, Resource: k.Kind}
			if p.UID != nil && *p.UID != m.GetUID() {
				return nil, false, apierrors.NewConflict(byKind, name, fmt.Errorf(
					"the UID in the precondition (%s) does not match the UID in record (%s). The object might have been deleted and then recreated", *p.UID, m.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
				return nil, false, apierrors.NewConflict(byKind, name, fmt.Errorf(
					"the ResourceVersion in the precondition (%s) does not match the ResourceVersion in record (%s). The object might have been modified", *p.ResourceVersion, m.GetResourceVersion()))
			}
		}
		obj, gone, changed, err := r.deletion(k, cur.obj, opts)
		if err != nil {
			return nil, false, err
		}
		if !changed {
			return cur.obj, false, nil // deletion already in progress
		}
		typ := eventv1.ChangeType_CHANGE_TYPE_MODIFIED
		if gone {
			typ = eventv1.ChangeType_CHANGE_TYPE_DELETED
		}
		reason := req.Reason
		if reason == "" {
			reason = ReasonDelete
		}
		ev, err := r.newEvent(k, obj, typ, reason, req)
		if err != nil {
			return nil, false, apierrors.NewInternalError(err)
		}
		if req.DryRun || len(opts.DryRun) > 0 {
			return obj, gone, nil
		}
		if ev, err = r.seal(ctx, k, ev); err != nil {
			return nil, false, err
		}
		seq, err := r.log.Append(ctx, ev, cur.seq)
		// Another writer got there first: read again and check the preconditions on what it
		// wrote, as Kubernetes' GuaranteedUpdate does (a uid precondition still holds, a
		// resourceVersion one no longer does).
		if errors.Is(err, eventlog.ErrConflict) && attempt < maxAttempts {
			fromLog = true
			continue
		}
		if err != nil {
			return nil, false, statusError(k, name, err)
		}
		if gone {
			// What the object held (a Service's cluster IP and node ports) is free again.
			r.release(context.WithoutCancel(ctx), k, nil, cur.obj, req.Cause)
		}
		if err := r.store.WaitFor(ctx, seq); err != nil {
			return nil, false, statusError(k, name, err)
		}
		setRV(obj, seq)
		return obj, gone, nil
	}
}

// deletion decides what deleting cur does: the object to write, whether it is a tombstone,
// and whether anything changes at all.
func (r *Registry) deletion(k *kinds.Kind, cur runtime.Object, opts metav1.DeleteOptions) (obj runtime.Object, gone, changed bool, err error) {
	obj = cur.DeepCopyObject()
	m, _ := meta.Accessor(obj)
	now := r.now()

	if k.Strategy.Terminate != nil {
		// A kind whose deletion is a phase of its own (a Namespace turns Terminating).
		return obj, false, k.Strategy.Terminate(obj, now), nil
	}

	finalizers := m.GetFinalizers()
	switch {
	case opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationOrphan,
		opts.PropagationPolicy == nil && opts.OrphanDependents != nil && *opts.OrphanDependents:
		finalizers = addFinalizer(finalizers, metav1.FinalizerOrphanDependents)
	case opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationForeground:
		finalizers = addFinalizer(finalizers, metav1.FinalizerDeleteDependents)
	}
	grace := int64(0) // only kinds with a grace period (pods) terminate gracefully
	if k.Strategy.GracePeriod != nil {
		grace = k.Strategy.GracePeriod(obj)
		if opts.GracePeriodSeconds != nil {
			grace = max(*opts.GracePeriodSeconds, 0)
		}
	}

	if dt := m.GetDeletionTimestamp(); dt != nil {
		// Deletion is in progress: it may only be shortened, and the new deadline counts from
		// when deletion was first asked for, as in Kubernetes' BeforeDelete (deletionTimestamp
		// minus deletionGracePeriodSeconds stays the time of the request).
		if grace == 0 && len(finalizers) == 0 {
			return obj, true, true, nil
		}
		if old := m.GetDeletionGracePeriodSeconds(); old != nil && grace < *old {
			t := metav1.NewTime(dt.Add(time.Duration(grace-*old) * time.Second))
			m.SetDeletionTimestamp(&t)
			m.SetDeletionGracePeriodSeconds(&grace)
			m.SetFinalizers(finalizers)
			return obj, false, true, nil
		}
		if !slices.Equal(finalizers, m.GetFinalizers()) {
			m.SetFinalizers(finalizers)
			return obj, false, true, nil
		}
		return obj, false, false, nil
	}
	if grace == 0 && len(finalizers) == 0 {
		return obj, true, true, nil
	}
	t := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
	m.SetDeletionTimestamp(&t)
	m.SetDeletionGracePeriodSeconds(&grace)
	m.SetFinalizers(finalizers)
	return obj, false, true, nil
}

func addFinalizer(fs []string, f string) []string {
	if slices.Contains(fs, f) {
		return fs
	}
	return append(slices.Clone(fs), f)
}
