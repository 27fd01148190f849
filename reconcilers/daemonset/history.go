package daemonset

// Ported from k8s.io/kubernetes pkg/controller/daemon/update.go (constructHistory, snapshot,
// cleanupHistory, dedupCurHistories, controlledHistories, Match, getPatch), v1.34.4; Copyright
// The Kubernetes Authors, Apache License 2.0. The daemon set controller keeps its
// ControllerRevisions itself, not through pkg/controller/history.

import (
	"bytes"
	"context"
	"encoding/binary"

	"errors"
	"fmt"
	"hash/fnv"
	"reflect"

	"github.com/davecgh/go-spew/spew"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/logplane/logplane/reconcilers/history"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/ownerref"
	"github.com/logplane/logplane/registry"
)

// computeHash is the controller-revision-hash of a template: Kubernetes' controller.ComputeHash
// (an FNV-32a of the template's deep dump and the collision count, encoded safely).
func computeHash(t *corev1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	printer := spew.ConfigState{Indent: " ", SortKeys: true, DisableMethods: true, SpewKeys: true}
	printer.Fprintf(h, "%#v", *t)
	if collisionCount != nil {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint32(b, uint32(*collisionCount))
		h.Write(b)
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// getPatch is what a ControllerRevision of a daemon set holds: a strategic merge patch that
// replaces spec.template, which `kubectl rollout undo` applies to go back to it.
func getPatch(ds *appsv1.DaemonSet) ([]byte, error) {
	b, err := json.Marshal(ds)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	spec, _ := raw["spec"].(map[string]any)          // a marshalled DaemonSet has a spec
	template, _ := spec["template"].(map[string]any) // and a template
	if template == nil {
		return nil, errors.New("daemonset: the daemon set has no spec.template")
	}
	template["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": template}})
}

// match reports whether the revision holds the daemon set's template.
func match(ds *appsv1.DaemonSet, rev *appsv1.ControllerRevision) (bool, error) {
	patch, err := getPatch(ds)
	if err != nil {
		return false, err
	}
	if bytes.Equal(patch, rev.Data.Raw) {
		return true, nil
	}
	// The same JSON, written differently (by another client), is the same template.
	var a, b any
	if json.Unmarshal(patch, &a) != nil || json.Unmarshal(rev.Data.Raw, &b) != nil {
		return false, nil
	}
	return reflect.DeepEqual(a, b), nil
}

// controlledHistories returns the ControllerRevisions the daemon set controls, adopting the
// orphans its selector matches.
func (c *Controller) controlledHistories(ctx context.Context, ds *appsv1.DaemonSet, selector labels.Selector, cause uint64) ([]*appsv1.ControllerRevision, error) {
	var out []*appsv1.ControllerRevision
	for _, rev := range informer.Controlled[*appsv1.ControllerRevision](c.ix, revisionsResource, ds.UID) {
		if rev.DeletionTimestamp == nil {
			out = append(out, rev)
		}
	}
	adopted, err := ownerref.AdoptOrphans[*appsv1.ControllerRevision](ctx, c.w, c.ix, c.revisions, ds.Namespace, selector, nil, c.controllerRef(ds), c.request(cause))
	return append(out, adopted...), err
}

// constructHistory finds the revisions of the daemon set, the current one (created if missing,
// its revision number raised above the others if needed, duplicates removed) and the old ones.
func (c *Controller) constructHistory(ctx context.Context, ds *appsv1.DaemonSet, selector labels.Selector, cause uint64) (cur *appsv1.ControllerRevision, old []*appsv1.ControllerRevision, err error) {
	histories, err := c.controlledHistories(ctx, ds, selector, cause)
	if err != nil {
		return nil, nil, err
	}
	var current []*appsv1.ControllerRevision
	for _, h := range histories {
		if _, ok := h.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]; !ok {
			// Label it with its name rather than a hash, so that collisions need no care.
			if h, err = c.modifyRevision(ctx, h, cause, func(r *appsv1.ControllerRevision) {
				if r.Labels == nil {
					r.Labels = map[string]string{}
				}
				r.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] = r.Name
			}); err != nil {
				return nil, nil, err
			}
		}
		found, err := match(ds, h)
		if err != nil {
			return nil, nil, err
		}
		if found {
			current = append(current, h)
		} else {
			old = append(old, h)
		}
	}
	next := maxRevision(old) + 1
	if len(current) == 0 {
		cur, err = c.snapshot(ctx, ds, next, cause)
		return cur, old, err
	}
	if cur, err = c.dedupCurHistories(ctx, ds, selector, current, cause); err != nil {
		return nil, nil, err
	}
	if cur.Revision < next {
		if cur, err = c.modifyRevision(ctx, cur, cause, func(r *appsv1.ControllerRevision) { r.Revision = next }); err != nil {
			return nil, nil, err
		}
	}
	return cur, old, nil
}

// modifyRevision changes a revision through the registry.
func (c *Controller) modifyRevision(ctx context.Context, rev *appsv1.ControllerRevision, cause uint64, change func(*appsv1.ControllerRevision)) (*appsv1.ControllerRevision, error) {
	out, err := c.w.Modify(ctx, c.revisions, rev.Namespace, rev.Name, c.request(cause), registry.UpdateOptions{}, func(obj runtime.Object) (runtime.Object, error) {
		r, ok := obj.(*appsv1.ControllerRevision)
		if !ok || r.UID != rev.UID {
			return nil, apierrors.NewConflict(revisionsResource, rev.Name, errors.New("the revision was replaced"))
		}
		change(r)
		return r, nil
	})
	if err != nil {
		return nil, fmt.Errorf("daemonset: updating ControllerRevision %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	r, ok := out.(*appsv1.ControllerRevision)
	if !ok {
		return nil, fmt.Errorf("daemonset: controllerrevisions decode to %T", out)
	}
	return r, nil
}

// dedupCurHistories keeps the newest of the revisions holding the current template, relabels
// the pods of the others with its hash, and deletes them.
func (c *Controller) dedupCurHistories(ctx context.Context, ds *appsv1.DaemonSet, selector labels.Selector, current []*appsv1.ControllerRevision, cause uint64) (*appsv1.ControllerRevision, error) {
	if len(current) == 1 {
		return current[0], nil
	}
	var keep *appsv1.ControllerRevision
	var maxRev int64
	for _, h := range current {
		if h.Revision >= maxRev {
			keep, maxRev = h, h.Revision
		}
	}
	hash := keep.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]
	pods, err := c.claimPods(ctx, ds, selector, cause)
	if err != nil {
		return nil, err
	}
	for _, p := range pods {
		if p.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] == hash {
			continue
		}
		uid := p.UID
		_, err := c.w.Modify(ctx, c.pods, p.Namespace, p.Name, c.request(cause), registry.UpdateOptions{}, func(obj runtime.Object) (runtime.Object, error) {
			q, ok := obj.(*corev1.Pod)
			if !ok || q.UID != uid {
				return nil, apierrors.NewConflict(podsResource, p.Name, errors.New("the pod was replaced"))
			}
			if q.Labels == nil {
				q.Labels = map[string]string{}
			}
			q.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] = hash
			return q, nil
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("daemonset: relabelling pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	for _, h := range current {
		if h.Name == keep.Name {
			continue
		}
		if err := c.deleteRevision(ctx, h, cause); err != nil {
			return nil, err
		}
	}
	return keep, nil
}

func (c *Controller) deleteRevision(ctx context.Context, rev *appsv1.ControllerRevision, cause uint64) error {
	uid := rev.UID
	_, _, err := c.w.Delete(ctx, c.revisions, rev.Namespace, rev.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}, c.request(cause))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("daemonset: deleting ControllerRevision %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	return nil
}

// snapshot creates the revision of the daemon set's current template. A revision of that name
// holding another template is a hash collision: the daemon set's collisionCount goes up, and
// the next reconcile tries the next name.
func (c *Controller) snapshot(ctx context.Context, ds *appsv1.DaemonSet, revision int64, cause uint64) (*appsv1.ControllerRevision, error) {
	patch, err := getPatch(ds)
	if err != nil {
		return nil, err
	}
	hash := computeHash(&ds.Spec.Template, ds.Status.CollisionCount)
	lbls := make(map[string]string, len(ds.Spec.Template.Labels)+1)
	for k, v := range ds.Spec.Template.Labels {
		lbls[k] = v
	}
	lbls[appsv1.DefaultDaemonSetUniqueLabelKey] = hash
	rev := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name: ds.Name + "-" + hash, Namespace: ds.Namespace, Labels: lbls, Annotations: ds.Annotations,
			OwnerReferences: []metav1.OwnerReference{c.controllerRef(ds)},
		},
		Data:     runtime.RawExtension{Raw: patch},
		Revision: revision,
	}
	out, err := c.w.Create(ctx, c.revisions, rev, c.request(cause))
	if err == nil {
		r, ok := out.(*appsv1.ControllerRevision)
		if !ok {
			return nil, fmt.Errorf("daemonset: controllerrevisions decode to %T", out)
		}
		return r, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("daemonset: creating ControllerRevision %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	obj, ok := c.ix.Object(revisionKey(rev.Namespace, rev.Name))
	existing, isRev := obj.(*appsv1.ControllerRevision)
	if !ok || !isRev {
		return nil, fmt.Errorf("daemonset: ControllerRevision %s/%s exists but is not seen yet: %w", rev.Namespace, rev.Name, err)
	}
	if done, err := match(ds, existing); err != nil {
		return nil, err
	} else if done {
		return existing, nil
	}
	// A collision: count it in the daemon set's status, if the count read is still current.
	uid, seen := ds.UID, ds.Status.CollisionCount
	_, err = c.w.Modify(ctx, c.sets, ds.Namespace, ds.Name, c.request(cause), registry.UpdateOptions{Subresource: "status"}, func(obj runtime.Object) (runtime.Object, error) {
		cur, ok := obj.(*appsv1.DaemonSet)
		if !ok || cur.UID != uid {
			return nil, apierrors.NewConflict(daemonSetResource, ds.Name, errors.New("the daemon set was replaced"))
		}
		if !reflect.DeepEqual(cur.Status.CollisionCount, seen) {
			return nil, fmt.Errorf("daemonset: found a stale collision count (%v, expected %v) of DaemonSet %q; will retry until it is updated", seen, cur.Status.CollisionCount, ds.Name)
		}
		n := int32(0)
		if seen != nil {
			n = *seen
		}
		n++
		cur.Status.CollisionCount = &n
		return cur, nil
	})
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("daemonset: hash collision on ControllerRevision %s/%s; collisionCount raised", rev.Namespace, rev.Name)
}

// cleanupHistory deletes the oldest old revisions beyond revisionHistoryLimit, but for those
// whose pods still live.
func (c *Controller) cleanupHistory(ctx context.Context, ds *appsv1.DaemonSet, nodeToPods map[string][]*corev1.Pod, old []*appsv1.ControllerRevision, cause uint64) error {
	limit := 10
	if ds.Spec.RevisionHistoryLimit != nil {
		limit = int(*ds.Spec.RevisionHistoryLimit)
	}
	toKill := len(old) - limit
	if toKill <= 0 {
		return nil
	}
	live := map[string]bool{}
	for _, pods := range nodeToPods {
		for _, p := range pods {
			if h := p.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]; h != "" {
				live[h] = true
			}
		}
	}
	history.SortControllerRevisions(old)
	for _, h := range old {
		if toKill <= 0 {
			break
		}
		if live[h.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]] {
			continue
		}
		if err := c.deleteRevision(ctx, h, cause); err != nil {
			return err
		}
		toKill--
	}
	return nil
}

func maxRevision(hs []*appsv1.ControllerRevision) int64 {
	var m int64
	for _, h := range hs {
		m = max(m, h.Revision)
	}
	return m
}
