package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"
	storagehelpers "k8s.io/component-helpers/storage/volume"

	"github.com/logplane/logplane/dataplane/localvolume"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/nodeagent/podworker"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// LocalProvisioner is the provisioner of the StorageClasses whose volumes the node agents make
// (the default class `local`).
const LocalProvisioner = registry.LocalProvisioner

// The events of the local provisioner on a claim, as Kubernetes' external provisioners word
// them.
const (
	ReasonProvisioning          = "Provisioning"
	ReasonProvisioningSucceeded = "ProvisioningSucceeded"
	ReasonProvisioningFailed    = "ProvisioningFailed"
	ReasonVolumeResizeFailed    = "VolumeResizeFailed"
	ReasonVolumeResizeSucceeded = "VolumeResizeSuccessful"
)

var (
	claimsGR  = schema.GroupResource{Resource: "persistentvolumeclaims"}
	volumesGR = schema.GroupResource{Resource: "persistentvolumes"}
	classesGR = storagev1.Resource("storageclasses")
)

// localVolumes is the node's local provisioner: for a claim of a logplane.io/local class that
// the scheduler selected this node for, it makes the volume pvc-<claim uid> in the Manager and
// then writes its PersistentVolume, pre-bound to the claim (the binder binds it); it grows the
// volume when its bound claim asks for more; and once the claim is gone and the volume
// Released, reclaimPolicy Delete removes the directory, then the PersistentVolume (Retain keeps
// both). Every step is idempotent, by the volume's name: an agent killed at any point does it
// again, and nothing is made twice.
type localVolumes struct {
	a        *Agent
	m        *localvolume.Manager
	events   *recorder.Recorder
	queue    workqueue.TypedRateLimitingInterface[eventlog.Key]
	pvKind   *kinds.Kind
	provider string // the events' source component
}

func newLocalVolumes(a *Agent, m *localvolume.Manager) (*localVolumes, error) {
	pvKind, ok := a.reg.Catalog().ByGroupResource(volumesGR)
	if !ok {
		return nil, errors.New("nodeagent: the catalog has no persistentvolumes")
	}
	lv := &localVolumes{a: a, m: m, pvKind: pvKind, provider: LocalProvisioner + "_" + a.cfg.NodeName,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[eventlog.Key](),
			workqueue.TypedRateLimitingQueueConfig[eventlog.Key]{Clock: a.cfg.Clock})}
	rec, err := recorder.New(recorder.Config{
		Registry: a.reg, Actor: registry.Node(a.cfg.NodeName),
		Source: corev1.EventSource{Component: lv.provider}, Logger: a.log, Clock: a.cfg.Clock,
	})
	if err != nil {
		return nil, fmt.Errorf("nodeagent: %w", err)
	}
	lv.events = rec
	return lv, nil
}

// run follows claims and volumes until ctx ends.
func (lv *localVolumes) run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = lv.events.Run(ctx) // ends with ctx
	}()
	defer func() { <-done }()
	unsubscribe := lv.a.store.Subscribe(lv.onChange)
	defer unsubscribe()
	for _, gr := range []schema.GroupResource{claimsGR, volumesGR} {
		objs, _ := lv.a.store.List(projections.Query{Resource: gr})
		for _, o := range objs {
			lv.queue.Add(o.Key)
		}
	}
	go func() {
		<-ctx.Done()
		lv.queue.ShutDown()
	}()
	for {
		key, quit := lv.queue.Get()
		if quit {
			return
		}
		err := lv.sync(ctx, key)
		if err != nil && ctx.Err() == nil {
			lv.a.log.Warn("nodeagent: local volume", "key", key, "err", err)
			lv.queue.AddRateLimited(key)
		} else {
			lv.queue.Forget(key)
		}
		lv.queue.Done(key)
	}
}

func (lv *localVolumes) onChange(ch projections.Change) {
	o := ch.New
	if o == nil {
		o = ch.Old
	}
	gr := schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
	if gr == claimsGR || gr == volumesGR {
		lv.queue.Add(o.Key)
	}
}

func (lv *localVolumes) sync(ctx context.Context, key eventlog.Key) error {
	o, ok := lv.a.store.Get(key)
	if !ok {
		return nil
	}
	obj, err := o.Decode()
	if err != nil {
		return nil // cannot be read: nothing to do with it
	}
	switch v := obj.(type) {
	case *corev1.PersistentVolumeClaim:
		if v.Spec.VolumeName != "" {
			return lv.expand(ctx, v)
		}
		return lv.provision(ctx, v)
	case *corev1.PersistentVolume:
		return lv.reclaim(ctx, v)
	}
	return nil
}

func (lv *localVolumes) class(name string) (*storagev1.StorageClass, bool) {
	sc, err := get[*storagev1.StorageClass](lv.a, lv.classKind(), "", name)
	return sc, err == nil
}

func (lv *localVolumes) classKind() *kinds.Kind {
	k, _ := lv.a.reg.Catalog().ByGroupResource(classesGR)
	return k
}

func (lv *localVolumes) volume(name string) (*corev1.PersistentVolume, bool) {
	pv, err := get[*corev1.PersistentVolume](lv.a, lv.pvKind, "", name)
	return pv, err == nil
}

// mine says whether pv is a volume this node's provisioner made.
func (lv *localVolumes) mine(pv *corev1.PersistentVolume) bool {
	return registry.LocalVolumeNode(pv) == lv.a.cfg.NodeName
}

// provision makes the volume of a claim selected for this node.
func (lv *localVolumes) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim) error {
	if claim.DeletionTimestamp != nil || claim.Annotations[storagehelpers.AnnSelectedNode] != lv.a.cfg.NodeName {
		return nil
	}
	sc, ok := lv.class(storagehelpers.GetPersistentVolumeClaimClass(claim))
	if !ok || sc.Provisioner != LocalProvisioner {
		return nil
	}
	name := "pvc-" + string(claim.UID)
	if _, ok := lv.volume(name); ok {
		return nil // made; the binder binds it
	}
	lv.events.Event(claim, 0, corev1.EventTypeNormal, ReasonProvisioning,
		fmt.Sprintf("External provisioner is provisioning volume for claim %q", claim.Namespace+"/"+claim.Name))
	want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	vol, err := lv.m.Create(ctx, name, want.Value())
	if err != nil {
		lv.events.Event(claim, 0, corev1.EventTypeWarning, ReasonProvisioningFailed, fmt.Sprintf("failed to provision volume with StorageClass %q: %v", sc.Name, err))
		return err
	}
	path, err := lv.m.Path(ctx, name)
	if err != nil {
		return err
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if sc.ReclaimPolicy != nil {
		reclaim = *sc.ReclaimPolicy
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			storagehelpers.AnnDynamicallyProvisioned: LocalProvisioner,
			"logplane.io/local-volume-backend":       string(vol.Backend),
		}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: want},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              sc.Name,
			VolumeMode:                    claim.Spec.VolumeMode,
			MountOptions:                  sc.MountOptions,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: claim.Namespace,
				Name: claim.Name, UID: claim.UID, ResourceVersion: claim.ResourceVersion},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: path}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{lv.a.cfg.NodeName}}},
			}}}},
		},
	}
	if _, err := lv.a.reg.Create(ctx, lv.pvKind, pv, registry.Request{Actor: registry.Node(lv.a.cfg.NodeName)}); err != nil && !apierrors.IsAlreadyExists(err) {
		lv.events.Event(claim, 0, corev1.EventTypeWarning, ReasonProvisioningFailed, fmt.Sprintf("failed to write the volume of the claim: %v", err))
		return err
	}
	msg := fmt.Sprintf("Successfully provisioned volume %s", name)
	if !vol.Enforced {
		msg += " (its size is not enforced on this node: " + lv.m.Warning() + ")"
	}
	lv.events.Event(claim, 0, corev1.EventTypeNormal, ReasonProvisioningSucceeded, msg)
	return nil
}

// expand grows this node's volume of a bound claim to what the claim asks for.
func (lv *localVolumes) expand(ctx context.Context, claim *corev1.PersistentVolumeClaim) error {
	pv, ok := lv.volume(claim.Spec.VolumeName)
	if !ok || !lv.mine(pv) {
		return nil
	}
	want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	have := pv.Spec.Capacity[corev1.ResourceStorage]
	if want.Cmp(have) <= 0 {
		return nil
	}
	if _, err := lv.m.Expand(ctx, pv.Name, want.Value()); err != nil {
		lv.events.Event(claim, 0, corev1.EventTypeWarning, ReasonVolumeResizeFailed, fmt.Sprintf("resize volume %q by resizer %q failed: %v", pv.Name, LocalProvisioner, err))
		return err
	}
	next := pv.DeepCopy()
	next.Spec.Capacity[corev1.ResourceStorage] = want
	if _, err := lv.a.reg.Update(ctx, lv.pvKind, next, registry.Request{Actor: registry.Node(lv.a.cfg.NodeName)}); err != nil {
		return err // a conflict is retried from the volume's new revision
	}
	lv.events.Event(claim, 0, corev1.EventTypeNormal, ReasonVolumeResizeSucceeded, fmt.Sprintf("resize volume %q by resizer %q succeeded", pv.Name, LocalProvisioner))
	return nil
}

// reclaim deletes a Released volume of this node whose policy is Delete: the directory, then
// the PersistentVolume.
func (lv *localVolumes) reclaim(ctx context.Context, pv *corev1.PersistentVolume) error {
	if !lv.mine(pv) || pv.Status.Phase != corev1.VolumeReleased || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return nil
	}
	if err := lv.m.Delete(ctx, pv.Name); err != nil {
		lv.events.Event(pv, 0, corev1.EventTypeWarning, "VolumeFailedDelete", err.Error())
		return err
	}
	_, _, err := lv.a.reg.Delete(ctx, lv.pvKind, "", pv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pv.UID}},
		registry.Request{Actor: registry.Node(lv.a.cfg.NodeName)})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// claimPath is podworker.ClaimResolver's answer: the directory of the volume bound to a claim.
func (a *Agent) claimPath(ctx context.Context, namespace, name string) (string, error) {
	claim, err := get[*corev1.PersistentVolumeClaim](a, a.claimKind(), namespace, name)
	if err != nil {
		return "", err
	}
	if claim.Spec.VolumeName == "" || claim.Status.Phase != corev1.ClaimBound {
		return "", podworker.ErrClaimNotBound
	}
	pvKind, _ := a.reg.Catalog().ByGroupResource(volumesGR)
	pv, err := get[*corev1.PersistentVolume](a, pvKind, "", claim.Spec.VolumeName)
	if err != nil {
		return "", err
	}
	switch {
	case pv.Annotations[storagehelpers.AnnDynamicallyProvisioned] == LocalProvisioner && a.volumes != nil:
		if _, err := a.volumes.m.Get(pv.Name); err == nil {
			return a.volumes.m.Path(ctx, pv.Name)
		}
		return "", fmt.Errorf("volume %s is not on this node", pv.Name)
	case pv.Spec.Local != nil:
		if _, err := os.Stat(pv.Spec.Local.Path); err != nil {
			return "", fmt.Errorf("local volume %s: %w", pv.Name, err)
		}
		return pv.Spec.Local.Path, nil
	case pv.Spec.HostPath != nil:
		p := pv.Spec.HostPath.Path
		if t := pv.Spec.HostPath.Type; t != nil && *t == corev1.HostPathDirectoryOrCreate {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return "", err
			}
		}
		return p, nil
	}
	return "", fmt.Errorf("volume %s: only local and hostPath volumes can be mounted on logplane's nodes", pv.Name)
}

func (a *Agent) claimKind() *kinds.Kind {
	k, _ := a.reg.Catalog().ByGroupResource(claimsGR)
	return k
}

var _ podworker.ClaimResolver = resolver{}

// ClaimPath gives the pod worker a claim's directory.
func (r resolver) ClaimPath(ctx context.Context, namespace, claim string) (string, error) {
	return r.a.claimPath(ctx, namespace, claim)
}

// volumeStats is the kubelet's volume metrics collector (kubelet_volume_stats_*), for the
// claims bound to this node's local volumes, labelled by namespace and claim as the kubelet's.
type volumeStats struct {
	lv    *localVolumes
	descs map[string]*prometheus.Desc
}

var volumeStatNames = []string{"capacity_bytes", "available_bytes", "used_bytes", "inodes", "inodes_free", "inodes_used"}

func newVolumeStats(lv *localVolumes) *volumeStats {
	vs := &volumeStats{lv: lv, descs: map[string]*prometheus.Desc{}}
	help := map[string]string{
		"capacity_bytes":  "Capacity in bytes of the volume",
		"available_bytes": "Number of available bytes in the volume",
		"used_bytes":      "Number of used bytes in the volume",
		"inodes":          "Maximum number of inodes in the volume",
		"inodes_free":     "Number of free inodes in the volume",
		"inodes_used":     "Number of used inodes in the volume",
	}
	for _, n := range volumeStatNames {
		vs.descs[n] = prometheus.NewDesc("kubelet_volume_stats_"+n, help[n], []string{"namespace", "persistentvolumeclaim"}, nil)
	}
	return vs
}

// Describe sends the metrics' descriptions.
func (vs *volumeStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range vs.descs {
		ch <- d
	}
}

// Collect measures every local volume that is bound to a claim.
func (vs *volumeStats) Collect(ch chan<- prometheus.Metric) {
	ctx := context.Background()
	for _, v := range vs.lv.m.List() {
		pv, ok := vs.lv.volume(v.Name)
		if !ok || pv.Spec.ClaimRef == nil || pv.Status.Phase != corev1.VolumeBound {
			continue
		}
		st, err := vs.lv.m.Stats(ctx, v.Name)
		if err != nil {
			continue
		}
		ns, claim := pv.Spec.ClaimRef.Namespace, pv.Spec.ClaimRef.Name
		for n, val := range map[string]int64{"capacity_bytes": st.CapacityBytes, "available_bytes": st.AvailableBytes, "used_bytes": st.UsedBytes,
			"inodes": st.Inodes, "inodes_free": st.InodesFree, "inodes_used": st.InodesUsed} {
			ch <- prometheus.MustNewConstMetric(vs.descs[n], prometheus.GaugeValue, float64(val), ns, claim)
		}
	}
}
