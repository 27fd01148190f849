package statefulset

// Ported from k8s.io/kubernetes pkg/controller/statefulset/stateful_pod_control.go (Copyright
// The Kubernetes Authors, Apache License 2.0).

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// errSkip ends a mutation that has nothing to do.
var errSkip = errors.New("statefulset: nothing to do")

// recordPodEvent records verb's outcome on a pod, with Kubernetes' reasons and messages.
func (c *Controller) recordPodEvent(verb string, set *appsv1.StatefulSet, pod *corev1.Pod, cause uint64, err error) {
	title := strings.ToUpper(verb[:1]) + verb[1:]
	if err == nil {
		c.event(set, cause, corev1.EventTypeNormal, "Successful"+title, "%s Pod %s in StatefulSet %s successful", verb, pod.Name, set.Name)
		return
	}
	c.event(set, cause, corev1.EventTypeWarning, "Failed"+title, "%s Pod %s in StatefulSet %s failed error: %s", verb, pod.Name, set.Name, err)
}

func (c *Controller) recordClaimEvent(verb string, set *appsv1.StatefulSet, pod *corev1.Pod, claim *corev1.PersistentVolumeClaim, cause uint64, err error) {
	title := strings.ToUpper(verb[:1]) + verb[1:]
	if err == nil {
		c.event(set, cause, corev1.EventTypeNormal, "Successful"+title, "%s Claim %s Pod %s in StatefulSet %s success", verb, claim.Name, pod.Name, set.Name)
		return
	}
	c.event(set, cause, corev1.EventTypeWarning, "Failed"+title, "%s Claim %s for Pod %s in StatefulSet %s failed error: %s", verb, claim.Name, pod.Name, set.Name, err)
}

// createStatefulPod creates the pod's claims, then the pod. A pod of that name existing already
// (this reconcile's index had not seen it yet) is no error: nothing is created twice.
func (c *Controller) createStatefulPod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod, cause uint64) error {
	if err := c.createPersistentVolumeClaims(ctx, set, pod, cause); err != nil {
		c.recordPodEvent("create", set, pod, cause, err)
		return err
	}
	out, err := c.w.Create(ctx, c.pods, pod, c.request(cause))
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		created := out.(*corev1.Pod)
		if err = c.updatePodClaimForRetentionPolicy(ctx, set, created, cause); err != nil {
			c.recordPodEvent("update", set, pod, cause, err)
			return err
		}
	}
	c.recordPodEvent("create", set, pod, cause, err)
	if err != nil {
		return fmt.Errorf("statefulset: creating pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// deleteStatefulPod deletes the pod, if it is still the one read.
func (c *Controller) deleteStatefulPod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod, cause uint64) error {
	uid := pod.UID
	_, _, err := c.w.Delete(ctx, c.pods, pod.Namespace, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}, c.request(cause))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone already, or replaced
	}
	c.recordPodEvent("delete", set, pod, cause, err)
	if err != nil {
		return fmt.Errorf("statefulset: deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// updateStatefulPod restores the pod's identity and storage and its claims' retention owners.
func (c *Controller) updateStatefulPod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod, cause uint64) error {
	if !storageMatches(set, pod) {
		if err := c.createPersistentVolumeClaims(ctx, set, pod, cause); err != nil {
			c.recordPodEvent("update", set, pod, cause, err)
			return err
		}
	}
	if match, err := c.claimsMatchRetentionPolicy(set, pod); err == nil && !match {
		if err := c.updatePodClaimForRetentionPolicy(ctx, set, pod, cause); err != nil {
			c.recordPodEvent("update", set, pod, cause, err)
			return err
		}
	}
	if identityMatches(set, pod) && storageMatches(set, pod) {
		return nil
	}
	uid := pod.UID
	_, err := c.w.Modify(ctx, c.pods, pod.Namespace, pod.Name, c.request(cause), registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		p, ok := cur.(*corev1.Pod)
		if !ok || p.UID != uid {
			return nil, errSkip
		}
		p = p.DeepCopy()
		if !identityMatches(set, p) {
			updateIdentity(set, p)
		}
		if !storageMatches(set, p) {
			updateStorage(set, p)
		}
		return p, nil
	})
	if errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	c.recordPodEvent("update", set, pod, cause, err)
	if err != nil {
		return fmt.Errorf("statefulset: updating pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// claimKind is the PersistentVolumeClaim kind, if the catalog serves it.
func (c *Controller) claimKind() (*kinds.Kind, error) {
	k, ok := c.w.Catalog().ByGroupResource(claimsResource)
	if !ok {
		return nil, errors.New("statefulset: the catalog has no persistentvolumeclaims")
	}
	return k, nil
}

// getClaim returns the index's claim ns/name, nil if there is none.
func (c *Controller) getClaim(ns, name string) *corev1.PersistentVolumeClaim {
	obj, ok := c.ix.Object(eventlog.Key{Resource: claimsResource.Resource, Namespace: ns, Name: name})
	if !ok {
		return nil
	}
	claim, _ := obj.(*corev1.PersistentVolumeClaim)
	return claim
}

// createPersistentVolumeClaims creates the pod's missing claims; a claim being deleted is an
// error (the pod waits for it to go).
func (c *Controller) createPersistentVolumeClaims(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod, cause uint64) error {
	if len(set.Spec.VolumeClaimTemplates) == 0 {
		return nil
	}
	k, err := c.claimKind()
	if err != nil {
		return err
	}
	var errs []error
	for _, claim := range getPersistentVolumeClaims(set, pod) {
		if cur := c.getClaim(claim.Namespace, claim.Name); cur != nil {
			if cur.DeletionTimestamp != nil {
				errs = append(errs, fmt.Errorf("pvc %s is being deleted", claim.Name))
			}
			continue
		}
		_, err := c.w.Create(ctx, k, &claim, c.request(cause))
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to create PVC %s: %w", claim.Name, err))
		}
		c.recordClaimEvent("create", set, pod, &claim, cause, err)
	}
	return errors.Join(errs...)
}

// podClaimIsStale reports whether a claim of the pod, with WhenScaled=Delete, still belongs to
// an earlier pod of the ordinal (the garbage collector is about to delete it).
func (c *Controller) podClaimIsStale(set *appsv1.StatefulSet, pod *corev1.Pod) bool {
	if getPersistentVolumeClaimRetentionPolicy(set).WhenScaled == appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		return false
	}
	for _, claim := range getPersistentVolumeClaims(set, pod) {
		cur := c.getClaim(claim.Namespace, claim.Name)
		if cur == nil {
			continue
		}
		for _, ref := range cur.OwnerReferences {
			if ref.Kind == "Pod" && ref.Name == pod.Name && ref.UID != pod.UID {
				return true
			}
		}
	}
	return false
}

// claimOwners says which owners the retention policy wants on the claims of the pod: the set
// (WhenDeleted=Delete, while the pod is in range), the pod (WhenScaled=Delete, once its ordinal
// is scaled away).
func claimOwners(set *appsv1.StatefulSet, pod *corev1.Pod) (wantSet, wantPod bool) {
	p := getPersistentVolumeClaimRetentionPolicy(set)
	scaledDown := !podInOrdinalRange(pod, set)
	del := appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	switch {
	case p.WhenScaled != del && p.WhenDeleted != del:
		return false, false
	case p.WhenScaled != del && p.WhenDeleted == del:
		return true, false
	case p.WhenScaled == del && p.WhenDeleted != del:
		return false, scaledDown
	default:
		return !scaledDown, scaledDown
	}
}

func hasOwner(claim *corev1.PersistentVolumeClaim, uid string) bool {
	for _, r := range claim.OwnerReferences {
		if string(r.UID) == uid {
			return true
		}
	}
	return false
}

// claimsMatchRetentionPolicy reports whether the pod's existing claims carry the owners the
// retention policy wants.
func (c *Controller) claimsMatchRetentionPolicy(set *appsv1.StatefulSet, pod *corev1.Pod) (bool, error) {
	if len(set.Spec.VolumeClaimTemplates) == 0 {
		return true, nil
	}
	wantSet, wantPod := claimOwners(set, pod)
	for _, claim := range getPersistentVolumeClaims(set, pod) {
		cur := c.getClaim(claim.Namespace, claim.Name)
		if cur == nil {
			continue
		}
		if hasOwner(cur, string(set.UID)) != wantSet || (pod.UID != "" && hasOwner(cur, string(pod.UID)) != wantPod) {
			return false, nil
		}
	}
	return true, nil
}

// updatePodClaimForRetentionPolicy sets and removes the owner references of the pod's claims as
// the retention policy wants.
func (c *Controller) updatePodClaimForRetentionPolicy(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod, cause uint64) error {
	if len(set.Spec.VolumeClaimTemplates) == 0 {
		return nil
	}
	k, err := c.claimKind()
	if err != nil {
		return err
	}
	wantSet, wantPod := claimOwners(set, pod)
	setRef := metav1.OwnerReference{APIVersion: controllerKind.GroupVersion().String(), Kind: controllerKind.Kind, Name: set.Name, UID: set.UID}
	podRef := metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
	var errs []error
	for _, claim := range getPersistentVolumeClaims(set, pod) {
		_, err := c.w.Modify(ctx, k, claim.Namespace, claim.Name, c.request(cause), registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
			pvc, ok := cur.(*corev1.PersistentVolumeClaim)
			if !ok {
				return nil, fmt.Errorf("statefulset: claims decode to %T", cur)
			}
			pvc = pvc.DeepCopy()
			changed := setOwner(pvc, setRef, wantSet)
			if pod.UID != "" {
				changed = setOwner(pvc, podRef, wantPod) || changed
			}
			if !changed {
				return nil, errSkip
			}
			return pvc, nil
		})
		if err != nil && !errors.Is(err, errSkip) && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("statefulset: updating the owners of claim %s/%s: %w", claim.Namespace, claim.Name, err))
		}
	}
	return errors.Join(errs...)
}

// setOwner adds ref to the claim's owners if want, removes it if not; it reports a change.
func setOwner(pvc *corev1.PersistentVolumeClaim, ref metav1.OwnerReference, want bool) bool {
	has := hasOwner(pvc, string(ref.UID))
	switch {
	case want && !has:
		pvc.OwnerReferences = append(pvc.OwnerReferences, ref)
		return true
	case !want && has:
		refs := pvc.OwnerReferences[:0:0]
		for _, r := range pvc.OwnerReferences {
			if r.UID != ref.UID {
				refs = append(refs, r)
			}
		}
		pvc.OwnerReferences = refs
		return true
	}
	return false
}
