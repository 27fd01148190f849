package scheduler

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	storagehelpers "k8s.io/component-helpers/storage/volume"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/scheduler/placement"
	"github.com/logplane/logplane/registry"
)

// The reasons of kube-scheduler's VolumeBinding plug-in.
const (
	ReasonVolumeBindConflict = "node(s) didn't find available persistent volumes to bind"
	ReasonVolumeNodeConflict = "node(s) had volume node affinity conflict"
	reasonUnboundImmediate   = "pod has unbound immediate PersistentVolumeClaims"
	reasonMissingPV          = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
)

var (
	claimsResource  = schema.GroupResource{Resource: "persistentvolumeclaims"}
	volumesResource = schema.GroupResource{Resource: "persistentvolumes"}
	classesResource = storagev1.Resource("storageclasses")
)

// volumeStore is what the VolumeBinding part of the scheduler reads.
type volumeStore interface {
	Get(key eventlog.Key) (*projections.Object, bool)
	List(q projections.Query) ([]*projections.Object, uint64)
}

// volumeWriter writes what VolumeBinding decides: a static volume's claimRef, a claim's
// selected node.
type volumeWriter interface {
	Update(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Catalog() *kinds.Catalog
}

// podVolumes is what VolumeBinding works out of one pod's claims.
type podVolumes struct {
	bound   []*corev1.PersistentVolume      // the volumes of its bound claims
	unbound []*corev1.PersistentVolumeClaim // its claims that wait for a node (WaitForFirstConsumer)
	classes map[string]*storagev1.StorageClass
	all     []*corev1.PersistentVolume // every volume, for the unbound claims to match
}

func decodeAs[T runtime.Object](o *projections.Object) (T, bool) {
	var zero T
	obj, err := o.Decode()
	if err != nil {
		return zero, false
	}
	t, ok := obj.(T)
	return t, ok
}

// volumesOf is VolumeBinding's PreFilter: the pod's claims must exist and not be going away, and
// a claim not bound yet must be of a class that binds at the first consumer. nil, nil: the pod
// has no claims.
func (s *Scheduler) volumesOf(pod *corev1.Pod) (*podVolumes, error) {
	if s.volStore == nil {
		return nil, nil
	}
	var pv *podVolumes
	for _, v := range pod.Spec.Volumes {
		name := ""
		switch {
		case v.PersistentVolumeClaim != nil:
			name = v.PersistentVolumeClaim.ClaimName
		case v.Ephemeral != nil:
			name = pod.Name + "-" + v.Name
		default:
			continue
		}
		if pv == nil {
			pv = &podVolumes{classes: map[string]*storagev1.StorageClass{}}
		}
		o, ok := s.volStore.Get(eventlog.Key{Resource: claimsResource.Resource, Namespace: pod.Namespace, Name: name})
		if !ok {
			return nil, fmt.Errorf("persistentvolumeclaim %q not found", name)
		}
		claim, ok := decodeAs[*corev1.PersistentVolumeClaim](o)
		if !ok {
			return nil, fmt.Errorf("persistentvolumeclaim %q cannot be read", name)
		}
		if claim.DeletionTimestamp != nil {
			return nil, fmt.Errorf("persistentvolumeclaim %q is being deleted", name)
		}
		if claim.Spec.VolumeName != "" {
			vo, ok := s.volStore.Get(eventlog.Key{Resource: volumesResource.Resource, Name: claim.Spec.VolumeName})
			if !ok {
				if metav1.HasAnnotation(claim.ObjectMeta, storagehelpers.AnnBindCompleted) {
					return nil, errors.New(reasonMissingPV)
				}
				return nil, errors.New(reasonUnboundImmediate)
			}
			vol, ok := decodeAs[*corev1.PersistentVolume](vo)
			if !ok {
				return nil, fmt.Errorf("persistentvolume %q cannot be read", claim.Spec.VolumeName)
			}
			pv.bound = append(pv.bound, vol)
			continue
		}
		class := storagehelpers.GetPersistentVolumeClaimClass(claim)
		sc, ok := pv.classes[class]
		if !ok && class != "" {
			if co, found := s.volStore.Get(eventlog.Key{Group: classesResource.Group, Resource: classesResource.Resource, Name: class}); found {
				sc, _ = decodeAs[*storagev1.StorageClass](co)
			}
			pv.classes[class] = sc
		}
		if sc == nil || sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
			return nil, errors.New(reasonUnboundImmediate)
		}
		pv.unbound = append(pv.unbound, claim)
	}
	if pv != nil && len(pv.unbound) > 0 {
		objs, _ := s.volStore.List(projections.Query{Resource: volumesResource})
		for _, o := range objs {
			if vol, ok := decodeAs[*corev1.PersistentVolume](o); ok {
				pv.all = append(pv.all, vol)
			}
		}
	}
	return pv, nil
}

// match is VolumeBinding's FindPodVolumes on one node: the bound volumes' node affinity must
// allow the node; each unbound claim takes a static volume that fits it there (each volume
// once), or else is provisioned there if its class has a provisioner. It returns the static
// volumes chosen, by claim, and why the node does not do.
func (pv *podVolumes) match(n *corev1.Node) (map[*corev1.PersistentVolumeClaim]*corev1.PersistentVolume, *placement.Status) {
	for _, vol := range pv.bound {
		if err := storagehelpers.CheckNodeAffinity(vol, n.Labels); err != nil {
			return nil, &placement.Status{Code: placement.UnschedulableAndUnresolvable, Reasons: []string{ReasonVolumeNodeConflict}}
		}
	}
	var static map[*corev1.PersistentVolumeClaim]*corev1.PersistentVolume
	chosen := map[string]*corev1.PersistentVolume{}
	for _, claim := range pv.unbound {
		var candidates []*corev1.PersistentVolume
		for _, vol := range pv.all {
			if storagehelpers.CheckAccessModes(claim, vol) {
				candidates = append(candidates, vol)
			}
		}
		vol, err := storagehelpers.FindMatchingVolume(claim, candidates, n, chosen, true, false)
		if err == nil && vol != nil {
			chosen[vol.Name] = vol
			if static == nil {
				static = map[*corev1.PersistentVolumeClaim]*corev1.PersistentVolume{}
			}
			static[claim] = vol
			continue
		}
		sc := pv.classes[storagehelpers.GetPersistentVolumeClaimClass(claim)]
		if sc == nil || sc.Provisioner == storagehelpers.NotSupportedProvisioner {
			return nil, &placement.Status{Code: placement.UnschedulableAndUnresolvable, Reasons: []string{ReasonVolumeBindConflict}}
		}
	}
	return static, nil
}

// filter is the placement filter of the pod's volumes.
func (pv *podVolumes) filter(n *corev1.Node) *placement.Status {
	_, st := pv.match(n)
	return st
}

// bindVolumes is VolumeBinding's PreBind, for the node chosen: a static volume chosen gets the
// claim as its claimRef (the binder finishes the binding); a claim to provision gets the node as
// its volume.kubernetes.io/selected-node (the node's agent provisions, the binder binds).
func (s *Scheduler) bindVolumes(ctx context.Context, pv *podVolumes, node *corev1.Node, cause uint64) error {
	if pv == nil || len(pv.unbound) == 0 {
		return nil
	}
	if s.volWriter == nil {
		return errors.New("scheduler: no registry to bind volumes with")
	}
	static, st := pv.match(node)
	if st != nil {
		return fmt.Errorf("scheduler: node %s no longer fits the pod's volumes: %v", node.Name, st.Reasons)
	}
	cat := s.volWriter.Catalog()
	claimKind, _ := cat.ByGroupResource(claimsResource)
	volumeKind, _ := cat.ByGroupResource(volumesResource)
	req := registry.Request{Actor: registry.Reconciler(Name), Cause: cause}
	for _, claim := range pv.unbound {
		if vol, ok := static[claim]; ok {
			next, dirty, err := storagehelpers.GetBindVolumeToClaim(vol, claim)
			if err != nil {
				return err
			}
			if dirty {
				if _, err := s.volWriter.Update(ctx, volumeKind, next, req); err != nil {
					return fmt.Errorf("scheduler: binding volume %s to claim %s/%s: %w", vol.Name, claim.Namespace, claim.Name, err)
				}
			}
			continue
		}
		if claim.Annotations[storagehelpers.AnnSelectedNode] == node.Name {
			continue
		}
		next := claim.DeepCopy()
		metav1.SetMetaDataAnnotation(&next.ObjectMeta, storagehelpers.AnnSelectedNode, node.Name)
		if _, err := s.volWriter.Update(ctx, claimKind, next, req); err != nil {
			return fmt.Errorf("scheduler: selecting node %s for claim %s/%s: %w", node.Name, claim.Namespace, claim.Name, err)
		}
	}
	return nil
}

// nodeObject returns the node object of a name, as the projection holds it.
func (s *Scheduler) nodeObject(name string) (*corev1.Node, bool) {
	o, ok := s.volStore.Get(eventlog.Key{Resource: nodesResource.Resource, Name: name})
	if !ok {
		return nil, false
	}
	return decodeAs[*corev1.Node](o)
}
