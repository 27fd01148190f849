package registry

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// LocalProvisioner is the provisioner of the node agents' local volumes: the StorageClass
// `local` names it, and the volumes they make carry it (pv.kubernetes.io/provisioned-by).
const LocalProvisioner = "logplane.io/local"

// What marks the volumes of the node agents' local provisioner.
const (
	annProvisionedBy    = "pv.kubernetes.io/provisioned-by"
	annSelectedNode     = "volume.kubernetes.io/selected-node"
	labelHostname       = "kubernetes.io/hostname"
	localVolumePrefix   = "pvc-"
	claimsResourceName  = "persistentvolumeclaims"
	volumesResourceName = "persistentvolumes"
)

// checkNodeVolumeWrite lets a node's local provisioner write the PersistentVolumes it makes,
// and no other: it may create the volume pvc-<claim uid> of a claim the scheduler selected it
// for (volume.kubernetes.io/selected-node), provisioned by logplane.io/local, pre-bound to that
// claim and with a node affinity to this node alone; and update (grow) or delete a volume that
// is such a volume of its own.
func (r *Registry) checkNodeVolumeWrite(ctx context.Context, node string, key eventlog.Key, ev *eventv1.ObjectChanged, expect uint64,
	forbid func(string, ...any) error) error {
	k, ok := r.catalog.ByGroupResource(schema.GroupResource{Resource: volumesResourceName})
	if !ok {
		return errors.New("registry: no persistentvolumes in the catalog")
	}
	decode := func(e *eventv1.ObjectChanged) (*corev1.PersistentVolume, error) {
		obj, err := k.Decode(e.GetEncoding(), e.GetObject())
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", eventlog.ErrInvalid, key, err)
		}
		pv, ok := obj.(*corev1.PersistentVolume)
		if !ok {
			return nil, fmt.Errorf("%w: %s holds a %T", eventlog.ErrInvalid, key, obj)
		}
		return pv, nil
	}
	cur, err := r.log.Get(ctx, key)
	switch {
	case errors.Is(err, eventlog.ErrNotFound):
		if ev.GetType() != eventv1.ChangeType_CHANGE_TYPE_ADDED {
			return forbid("write persistentvolume %s", key.Name)
		}
		pv, err := decode(ev)
		if err != nil {
			return err
		}
		return r.checkProvisionedVolume(ctx, node, pv, forbid)
	case err != nil:
		return err
	}
	if cur.Seq != expect {
		return fmt.Errorf("%w: %s is not at revision %d", eventlog.ErrConflict, key, expect)
	}
	old, err := decode(cur.Event)
	if err != nil {
		return err
	}
	if !localVolumeOf(old, node) {
		return forbid("write persistentvolume %s, which it did not provision", key.Name)
	}
	if ev.GetType() == eventv1.ChangeType_CHANGE_TYPE_DELETED {
		return nil
	}
	next, err := decode(ev)
	if err != nil {
		return err
	}
	if !localVolumeOf(next, node) {
		return forbid("give persistentvolume %s to another node", key.Name)
	}
	return nil
}

// checkProvisionedVolume checks a volume a node creates against the claim it is for.
func (r *Registry) checkProvisionedVolume(ctx context.Context, node string, pv *corev1.PersistentVolume, forbid func(string, ...any) error) error {
	ref := pv.Spec.ClaimRef
	if !localVolumeOf(pv, node) || ref == nil || ref.UID == "" || pv.Name != localVolumePrefix+string(ref.UID) {
		return forbid("create persistentvolume %s: only a volume pvc-<claim uid> it provisions for a claim, bound to it and to this node", pv.Name)
	}
	ck, ok := r.catalog.ByGroupResource(schema.GroupResource{Resource: claimsResourceName})
	if !ok {
		return errors.New("registry: no persistentvolumeclaims in the catalog")
	}
	rec, err := r.log.Get(ctx, eventlog.Key{Resource: claimsResourceName, Namespace: ref.Namespace, Name: ref.Name})
	if errors.Is(err, eventlog.ErrNotFound) {
		return forbid("create persistentvolume %s: claim %s/%s does not exist", pv.Name, ref.Namespace, ref.Name)
	}
	if err != nil {
		return err
	}
	obj, err := ck.Decode(rec.Event.GetEncoding(), rec.Event.GetObject())
	if err != nil {
		return fmt.Errorf("%w: claim %s/%s: %v", eventlog.ErrInvalid, ref.Namespace, ref.Name, err)
	}
	claim, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok || claim.UID != ref.UID || claim.Annotations[annSelectedNode] != node {
		return forbid("create persistentvolume %s: claim %s/%s is not selected for it", pv.Name, ref.Namespace, ref.Name)
	}
	return nil
}

// localVolumeOf says whether pv is one of node's local provisioner.
func localVolumeOf(pv *corev1.PersistentVolume, node string) bool {
	return node != "" && LocalVolumeNode(pv) == node
}

// LocalVolumeNode is the node whose local provisioner made pv (provisioned by LocalProvisioner,
// with a node affinity to that node alone, as the node agents write it), or "".
func LocalVolumeNode(pv *corev1.PersistentVolume) string {
	if pv.Annotations[annProvisionedBy] != LocalProvisioner || pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchFields) != 0 || len(terms[0].MatchExpressions) != 1 {
		return ""
	}
	e := terms[0].MatchExpressions[0]
	if e.Key != labelHostname || e.Operator != corev1.NodeSelectorOpIn || len(e.Values) != 1 {
		return ""
	}
	return e.Values[0]
}
