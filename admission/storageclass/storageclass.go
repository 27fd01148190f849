// Package storageclass holds Kubernetes' two admission plug-ins that read StorageClasses
// (plugin/pkg/admission/storage): DefaultStorageClass, which gives a new claim that names no
// class the default one (the newest class annotated storageclass.kubernetes.io/is-default-class:
// "true"), and PersistentVolumeClaimResize, which lets a claim's storage request grow only when
// the claim is bound and its class allows volume expansion. Both read logplane's projection.
package storageclass

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apiserver/pkg/admission"
	storagehelpers "k8s.io/component-helpers/storage/volume"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

// The plug-ins' names in kube-apiserver's --enable-admission-plugins.
const (
	DefaultPluginName = "DefaultStorageClass"
	ResizePluginName  = "PersistentVolumeClaimResize"
)

// The annotations that mark a default class, GA and beta.
const (
	IsDefaultAnnotation     = "storageclass.kubernetes.io/is-default-class"
	BetaIsDefaultAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
)

// store is what the plug-ins read.
type store interface {
	Get(key eventlog.Key) (*projections.Object, bool)
	List(q projections.Query) ([]*projections.Object, uint64)
}

var _ store = (*projections.Store)(nil)

// DefaultClass is the DefaultStorageClass plug-in.
type DefaultClass struct {
	*admission.Handler
	store store
}

var _ admission.MutationInterface = (*DefaultClass)(nil)

// NewDefault returns the DefaultStorageClass plug-in reading classes from s.
func NewDefault(s store) *DefaultClass {
	return &DefaultClass{Handler: admission.NewHandler(admission.Create), store: s}
}

// Admit sets the class of a new claim that has none (neither storageClassName, even "", nor
// the beta annotation) to the default class, if there is one.
func (p *DefaultClass) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	pvc, ok := claimOf(a)
	if !ok || storagehelpers.PersistentVolumeClaimHasClass(pvc) {
		return nil
	}
	def, err := Default(p.store)
	if err != nil {
		return admission.NewForbidden(a, err)
	}
	if def != nil {
		name := def.Name
		pvc.Spec.StorageClassName = &name
	}
	return nil
}

// Default is Kubernetes' GetDefaultClass: of the classes marked default, the newest (by
// creation time, then name); nil if none is.
func Default(s interface {
	List(q projections.Query) ([]*projections.Object, uint64)
}) (*storagev1.StorageClass, error) {
	objs, _ := s.List(projections.Query{Resource: storagev1.Resource("storageclasses")})
	var defaults []*storagev1.StorageClass
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			return nil, fmt.Errorf("storageclass: %w", err)
		}
		sc, ok := obj.(*storagev1.StorageClass)
		if ok && IsDefault(sc) {
			defaults = append(defaults, sc)
		}
	}
	if len(defaults) == 0 {
		return nil, nil
	}
	sort.Slice(defaults, func(i, j int) bool {
		ti, tj := defaults[i].CreationTimestamp.UnixNano(), defaults[j].CreationTimestamp.UnixNano()
		if ti == tj {
			return defaults[i].Name < defaults[j].Name
		}
		return ti > tj
	})
	return defaults[0], nil
}

// IsDefault reports whether a class carries the GA or beta default annotation set to "true".
func IsDefault(sc *storagev1.StorageClass) bool {
	return sc.Annotations[IsDefaultAnnotation] == "true" || sc.Annotations[BetaIsDefaultAnnotation] == "true"
}

// Resize is the PersistentVolumeClaimResize plug-in.
type Resize struct {
	*admission.Handler
	store store
}

var _ admission.ValidationInterface = (*Resize)(nil)

// NewResize returns the PersistentVolumeClaimResize plug-in reading classes from s.
func NewResize(s store) *Resize {
	return &Resize{Handler: admission.NewHandler(admission.Update), store: s}
}

// Validate forbids growing a claim that is not bound, or whose class (the same before and
// after) does not allow volume expansion, with Kubernetes' messages.
func (p *Resize) Validate(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	pvc, ok := claimOf(a)
	if !ok {
		return nil
	}
	old, ok := a.GetOldObject().(*corev1.PersistentVolumeClaim)
	if !ok || old == nil {
		return nil
	}
	oldSize, newSize := old.Spec.Resources.Requests[corev1.ResourceStorage], pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if newSize.Cmp(oldSize) <= 0 {
		return nil
	}
	if old.Status.Phase != corev1.ClaimBound {
		return admission.NewForbidden(a, fmt.Errorf("Only bound persistent volume claims can be expanded"))
	}
	if !p.allowResize(pvc, old) {
		return admission.NewForbidden(a, fmt.Errorf("only dynamically provisioned pvc can be resized and "+
			"the storageclass that provisions the pvc must support resize"))
	}
	return nil
}

func (p *Resize) allowResize(pvc, old *corev1.PersistentVolumeClaim) bool {
	class, oldClass := storagehelpers.GetPersistentVolumeClaimClass(pvc), storagehelpers.GetPersistentVolumeClaimClass(old)
	if class == "" || class != oldClass {
		return false
	}
	o, ok := p.store.Get(eventlog.Key{Group: storagev1.GroupName, Resource: "storageclasses", Name: class})
	if !ok {
		return false
	}
	obj, err := o.Decode()
	if err != nil {
		return false
	}
	sc, ok := obj.(*storagev1.StorageClass)
	return ok && sc.AllowVolumeExpansion != nil && *sc.AllowVolumeExpansion
}

// claimOf is the claim a request writes, if it is one (not a subresource).
func claimOf(a admission.Attributes) (*corev1.PersistentVolumeClaim, bool) {
	if a.GetResource().GroupResource() != corev1.Resource("persistentvolumeclaims") || a.GetSubresource() != "" {
		return nil, false
	}
	pvc, ok := a.GetObject().(*corev1.PersistentVolumeClaim)
	return pvc, ok && pvc != nil
}
