// Package volumebinding is the PersistentVolume binder, a port of the binding half of
// Kubernetes' persistentvolume controller (pkg/controller/volume/persistentvolume): it binds
// claims to volumes by class, size, access modes, volume mode, selector and volumeName, honours
// a volume's pre-bound claimRef, keeps the phases (claims Pending, Bound, Lost; volumes Pending,
// Available, Bound, Released, Failed), and reclaims a volume whose claim is gone: Retain keeps
// it Released; Delete of a volume the node agents' local provisioner made is the agent's (it
// removes the directory, then the volume); Delete of any other volume fails, as Kubernetes' does
// with no deleter for it. Claims of a WaitForFirstConsumer class wait for the scheduler to pick
// a node (the volume.kubernetes.io/selected-node annotation), and are then handed to their
// class's provisioner with the events `kubectl describe pvc` shows in Kubernetes.
//
// It writes compare-and-set, claim and volume each in its own reconciler, so a crash between
// the two halves of a binding is finished by the next reconcile, as in Kubernetes. A third
// reconciler is the pvc-protection controller: a claim being deleted keeps the
// kubernetes.io/pvc-protection finalizer (admission's StorageObjectInUseProtection) while a pod
// that has not finished uses it.
package volumebinding

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	storagehelpers "k8s.io/component-helpers/storage/volume"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// Names of the two reconcilers.
const (
	Name        = "persistentvolume-binder"
	VolumesName = "persistentvolume-binder-volumes"
)

// The reasons of the events Kubernetes' controller records.
const (
	ReasonWaitForFirstConsumer = "WaitForFirstConsumer"
	ReasonExternalProvisioning = "ExternalProvisioning"
	ReasonFailedBinding        = "FailedBinding"
	ReasonProvisioningFailed   = "ProvisioningFailed"
	ReasonClaimLost            = "ClaimLost"
	ReasonClaimMisbound        = "ClaimMisbound"
	ReasonVolumeFailedDelete   = "VolumeFailedDelete"
	ReasonVolumeResizeFailed   = "VolumeResizeFailed"
)

// LocalProvisioner is the provisioner of logplane's node agents: its volumes' deletion is
// theirs.
const LocalProvisioner = registry.LocalProvisioner

var (
	claims  = schema.GroupResource{Resource: "persistentvolumeclaims"}
	volumes = schema.GroupResource{Resource: "persistentvolumes"}
	classes = storagev1.Resource("storageclasses")
)

type writer interface {
	Update(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	UpdateStatus(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
}

// Config configures the binder.
type Config struct {
	// Workers per reconciler. Default 2.
	Workers int
}

// Binder binds claims and volumes.
type Binder struct {
	ix                    *informer.Index
	w                     writer
	claimKind, volumeKind *kinds.Kind
	events                *recorder.Recorder
}

// Setup is the binder's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup {
	return func(_ context.Context, e *engine.Engine) error {
		_, err := New(e, cfg)
		return err
	}
}

// New registers the binder's two reconcilers on e.
func New(e *engine.Engine, cfg Config) (*Binder, error) {
	if e.Registry() == nil {
		return nil, errors.New("volumebinding: the engine has no registry")
	}
	cat := e.Registry().Catalog()
	ck, ok1 := cat.ByGroupResource(claims)
	vk, ok2 := cat.ByGroupResource(volumes)
	if !ok1 || !ok2 {
		return nil, errors.New("volumebinding: the catalog has no persistent volumes or claims")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	events, err := e.Recorder(recorder.Config{Actor: registry.Reconciler(Name),
		Source: corev1.EventSource{Component: "persistentvolume-controller", Host: e.Host()}, SpamFilter: true})
	if err != nil {
		return nil, err
	}
	b := &Binder{ix: e.Index(), w: e.Registry(), claimKind: ck, volumeKind: vk, events: events}
	e.Register(engine.Registration{
		Name: Name, For: claims, Workers: cfg.Workers, Reconciler: engine.ReconcilerFunc(b.syncClaim),
		Watches: []engine.Watch{engine.Watches(volumes, b.claimsOfVolume), engine.Watches(classes, b.unboundClaims)},
		Reads:   []schema.GroupResource{volumes, classes},
	})
	e.Register(engine.Registration{
		Name: VolumesName, For: volumes, Workers: cfg.Workers, Reconciler: engine.ReconcilerFunc(b.syncVolume),
		Watches: []engine.Watch{engine.Watches(claims, b.volumesOfClaim)},
		Reads:   []schema.GroupResource{claims},
	})
	b.registerProtection(e, cfg.Workers)
	return b, nil
}

func claimKey(ns, name string) eventlog.Key {
	return eventlog.Key{Resource: claims.Resource, Namespace: ns, Name: name}
}

// claimsOfVolume maps a volume's change to the claim it names and, as it may now match one,
// every unbound claim.
func (b *Binder) claimsOfVolume(ev engine.Event) []eventlog.Key {
	keys := b.unboundClaims(ev)
	if o, ok := b.ix.Object(ev.Object().Key); ok {
		if ref := o.(*corev1.PersistentVolume).Spec.ClaimRef; ref != nil {
			keys = append(keys, claimKey(ref.Namespace, ref.Name))
		}
	}
	for _, o := range b.ix.Objects(claims, "", nil) {
		if c := o.(*corev1.PersistentVolumeClaim); c.Spec.VolumeName == ev.Object().Key.Name {
			keys = append(keys, claimKey(c.Namespace, c.Name))
		}
	}
	return keys
}

// unboundClaims maps a change to every claim not bound yet.
func (b *Binder) unboundClaims(engine.Event) []eventlog.Key {
	var keys []eventlog.Key
	for _, o := range b.ix.Objects(claims, "", func(o runtime.Object) bool {
		return o.(*corev1.PersistentVolumeClaim).Status.Phase != corev1.ClaimBound
	}) {
		c := o.(*corev1.PersistentVolumeClaim)
		keys = append(keys, claimKey(c.Namespace, c.Name))
	}
	return keys
}

// volumesOfClaim maps a claim's change to the volumes bound or pre-bound to it.
func (b *Binder) volumesOfClaim(ev engine.Event) []eventlog.Key {
	k := ev.Object().Key
	var keys []eventlog.Key
	for _, o := range b.ix.Objects(volumes, "", nil) {
		pv := o.(*corev1.PersistentVolume)
		if ref := pv.Spec.ClaimRef; ref != nil && ref.Namespace == k.Namespace && ref.Name == k.Name {
			keys = append(keys, eventlog.Key{Resource: volumes.Resource, Name: pv.Name})
		}
	}
	return keys
}

func (b *Binder) volume(name string) (*corev1.PersistentVolume, bool) {
	o, ok := b.ix.Object(eventlog.Key{Resource: volumes.Resource, Name: name})
	if !ok {
		return nil, false
	}
	return o.(*corev1.PersistentVolume), true
}

func (b *Binder) claim(ns, name string) (*corev1.PersistentVolumeClaim, bool) {
	o, ok := b.ix.Object(claimKey(ns, name))
	if !ok {
		return nil, false
	}
	return o.(*corev1.PersistentVolumeClaim), true
}

func (b *Binder) class(name string) (*storagev1.StorageClass, bool) {
	o, ok := b.ix.Object(eventlog.Key{Group: classes.Group, Resource: classes.Resource, Name: name})
	if !ok {
		return nil, false
	}
	return o.(*storagev1.StorageClass), true
}

func (b *Binder) request(cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(Name), Cause: cause}
}

// ignoreGone treats a write to an object that is gone, or changed meanwhile, as done: the
// change queues the key again.
func ignoreGone(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// syncClaim is Kubernetes' syncClaim: syncUnboundClaim or syncBoundClaim.
func (b *Binder) syncClaim(ctx context.Context, req engine.Request) (engine.Result, error) {
	claim, ok := b.claim(req.Key.Namespace, req.Key.Name)
	if !ok || claim.DeletionTimestamp != nil && claim.Spec.VolumeName == "" {
		return engine.Result{}, nil
	}
	var err error
	if !metav1.HasAnnotation(claim.ObjectMeta, storagehelpers.AnnBindCompleted) {
		err = b.syncUnboundClaim(ctx, claim, req.Cause)
	} else {
		err = b.syncBoundClaim(ctx, claim, req.Cause)
	}
	if err = ignoreGone(err); err != nil {
		return engine.Result{}, fmt.Errorf("volumebinding: claim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
	return engine.Result{}, nil
}

func (b *Binder) allVolumes() []*corev1.PersistentVolume {
	objs := b.ix.Objects(volumes, "", nil)
	out := make([]*corev1.PersistentVolume, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*corev1.PersistentVolume))
	}
	return out
}

// findMatch is the controller's findBestMatchForClaim: the volumes whose access modes hold the
// claim's, then FindMatchingVolume (pre-bound first, else the smallest that fits).
func (b *Binder) findMatch(claim *corev1.PersistentVolumeClaim, delayBinding bool) (*corev1.PersistentVolume, error) {
	var candidates []*corev1.PersistentVolume
	for _, pv := range b.allVolumes() {
		if storagehelpers.CheckAccessModes(claim, pv) {
			candidates = append(candidates, pv)
		}
	}
	return storagehelpers.FindMatchingVolume(claim, candidates, nil, nil, delayBinding, false)
}

// delayBinding says whether the claim's class binds at the first consumer.
func (b *Binder) delayBinding(claim *corev1.PersistentVolumeClaim) bool {
	name := storagehelpers.GetPersistentVolumeClaimClass(claim)
	if name == "" {
		return false
	}
	sc, ok := b.class(name)
	return ok && sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
}

func (b *Binder) syncUnboundClaim(ctx context.Context, claim *corev1.PersistentVolumeClaim, cause uint64) error {
	if claim.Spec.VolumeName == "" {
		delay := b.delayBinding(claim)
		pv, err := b.findMatch(claim, delay)
		if err != nil {
			return err
		}
		if pv != nil {
			return b.bind(ctx, pv, claim, cause)
		}
		switch {
		case delay && !storagehelpers.IsDelayBindingProvisioning(claim):
			b.events.Event(claim, cause, corev1.EventTypeNormal, ReasonWaitForFirstConsumer, "waiting for first consumer to be created before binding")
		case storagehelpers.GetPersistentVolumeClaimClass(claim) != "":
			if err := b.provision(ctx, claim, cause); err != nil {
				return err
			}
		default:
			b.events.Event(claim, cause, corev1.EventTypeNormal, ReasonFailedBinding, "no persistent volumes available for this claim and no storage class is set")
		}
		return b.setClaimPhase(ctx, claim, nil, corev1.ClaimPending, cause)
	}
	// The user asked for a volume by name.
	pv, ok := b.volume(claim.Spec.VolumeName)
	if !ok {
		b.events.Event(claim, cause, corev1.EventTypeNormal, ReasonFailedBinding, fmt.Sprintf("volume %q not found", claim.Spec.VolumeName))
		return b.setClaimPhase(ctx, claim, nil, corev1.ClaimPending, cause)
	}
	if pv.Spec.ClaimRef == nil || storagehelpers.IsVolumeBoundToClaim(pv, claim) {
		if msg := satisfies(pv, claim); msg != "" {
			b.events.Event(claim, cause, corev1.EventTypeWarning, ReasonFailedBinding, fmt.Sprintf("Cannot bind to requested volume %q: %s", pv.Name, msg))
			return b.setClaimPhase(ctx, claim, nil, corev1.ClaimPending, cause)
		}
		return b.bind(ctx, pv, claim, cause)
	}
	// The volume is bound to another claim: wait for it to be released.
	b.events.Event(claim, cause, corev1.EventTypeWarning, ReasonFailedBinding, fmt.Sprintf("volume %q already bound to a different claim.", pv.Name))
	return b.setClaimPhase(ctx, claim, nil, corev1.ClaimPending, cause)
}

// satisfies is checkVolumeSatisfyClaim: "" if pv can hold claim, else why not.
func satisfies(pv *corev1.PersistentVolume, claim *corev1.PersistentVolumeClaim) string {
	want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	have := pv.Spec.Capacity[corev1.ResourceStorage]
	switch {
	case have.Cmp(want) < 0:
		return "requested PV is too small"
	case storagehelpers.GetPersistentVolumeClass(pv) != storagehelpers.GetPersistentVolumeClaimClass(claim):
		return "storageClassName does not match"
	case storagehelpers.CheckVolumeModeMismatches(&claim.Spec, &pv.Spec):
		return "incompatible volumeMode"
	case !storagehelpers.CheckAccessModes(claim, pv):
		return "incompatible accessMode"
	}
	return ""
}

// provision hands the claim to its class's provisioner: the annotation that names it and the
// ExternalProvisioning event, as Kubernetes does for a provisioner outside the controller.
func (b *Binder) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim, cause uint64) error {
	name := storagehelpers.GetPersistentVolumeClaimClass(claim)
	sc, ok := b.class(name)
	if !ok {
		b.events.Event(claim, cause, corev1.EventTypeWarning, ReasonProvisioningFailed, fmt.Sprintf("storageclass.storage.k8s.io %q not found", name))
		return nil
	}
	if sc.Provisioner == storagehelpers.NotSupportedProvisioner {
		b.events.Event(claim, cause, corev1.EventTypeNormal, ReasonFailedBinding, "no persistent volumes available for this claim and no storage class is set")
		return nil
	}
	b.events.Event(claim, cause, corev1.EventTypeNormal, ReasonExternalProvisioning,
		fmt.Sprintf("Waiting for a volume to be created either by the external provisioner '%s' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.", sc.Provisioner))
	if claim.Annotations[storagehelpers.AnnStorageProvisioner] == sc.Provisioner {
		return nil
	}
	next := claim.DeepCopy()
	metav1.SetMetaDataAnnotation(&next.ObjectMeta, storagehelpers.AnnStorageProvisioner, sc.Provisioner)
	metav1.SetMetaDataAnnotation(&next.ObjectMeta, storagehelpers.AnnBetaStorageProvisioner, sc.Provisioner)
	_, err := b.w.Update(ctx, b.claimKind, next, b.request(cause))
	return err
}

// bind is Kubernetes' bind: the volume's claimRef, its phase Bound, the claim's volumeName and
// annotations, its status Bound. Each write is compare-and-set; a conflict queues the claim
// again and the next reconcile goes on from where this one stopped.
func (b *Binder) bind(ctx context.Context, pv *corev1.PersistentVolume, claim *corev1.PersistentVolumeClaim, cause uint64) error {
	next, dirty, err := storagehelpers.GetBindVolumeToClaim(pv, claim)
	if err != nil {
		return err
	}
	if dirty {
		out, err := b.w.Update(ctx, b.volumeKind, next, b.request(cause))
		if err != nil {
			return err
		}
		next = out.(*corev1.PersistentVolume)
	}
	if next.Status.Phase != corev1.VolumeBound {
		if next, err = b.setVolumePhase(ctx, next, corev1.VolumeBound, "", cause); err != nil {
			return err
		}
	}
	c := claim.DeepCopy()
	changed := false
	if c.Spec.VolumeName != pv.Name {
		c.Spec.VolumeName = pv.Name
		metav1.SetMetaDataAnnotation(&c.ObjectMeta, storagehelpers.AnnBoundByController, "yes")
		changed = true
	}
	if !metav1.HasAnnotation(c.ObjectMeta, storagehelpers.AnnBindCompleted) {
		metav1.SetMetaDataAnnotation(&c.ObjectMeta, storagehelpers.AnnBindCompleted, "yes")
		changed = true
	}
	if changed {
		out, err := b.w.Update(ctx, b.claimKind, c, b.request(cause))
		if err != nil {
			return err
		}
		c = out.(*corev1.PersistentVolumeClaim)
	}
	return b.setClaimPhase(ctx, c, next, corev1.ClaimBound, cause)
}

// syncBoundClaim checks a bound claim's volume: gone, it is Lost; bound elsewhere, Lost too;
// otherwise the binding is finished if a crash interrupted it.
func (b *Binder) syncBoundClaim(ctx context.Context, claim *corev1.PersistentVolumeClaim, cause uint64) error {
	if claim.Spec.VolumeName == "" {
		return b.lost(ctx, claim, cause)
	}
	pv, ok := b.volume(claim.Spec.VolumeName)
	if !ok {
		return b.lost(ctx, claim, cause)
	}
	if pv.Spec.ClaimRef == nil {
		// The claim's half is done, the volume's is not: finish it.
		return b.bind(ctx, pv, claim, cause)
	}
	if pv.Spec.ClaimRef.UID == claim.UID && pv.Spec.ClaimRef.Name == claim.Name && pv.Spec.ClaimRef.Namespace == claim.Namespace {
		return b.bind(ctx, pv, claim, cause)
	}
	if claim.Status.Phase != corev1.ClaimLost {
		b.events.Event(claim, cause, corev1.EventTypeWarning, ReasonClaimMisbound, "Two claims are bound to the same volume, this one is bound incorrectly")
	}
	return b.setClaimPhase(ctx, claim, nil, corev1.ClaimLost, cause)
}

func (b *Binder) lost(ctx context.Context, claim *corev1.PersistentVolumeClaim, cause uint64) error {
	if claim.Status.Phase != corev1.ClaimLost {
		b.events.Event(claim, cause, corev1.EventTypeWarning, ReasonClaimLost, "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
	}
	return b.setClaimPhase(ctx, claim, nil, corev1.ClaimLost, cause)
}

// setClaimPhase is updateClaimStatus: the phase and, from a bound volume, the access modes and
// capacity (which follows the volume as it grows).
func (b *Binder) setClaimPhase(ctx context.Context, claim *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, phase corev1.PersistentVolumeClaimPhase, cause uint64) error {
	next := claim.DeepCopy()
	next.Status.Phase = phase
	if pv != nil {
		next.Status.AccessModes = pv.Spec.AccessModes
		next.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: pv.Spec.Capacity[corev1.ResourceStorage]}
	}
	if phase == corev1.ClaimPending {
		next.Status.AccessModes, next.Status.Capacity = nil, nil
	}
	if sameClaimStatus(&next.Status, &claim.Status) {
		return nil
	}
	_, err := b.w.UpdateStatus(ctx, b.claimKind, next, b.request(cause))
	return err
}

func sameClaimStatus(a, b *corev1.PersistentVolumeClaimStatus) bool {
	if a.Phase != b.Phase || len(a.AccessModes) != len(b.AccessModes) || len(a.Capacity) != len(b.Capacity) {
		return false
	}
	for i := range a.AccessModes {
		if a.AccessModes[i] != b.AccessModes[i] {
			return false
		}
	}
	for k, q := range a.Capacity {
		if other, ok := b.Capacity[k]; !ok || other.Cmp(q) != 0 {
			return false
		}
	}
	return true
}

func (b *Binder) setVolumePhase(ctx context.Context, pv *corev1.PersistentVolume, phase corev1.PersistentVolumePhase, message string, cause uint64) (*corev1.PersistentVolume, error) {
	if pv.Status.Phase == phase && pv.Status.Message == message {
		return pv, nil
	}
	next := pv.DeepCopy()
	next.Status.Phase, next.Status.Message, next.Status.Reason = phase, message, ""
	now := metav1.Now()
	next.Status.LastPhaseTransitionTime = &now
	out, err := b.w.UpdateStatus(ctx, b.volumeKind, next, b.request(cause))
	if err != nil {
		return nil, err
	}
	return out.(*corev1.PersistentVolume), nil
}

// syncVolume is Kubernetes' syncVolume: Available without a claim, Bound with its claim,
// Released (and reclaimed) once the claim is gone.
func (b *Binder) syncVolume(ctx context.Context, req engine.Request) (engine.Result, error) {
	pv, ok := b.volume(req.Key.Name)
	if !ok || pv.DeletionTimestamp != nil {
		return engine.Result{}, nil
	}
	if err := ignoreGone(b.syncVolumeState(ctx, pv, req.Cause)); err != nil {
		return engine.Result{}, fmt.Errorf("volumebinding: volume %s: %w", pv.Name, err)
	}
	return engine.Result{}, nil
}

func (b *Binder) syncVolumeState(ctx context.Context, pv *corev1.PersistentVolume, cause uint64) error {
	ref := pv.Spec.ClaimRef
	if ref == nil {
		_, err := b.setVolumePhase(ctx, pv, corev1.VolumeAvailable, "", cause)
		return err
	}
	if ref.UID == "" {
		// Pre-bound by the user to a claim that has not been bound yet.
		_, err := b.setVolumePhase(ctx, pv, corev1.VolumeAvailable, "", cause)
		return err
	}
	claim, ok := b.claim(ref.Namespace, ref.Name)
	if ok && claim.UID != ref.UID {
		ok = false // a new claim of the same name: the volume's is gone
	}
	if !ok {
		return b.released(ctx, pv, cause)
	}
	if claim.Spec.VolumeName == "" {
		// The claim's half of the binding is not written yet; its reconcile does it.
		return nil
	}
	if claim.Spec.VolumeName == pv.Name {
		_, err := b.setVolumePhase(ctx, pv, corev1.VolumeBound, "", cause)
		return err
	}
	// The claim is bound to another volume.
	if metav1.HasAnnotation(pv.ObjectMeta, storagehelpers.AnnBoundByController) {
		next := pv.DeepCopy()
		next.Spec.ClaimRef = nil
		delete(next.Annotations, storagehelpers.AnnBoundByController)
		out, err := b.w.Update(ctx, b.volumeKind, next, b.request(cause))
		if err != nil {
			return err
		}
		_, err = b.setVolumePhase(ctx, out.(*corev1.PersistentVolume), corev1.VolumeAvailable, "", cause)
		return err
	}
	return b.released(ctx, pv, cause)
}

// released marks a volume whose claim is gone Released, then reclaims it: Retain keeps it;
// Delete is the local provisioner's for its volumes (the node agent deletes the directory and
// the volume) and fails for any other, as Kubernetes' controller without a deleter plug-in.
func (b *Binder) released(ctx context.Context, pv *corev1.PersistentVolume, cause uint64) error {
	if pv.Status.Phase == corev1.VolumeFailed {
		return nil
	}
	var err error
	if pv.Status.Phase != corev1.VolumeReleased {
		if pv, err = b.setVolumePhase(ctx, pv, corev1.VolumeReleased, "", cause); err != nil {
			return err
		}
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		pv.Annotations[storagehelpers.AnnDynamicallyProvisioned] == LocalProvisioner {
		return nil
	}
	msg := fmt.Sprintf("error getting deleter volume plugin for volume %q: no deletable volume plugin matched", pv.Name)
	b.events.Event(pv, cause, corev1.EventTypeWarning, ReasonVolumeFailedDelete, msg)
	_, err = b.setVolumePhase(ctx, pv, corev1.VolumeFailed, msg, cause)
	return err
}
