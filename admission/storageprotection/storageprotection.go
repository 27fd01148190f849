// Package storageprotection is Kubernetes' StorageObjectInUseProtection admission plug-in
// (plugin/pkg/admission/storage/storageobjectinuseprotection) for claims: a new
// PersistentVolumeClaim gets the kubernetes.io/pvc-protection finalizer, so that deleting a
// claim that a pod still uses leaves it Terminating until no pod does (the pvc-protection
// reconciler, reconcilers/volumebinding, removes the finalizer), and its volume is not reclaimed
// under a running pod.
package storageprotection

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/admission"
)

// PluginName is the plug-in's name in kube-apiserver's --enable-admission-plugins.
const PluginName = "StorageObjectInUseProtection"

// PVCProtectionFinalizer is the finalizer the plug-in adds to claims.
const PVCProtectionFinalizer = "kubernetes.io/pvc-protection"

// Plugin is the StorageObjectInUseProtection plug-in.
type Plugin struct{ *admission.Handler }

var _ admission.MutationInterface = (*Plugin)(nil)

// New returns the plug-in.
func New() *Plugin { return &Plugin{Handler: admission.NewHandler(admission.Create)} }

// Admit adds the finalizer to a new claim that lacks it.
func (p *Plugin) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetResource().GroupResource() != corev1.Resource("persistentvolumeclaims") || a.GetSubresource() != "" {
		return nil
	}
	pvc, ok := a.GetObject().(*corev1.PersistentVolumeClaim)
	if !ok || pvc == nil || slices.Contains(pvc.Finalizers, PVCProtectionFinalizer) {
		return nil
	}
	pvc.Finalizers = append(pvc.Finalizers, PVCProtectionFinalizer)
	return nil
}
