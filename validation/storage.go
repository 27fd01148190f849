package validation

import (
	"fmt"
	"path"
	"reflect"
	"strings"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The sets Kubernetes' core validation checks persistent volumes and claims against.
var (
	supportedAccessModes   = sets.New(corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod)
	supportedVolumeModes   = sets.New(corev1.PersistentVolumeBlock, corev1.PersistentVolumeFilesystem)
	supportedPVReclaim     = sets.New(corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRecycle, corev1.PersistentVolumeReclaimRetain)
	supportedHostPathTypes = sets.New(corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
		corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev)
)

const isNotPositiveErrorMsg = "must be greater than zero"

// PersistentVolume validates a new PersistentVolume, as Kubernetes' ValidatePersistentVolume.
func PersistentVolume(pv *corev1.PersistentVolume) field.ErrorList {
	errs := clusterObjectMeta(&pv.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, persistentVolumeSpec(&pv.Spec, field.NewPath("spec"))...)
}

// PersistentVolumeUpdate validates an update, as Kubernetes' ValidatePersistentVolumeUpdate: the
// volume source and mode are immutable, and a node affinity once set.
func PersistentVolumeUpdate(pv, old *corev1.PersistentVolume) field.ErrorList {
	errs := metaUpdate(&pv.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, persistentVolumeSpec(&pv.Spec, field.NewPath("spec"))...)
	if !apiequality.Semantic.DeepEqual(pv.Spec.PersistentVolumeSource, old.Spec.PersistentVolumeSource) {
		diff := cmp.Diff(old.Spec.PersistentVolumeSource, pv.Spec.PersistentVolumeSource)
		errs = append(errs, field.Forbidden(field.NewPath("spec", "persistentvolumesource"), fmt.Sprintf("spec.persistentvolumesource is immutable after creation\n%v", diff)))
	}
	errs = append(errs, apivalidation.ValidateImmutableField(pv.Spec.VolumeMode, old.Spec.VolumeMode, field.NewPath("volumeMode"))...)
	if old.Spec.NodeAffinity != nil && !apiequality.Semantic.DeepEqual(pv.Spec.NodeAffinity, old.Spec.NodeAffinity) {
		errs = append(errs, field.Invalid(field.NewPath("nodeAffinity"), pv.Spec.NodeAffinity, apivalidation.FieldImmutableErrorMsg+", except for updating from beta label to GA"))
	}
	return errs
}

// PersistentVolumeStatusUpdate validates an update of a PersistentVolume's status.
func PersistentVolumeStatusUpdate(pv, old *corev1.PersistentVolume) field.ErrorList {
	errs := metaUpdate(&pv.ObjectMeta, &old.ObjectMeta)
	if len(pv.ResourceVersion) == 0 {
		errs = append(errs, field.Required(field.NewPath("resourceVersion"), ""))
	}
	return errs
}

func persistentVolumeSpec(s *corev1.PersistentVolumeSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.AccessModes) == 0 {
		errs = append(errs, field.Required(fldPath.Child("accessModes"), ""))
	}
	errs = append(errs, accessModes(s.AccessModes, fldPath.Child("accessModes"))...)
	if s.StorageClassName != "" {
		for _, msg := range apivalidation.NameIsDNSSubdomain(s.StorageClassName, false) {
			errs = append(errs, field.Invalid(fldPath.Child("storageClassName"), s.StorageClassName, msg))
		}
	}
	if s.VolumeMode != nil && !supportedVolumeModes.Has(*s.VolumeMode) {
		errs = append(errs, field.NotSupported(fldPath.Child("volumeMode"), *s.VolumeMode, sets.List(supportedVolumeModes)))
	}
	if len(s.Capacity) == 0 {
		errs = append(errs, field.Required(fldPath.Child("capacity"), ""))
	}
	if _, ok := s.Capacity[corev1.ResourceStorage]; !ok || len(s.Capacity) > 1 {
		errs = append(errs, field.NotSupported(fldPath.Child("capacity"), s.Capacity, []corev1.ResourceName{corev1.ResourceStorage}))
	}
	capPath := fldPath.Child("capacity")
	for r, q := range s.Capacity {
		errs = append(errs, positiveQuantity(q, capPath.Key(string(r)))...)
	}
	if !supportedPVReclaim.Has(s.PersistentVolumeReclaimPolicy) {
		errs = append(errs, field.NotSupported(fldPath.Child("persistentVolumeReclaimPolicy"), s.PersistentVolumeReclaimPolicy, sets.List(supportedPVReclaim)))
	}
	affinity := false
	if s.NodeAffinity != nil {
		affinity = true
		p := fldPath.Child("nodeAffinity")
		if s.NodeAffinity.Required == nil {
			errs = append(errs, field.Required(p.Child("required"), "must specify required node constraints"))
		} else {
			errs = append(errs, nodeSelector(s.NodeAffinity.Required, p.Child("required"))...)
		}
	}
	errs = append(errs, persistentVolumeSource(&s.PersistentVolumeSource, affinity, fldPath)...)
	if s.HostPath != nil && path.Clean(s.HostPath.Path) == "/" && s.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRecycle {
		errs = append(errs, field.Forbidden(fldPath.Child("persistentVolumeReclaimPolicy"), "may not be 'recycle' for a hostPath mount of '/'"))
	}
	return errs
}

// nodeSelector is ValidateNodeSelector.
func nodeSelector(ns *corev1.NodeSelector, fldPath *field.Path) field.ErrorList {
	termsPath := fldPath.Child("nodeSelectorTerms")
	if len(ns.NodeSelectorTerms) == 0 {
		return field.ErrorList{field.Required(termsPath, "must have at least one node selector term")}
	}
	var errs field.ErrorList
	for i, term := range ns.NodeSelectorTerms {
		errs = append(errs, nodeSelectorTerm(term, true, termsPath.Index(i))...)
	}
	return errs
}

// persistentVolumeSource checks that exactly one volume type is given, and the fields of the
// types logplane's nodes mount (hostPath, local) and the common network ones.
func persistentVolumeSource(s *corev1.PersistentVolumeSource, affinity bool, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	v := reflect.ValueOf(*s)
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if v.Field(i).IsNil() {
			continue
		}
		name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		if n > 0 {
			errs = append(errs, field.Forbidden(fldPath.Child(name), "may not specify more than 1 volume type"))
			continue
		}
		n++
		switch name {
		case "hostPath":
			p := fldPath.Child("hostPath")
			if s.HostPath.Path == "" {
				errs = append(errs, field.Required(p.Child("path"), ""))
				break
			}
			errs = append(errs, pathNoBacksteps(s.HostPath.Path, p.Child("path"))...)
			if s.HostPath.Type != nil && !supportedHostPathTypes.Has(*s.HostPath.Type) {
				errs = append(errs, field.NotSupported(p.Child("type"), *s.HostPath.Type, sets.List(supportedHostPathTypes)))
			}
		case "local":
			p := fldPath.Child("local")
			if s.Local.Path == "" {
				errs = append(errs, field.Required(p.Child("path"), ""))
			} else {
				errs = append(errs, pathNoBacksteps(s.Local.Path, p.Child("path"))...)
			}
			if !affinity {
				errs = append(errs, field.Required(fldPath.Child("nodeAffinity"), "Local volume requires node affinity"))
			}
		case "nfs":
			p := fldPath.Child("nfs")
			if s.NFS.Server == "" {
				errs = append(errs, field.Required(p.Child("server"), ""))
			}
			if s.NFS.Path == "" {
				errs = append(errs, field.Required(p.Child("path"), ""))
			} else if !path.IsAbs(s.NFS.Path) {
				errs = append(errs, field.Invalid(p.Child("path"), s.NFS.Path, "must be an absolute path"))
			}
		case "csi":
			p := fldPath.Child("csi")
			if s.CSI.Driver == "" {
				errs = append(errs, field.Required(p.Child("driver"), ""))
			}
			if s.CSI.VolumeHandle == "" {
				errs = append(errs, field.Required(p.Child("volumeHandle"), ""))
			}
		}
	}
	if n == 0 {
		errs = append(errs, field.Required(fldPath, "must specify a volume type"))
	}
	return errs
}

func pathNoBacksteps(p string, fldPath *field.Path) field.ErrorList {
	for _, item := range strings.Split(p, "/") {
		if item == ".." {
			return field.ErrorList{field.Invalid(fldPath, p, "must not contain '..'")}
		}
	}
	return nil
}

func accessModes(modes []corev1.PersistentVolumeAccessMode, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	rwop, other := false, false
	for _, m := range modes {
		if !supportedAccessModes.Has(m) {
			errs = append(errs, field.NotSupported(fldPath, m, sets.List(supportedAccessModes)))
		}
		if m == corev1.ReadWriteOncePod {
			rwop = true
		} else if supportedAccessModes.Has(m) {
			other = true
		}
	}
	if rwop && other {
		errs = append(errs, field.Forbidden(fldPath, "may not use ReadWriteOncePod with other access modes"))
	}
	return errs
}

func positiveQuantity(q resource.Quantity, fldPath *field.Path) field.ErrorList {
	if q.Cmp(resource.Quantity{}) <= 0 {
		return field.ErrorList{field.Invalid(fldPath, q.String(), isNotPositiveErrorMsg)}
	}
	return nil
}

// PersistentVolumeClaim validates a new claim, as Kubernetes' ValidatePersistentVolumeClaim.
func PersistentVolumeClaim(pvc *corev1.PersistentVolumeClaim) field.ErrorList {
	errs := objectMeta(&pvc.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, PersistentVolumeClaimSpec(&pvc.Spec, field.NewPath("spec"))...)
}

// PersistentVolumeClaimSpec is ValidatePersistentVolumeClaimSpec, also used for a StatefulSet's
// volumeClaimTemplates.
func PersistentVolumeClaimSpec(s *corev1.PersistentVolumeClaimSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.AccessModes) == 0 {
		errs = append(errs, field.Required(fldPath.Child("accessModes"), "at least 1 access mode is required"))
	}
	if s.Selector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(s.Selector, metav1validation.LabelSelectorValidationOptions{}, fldPath.Child("selector"))...)
	}
	errs = append(errs, accessModes(s.AccessModes, fldPath.Child("accessModes"))...)
	storagePath := fldPath.Child("resources").Key(string(corev1.ResourceStorage))
	if q, ok := s.Resources.Requests[corev1.ResourceStorage]; !ok {
		errs = append(errs, field.Required(storagePath, ""))
	} else if e := positiveQuantity(q, storagePath); len(e) > 0 {
		errs = append(errs, e...)
	}
	if s.StorageClassName != nil && *s.StorageClassName != "" {
		for _, msg := range apivalidation.NameIsDNSSubdomain(*s.StorageClassName, false) {
			errs = append(errs, field.Invalid(fldPath.Child("storageClassName"), *s.StorageClassName, msg))
		}
	}
	if s.VolumeMode != nil && !supportedVolumeModes.Has(*s.VolumeMode) {
		errs = append(errs, field.NotSupported(fldPath.Child("volumeMode"), *s.VolumeMode, sets.List(supportedVolumeModes)))
	}
	return errs
}

// PersistentVolumeClaimUpdate validates an update, as Kubernetes' ValidatePersistentVolumeClaimUpdate:
// the spec is immutable except volumeName (set once) and, for a bound claim, the storage
// request, which may not shrink. Whether the class allows expansion is admission's question
// (admission's PersistentVolumeClaimResize), as in Kubernetes.
func PersistentVolumeClaimUpdate(pvc, old *corev1.PersistentVolumeClaim) field.ErrorList {
	errs := metaUpdate(&pvc.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, PersistentVolumeClaim(pvc)...)
	n, o := pvc.DeepCopy(), old.DeepCopy()
	if old.Spec.VolumeName == "" {
		o.Spec.VolumeName = n.Spec.VolumeName
	}
	if o.Spec.StorageClassName == nil && n.Spec.StorageClassName != nil && old.Annotations[corev1.BetaStorageClassAnnotation] == "" {
		// Kubernetes' validateStorageClassUpgradeFromNil: a class may be set once on a claim
		// that had none (the DefaultStorageClass admission's retroactive assignment).
		n.Spec.StorageClassName = nil
	}
	if pvc.Status.Phase == corev1.ClaimBound && n.Spec.Resources.Requests != nil {
		n.Spec.Resources.Requests[corev1.ResourceStorage] = old.Spec.Resources.Requests[corev1.ResourceStorage]
	}
	if !apiequality.Semantic.DeepEqual(n.Spec, o.Spec) {
		diff := cmp.Diff(o.Spec, n.Spec)
		errs = append(errs, field.Forbidden(field.NewPath("spec"), fmt.Sprintf("spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n%v", diff)))
	}
	newSize, oldSize := pvc.Spec.Resources.Requests[corev1.ResourceStorage], old.Spec.Resources.Requests[corev1.ResourceStorage]
	if newSize.Cmp(oldSize) < 0 {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "resources", "requests", "storage"), "field can not be less than previous value"))
	}
	errs = append(errs, apivalidation.ValidateImmutableField(pvc.Spec.VolumeMode, old.Spec.VolumeMode, field.NewPath("volumeMode"))...)
	return errs
}

// PersistentVolumeClaimStatusUpdate validates an update of a claim's status: quantities in
// capacity and allocatedResources are not negative.
func PersistentVolumeClaimStatusUpdate(pvc, old *corev1.PersistentVolumeClaim) field.ErrorList {
	errs := metaUpdate(&pvc.ObjectMeta, &old.ObjectMeta)
	if len(pvc.ResourceVersion) == 0 {
		errs = append(errs, field.Required(field.NewPath("resourceVersion"), ""))
	}
	if len(pvc.Spec.AccessModes) == 0 {
		errs = append(errs, field.Required(field.NewPath("Spec", "accessModes"), ""))
	}
	capPath := field.NewPath("status", "capacity")
	for r, q := range pvc.Status.Capacity {
		errs = append(errs, quantityValue(r, q, capPath.Key(string(r)))...)
	}
	allocPath := field.NewPath("status", "allocatedResources")
	for r, q := range pvc.Status.AllocatedResources {
		errs = append(errs, quantityValue(r, q, allocPath.Key(string(r)))...)
	}
	return errs
}

// The limits of Kubernetes' storage validation on a class's parameters.
const (
	maxProvisionerParameterSize = 256 * (1 << 10)
	maxProvisionerParameterLen  = 512
)

var (
	supportedClassReclaim = sets.New(string(corev1.PersistentVolumeReclaimDelete), string(corev1.PersistentVolumeReclaimRetain))
	supportedBindingModes = sets.New(string(storagev1.VolumeBindingImmediate), string(storagev1.VolumeBindingWaitForFirstConsumer))
)

// StorageClass validates a new StorageClass, as Kubernetes' storage ValidateStorageClass.
func StorageClass(sc *storagev1.StorageClass) field.ErrorList {
	errs := clusterObjectMeta(&sc.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	if sc.Provisioner == "" {
		errs = append(errs, field.Required(field.NewPath("provisioner"), ""))
	} else {
		errs = append(errs, qualifiedName(strings.ToLower(sc.Provisioner), field.NewPath("provisioner"))...)
	}
	errs = append(errs, classParameters(sc.Parameters, field.NewPath("parameters"))...)
	if sc.ReclaimPolicy != nil && *sc.ReclaimPolicy != "" && !supportedClassReclaim.Has(string(*sc.ReclaimPolicy)) {
		errs = append(errs, field.NotSupported(field.NewPath("reclaimPolicy"), sc.ReclaimPolicy, sets.List(supportedClassReclaim)))
	}
	if sc.VolumeBindingMode == nil {
		errs = append(errs, field.Required(field.NewPath("volumeBindingMode"), ""))
	} else if !supportedBindingModes.Has(string(*sc.VolumeBindingMode)) {
		errs = append(errs, field.NotSupported(field.NewPath("volumeBindingMode"), sc.VolumeBindingMode, sets.List(supportedBindingModes)))
	}
	for i, term := range sc.AllowedTopologies {
		p := field.NewPath("allowedTopologies").Index(i)
		if len(term.MatchLabelExpressions) == 0 {
			errs = append(errs, field.Required(p, "must have at least one label expression"))
		}
		for j, r := range term.MatchLabelExpressions {
			rp := p.Child("matchLabelExpressions").Index(j)
			errs = append(errs, metav1validation.ValidateLabelName(r.Key, rp.Child("key"))...)
			if len(r.Values) == 0 {
				errs = append(errs, field.Required(rp.Child("values"), "must specify as least one value"))
			}
		}
	}
	return errs
}

func classParameters(params map[string]string, fldPath *field.Path) field.ErrorList {
	if len(params) > maxProvisionerParameterLen {
		return field.ErrorList{field.TooLong(fldPath, "Provisioner Parameters exceeded max allowed", maxProvisionerParameterLen)}
	}
	var errs field.ErrorList
	var total int64
	for k, v := range params {
		if k == "" {
			errs = append(errs, field.Invalid(fldPath, k, "field can not be empty."))
		}
		total += int64(len(k)) + int64(len(v))
	}
	if total > maxProvisionerParameterSize {
		errs = append(errs, field.TooLong(fldPath, "", maxProvisionerParameterSize))
	}
	return errs
}

// StorageClassUpdate validates an update, as Kubernetes' ValidateStorageClassUpdate: parameters,
// provisioner, reclaimPolicy and volumeBindingMode are immutable.
func StorageClassUpdate(sc, old *storagev1.StorageClass) field.ErrorList {
	errs := metaUpdate(&sc.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, StorageClass(sc)...)
	if !reflect.DeepEqual(old.Parameters, sc.Parameters) {
		errs = append(errs, field.Forbidden(field.NewPath("parameters"), "updates to parameters are forbidden."))
	}
	if sc.Provisioner != old.Provisioner {
		errs = append(errs, field.Forbidden(field.NewPath("provisioner"), "updates to provisioner are forbidden."))
	}
	if ptrString(sc.ReclaimPolicy) != ptrString(old.ReclaimPolicy) {
		errs = append(errs, field.Forbidden(field.NewPath("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
	}
	return append(errs, apivalidation.ValidateImmutableField(sc.VolumeBindingMode, old.VolumeBindingMode, field.NewPath("volumeBindingMode"))...)
}

func ptrString[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}
