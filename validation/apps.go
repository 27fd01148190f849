package validation

import (
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var strictSelector = metav1validation.LabelSelectorValidationOptions{}

func replicas(r *int32, fldPath *field.Path) field.ErrorList {
	if r == nil {
		return nil
	}
	return apivalidation.ValidateNonnegativeField(int64(*r), fldPath)
}

func replicasOf(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// requiredSelector checks a workload's selector: present, well formed, not empty.
func requiredSelector(sel *metav1.LabelSelector, what string, fldPath *field.Path) field.ErrorList {
	if sel == nil {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	errs := metav1validation.ValidateLabelSelector(sel, strictSelector, fldPath)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(fldPath, sel, "empty selector is invalid for "+what))
	}
	return errs
}

// templateForReplicaSet is ValidatePodTemplateSpecForReplicaSet: the selector matches the
// template's labels, and its pods restart Always and have no deadline.
func templateForReplicaSet(t *corev1.PodTemplateSpec, sel *metav1.LabelSelector, owner string, specPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	fldPath := specPath.Child("template")
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return field.ErrorList{field.Invalid(specPath.Child("selector"), sel, "invalid label selector")}
	}
	if !selector.Empty() && !selector.Matches(labels.Set(t.Labels)) {
		errs = append(errs, field.Invalid(fldPath.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, podTemplateSpec(t, fldPath)...)
	if t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(fldPath.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if t.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(fldPath.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in "+owner+" is not Supported"))
	}
	return errs
}

// Deployment validates a new Deployment: metadata and spec, as Kubernetes does on create.
func Deployment(d *appsv1.Deployment) field.ErrorList {
	errs := objectMeta(&d.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, deploymentSpec(&d.Spec, field.NewPath("spec"))...)
}

func deploymentSpec(s *appsv1.DeploymentSpec, fldPath *field.Path) field.ErrorList {
	errs := replicas(s.Replicas, fldPath.Child("replicas"))
	errs = append(errs, requiredSelector(s.Selector, "deployment", fldPath.Child("selector"))...)
	errs = append(errs, templateForReplicaSet(&s.Template, s.Selector, "ReplicaSet", fldPath)...)
	errs = append(errs, deploymentStrategy(&s.Strategy, fldPath.Child("strategy"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), fldPath.Child("minReadySeconds"))...)
	if s.RevisionHistoryLimit != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.RevisionHistoryLimit), fldPath.Child("revisionHistoryLimit"))...)
	}
	if s.ProgressDeadlineSeconds != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.ProgressDeadlineSeconds), fldPath.Child("progressDeadlineSeconds"))...)
		if *s.ProgressDeadlineSeconds <= s.MinReadySeconds {
			errs = append(errs, field.Invalid(fldPath.Child("progressDeadlineSeconds"), *s.ProgressDeadlineSeconds, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

func deploymentStrategy(st *appsv1.DeploymentStrategy, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch st.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if st.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(fldPath.Child("rollingUpdate"), fmt.Sprintf("may not be specified when strategy `type` is '%s'", appsv1.RecreateDeploymentStrategyType)))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if st.RollingUpdate == nil {
			errs = append(errs, field.Required(fldPath.Child("rollingUpdate"), "this should be defaulted and never be nil"))
			break
		}
		ru := st.RollingUpdate
		p := fldPath.Child("rollingUpdate")
		errs = append(errs, positiveIntOrPercent(ru.MaxUnavailable, p.Child("maxUnavailable"))...)
		errs = append(errs, positiveIntOrPercent(ru.MaxSurge, p.Child("maxSurge"))...)
		if intOrPercentValue(ru.MaxUnavailable) == 0 && intOrPercentValue(ru.MaxSurge) == 0 {
			errs = append(errs, field.Invalid(p.Child("maxUnavailable"), ru.MaxUnavailable, "may not be 0 when `maxSurge` is 0"))
		}
		errs = append(errs, notMoreThan100Percent(ru.MaxUnavailable, p.Child("maxUnavailable"))...)
	default:
		errs = append(errs, field.NotSupported(fldPath, st,
			[]appsv1.DeploymentStrategyType{appsv1.RecreateDeploymentStrategyType, appsv1.RollingUpdateDeploymentStrategyType}))
	}
	return errs
}

func positiveIntOrPercent(v *intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	var errs field.ErrorList
	switch v.Type {
	case intstr.String:
		for _, msg := range utilvalidation.IsValidPercent(v.StrVal) {
			errs = append(errs, field.Invalid(fldPath, *v, msg))
		}
	case intstr.Int:
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(v.IntValue()), fldPath)...)
	default:
		errs = append(errs, field.Invalid(fldPath, *v, "must be an integer or percentage (e.g '5%%')"))
	}
	return errs
}

// percentValue is the percentage of a valid percent string.
func percentValue(v *intstr.IntOrString) (int, bool) {
	if v == nil || v.Type != intstr.String || len(utilvalidation.IsValidPercent(v.StrVal)) != 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
	return n, err == nil
}

// intOrPercentValue is Kubernetes' getIntOrPercentValue: the percentage, else the number (0 for
// what cannot be read).
func intOrPercentValue(v *intstr.IntOrString) int {
	if v == nil {
		return 0
	}
	if n, ok := percentValue(v); ok {
		return n
	}
	return v.IntValue()
}

func notMoreThan100Percent(v *intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	if n, ok := percentValue(v); ok && n > 100 {
		return field.ErrorList{field.Invalid(fldPath, *v, "must not be greater than 100%")}
	}
	return nil
}

// DeploymentUpdate validates an update of a Deployment (old to new): metadata, immutable fields, spec.
func DeploymentUpdate(d, old *appsv1.Deployment) field.ErrorList {
	errs := metaUpdate(&d.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, deploymentSpec(&d.Spec, field.NewPath("spec"))...)
	return append(errs, apivalidation.ValidateImmutableField(d.Spec.Selector, old.Spec.Selector, field.NewPath("spec", "selector"))...)
}

func deploymentStatus(s *appsv1.DeploymentStatus, fldPath *field.Path) field.ErrorList {
	errs := replicaCounts(fldPath, map[string]int64{
		"replicas": int64(s.Replicas), "updatedReplicas": int64(s.UpdatedReplicas), "readyReplicas": int64(s.ReadyReplicas),
		"availableReplicas": int64(s.AvailableReplicas), "unavailableReplicas": int64(s.UnavailableReplicas),
		"observedGeneration": s.ObservedGeneration,
	}, [][2]string{{"updatedReplicas", "status.replicas"}, {"readyReplicas", "status.replicas"}, {"availableReplicas", "status.replicas"}, {"availableReplicas", "readyReplicas"}})
	if s.CollisionCount != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.CollisionCount), fldPath.Child("collisionCount"))...)
	}
	return errs
}

// ReplicaSet validates a new ReplicaSet: metadata and spec, as Kubernetes does on create.
func ReplicaSet(rs *appsv1.ReplicaSet) field.ErrorList {
	errs := objectMeta(&rs.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, replicaSetSpec(&rs.Spec, field.NewPath("spec"))...)
}

func replicaSetSpec(s *appsv1.ReplicaSetSpec, fldPath *field.Path) field.ErrorList {
	errs := replicas(s.Replicas, fldPath.Child("replicas"))
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), fldPath.Child("minReadySeconds"))...)
	// Kubernetes says "deployment" here too.
	errs = append(errs, requiredSelector(s.Selector, "deployment", fldPath.Child("selector"))...)
	return append(errs, templateForReplicaSet(&s.Template, s.Selector, "ReplicaSet", fldPath)...)
}

// ReplicaSetUpdate validates an update of a ReplicaSet (old to new): metadata, immutable fields, spec.
func ReplicaSetUpdate(rs, old *appsv1.ReplicaSet) field.ErrorList {
	errs := metaUpdate(&rs.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, replicaSetSpec(&rs.Spec, field.NewPath("spec"))...)
	return append(errs, apivalidation.ValidateImmutableField(rs.Spec.Selector, old.Spec.Selector, field.NewPath("spec", "selector"))...)
}

func replicaSetStatus(s *appsv1.ReplicaSetStatus, fldPath *field.Path) field.ErrorList {
	return replicaCounts(fldPath, map[string]int64{
		"replicas": int64(s.Replicas), "fullyLabeledReplicas": int64(s.FullyLabeledReplicas), "readyReplicas": int64(s.ReadyReplicas),
		"availableReplicas": int64(s.AvailableReplicas), "observedGeneration": s.ObservedGeneration,
	}, [][2]string{{"fullyLabeledReplicas", "status.replicas"}, {"readyReplicas", "status.replicas"}, {"availableReplicas", "status.replicas"}, {"availableReplicas", "readyReplicas"}})
}

// DaemonSet validates a new DaemonSet: metadata and spec, as Kubernetes does on create.
func DaemonSet(ds *appsv1.DaemonSet) field.ErrorList {
	errs := objectMeta(&ds.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, daemonSetSpec(&ds.Spec, field.NewPath("spec"))...)
}

func daemonSetSpec(s *appsv1.DaemonSetSpec, fldPath *field.Path) field.ErrorList {
	errs := metav1validation.ValidateLabelSelector(s.Selector, strictSelector, fldPath.Child("selector"))
	selector, err := metav1.LabelSelectorAsSelector(s.Selector)
	if err == nil && !selector.Matches(labels.Set(s.Template.Labels)) {
		errs = append(errs, field.Invalid(fldPath.Child("template", "metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
	}
	if s.Selector != nil && len(s.Selector.MatchLabels)+len(s.Selector.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(fldPath.Child("selector"), s.Selector, "empty selector is invalid for daemonset"))
	}
	tp := fldPath.Child("template")
	errs = append(errs, podTemplateSpec(&s.Template, tp)...)
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), s.Template.Spec.RestartPolicy, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if s.Template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(tp.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in DaemonSet is not Supported"))
	}
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), fldPath.Child("minReadySeconds"))...)
	if s.RevisionHistoryLimit != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.RevisionHistoryLimit), fldPath.Child("revisionHistoryLimit"))...)
	}
	us := &s.UpdateStrategy
	up := fldPath.Child("updateStrategy")
	switch us.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
	case appsv1.RollingUpdateDaemonSetStrategyType:
		if us.RollingUpdate == nil {
			errs = append(errs, field.Required(up.Child("rollingUpdate"), ""))
			break
		}
		rp := up.Child("rollingUpdate")
		ru := us.RollingUpdate
		errs = append(errs, positiveIntOrPercent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
		errs = append(errs, positiveIntOrPercent(ru.MaxSurge, rp.Child("maxSurge"))...)
		errs = append(errs, notMoreThan100Percent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
		errs = append(errs, notMoreThan100Percent(ru.MaxSurge, rp.Child("maxSurge"))...)
		hasUnavailable, hasSurge := intOrPercentValue(ru.MaxUnavailable) != 0, intOrPercentValue(ru.MaxSurge) != 0
		switch {
		case hasUnavailable && hasSurge:
			errs = append(errs, field.Invalid(rp.Child("maxSurge"), ru.MaxSurge, "may not be set when maxUnavailable is non-zero"))
		case !hasUnavailable && !hasSurge:
			errs = append(errs, field.Required(rp.Child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
		}
	default:
		errs = append(errs, field.NotSupported(up, us,
			[]appsv1.DaemonSetUpdateStrategyType{appsv1.RollingUpdateDaemonSetStrategyType, appsv1.OnDeleteDaemonSetStrategyType}))
	}
	return errs
}

// DaemonSetUpdate validates an update of a DaemonSet (old to new): metadata, immutable fields, spec.
func DaemonSetUpdate(ds, old *appsv1.DaemonSet) field.ErrorList {
	errs := metaUpdate(&ds.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, daemonSetSpec(&ds.Spec, field.NewPath("spec"))...)
	return append(errs, apivalidation.ValidateImmutableField(ds.Spec.Selector, old.Spec.Selector, field.NewPath("spec", "selector"))...)
}

func daemonSetStatus(s *appsv1.DaemonSetStatus, fldPath *field.Path) field.ErrorList {
	return replicaCounts(fldPath, map[string]int64{
		"currentNumberScheduled": int64(s.CurrentNumberScheduled), "numberMisscheduled": int64(s.NumberMisscheduled),
		"desiredNumberScheduled": int64(s.DesiredNumberScheduled), "numberReady": int64(s.NumberReady),
		"updatedNumberScheduled": int64(s.UpdatedNumberScheduled), "numberAvailable": int64(s.NumberAvailable),
		"numberUnavailable": int64(s.NumberUnavailable), "observedGeneration": s.ObservedGeneration,
	}, nil)
}

// StatefulSet validates a new StatefulSet: metadata and spec, as Kubernetes does on create.
func StatefulSet(ss *appsv1.StatefulSet) field.ErrorList {
	// StatefulSet names become pod hostnames: a DNS label.
	errs := objectMeta(&ss.ObjectMeta, apivalidation.NameIsDNSLabel)
	return append(errs, statefulSetSpec(&ss.Spec, field.NewPath("spec"))...)
}

func statefulSetSpec(s *appsv1.StatefulSetSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.PodManagementPolicy {
	case "":
		errs = append(errs, field.Required(fldPath.Child("podManagementPolicy"), ""))
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	default:
		errs = append(errs, field.Invalid(fldPath.Child("podManagementPolicy"), s.PodManagementPolicy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)))
	}
	up := fldPath.Child("updateStrategy")
	switch s.UpdateStrategy.Type {
	case "":
		errs = append(errs, field.Required(up, ""))
	case appsv1.OnDeleteStatefulSetStrategyType:
		if s.UpdateStrategy.RollingUpdate != nil {
			errs = append(errs, field.Invalid(up.Child("rollingUpdate"), s.UpdateStrategy.RollingUpdate,
				fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := s.UpdateStrategy.RollingUpdate; ru != nil {
			if ru.Partition != nil {
				errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*ru.Partition), up.Child("rollingUpdate", "partition"))...)
			}
			if ru.MaxUnavailable != nil {
				errs = append(errs, positiveIntOrPercent(ru.MaxUnavailable, up.Child("rollingUpdate", "maxUnavailable"))...)
				if intOrPercentValue(ru.MaxUnavailable) == 0 {
					errs = append(errs, field.Invalid(up.Child("rollingUpdate", "maxUnavailable"), ru.MaxUnavailable, "cannot be 0"))
				}
			}
		}
	default:
		errs = append(errs, field.Invalid(up, s.UpdateStrategy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)))
	}
	if rp := s.PersistentVolumeClaimRetentionPolicy; rp != nil {
		valid := []appsv1.PersistentVolumeClaimRetentionPolicyType{appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType}
		p := fldPath.Child("persistentVolumeClaimRetentionPolicy")
		if !contains(valid, rp.WhenDeleted) {
			errs = append(errs, field.NotSupported(p.Child("whenDeleted"), rp.WhenDeleted, valid))
		}
		if !contains(valid, rp.WhenScaled) {
			errs = append(errs, field.NotSupported(p.Child("whenScaled"), rp.WhenScaled, valid))
		}
	}
	errs = append(errs, replicas(s.Replicas, fldPath.Child("replicas"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), fldPath.Child("minReadySeconds"))...)
	if s.Ordinals != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.Ordinals.Start), fldPath.Child("ordinals", "start"))...)
	}
	errs = append(errs, requiredSelector(s.Selector, "statefulset", fldPath.Child("selector"))...)
	tp := fldPath.Child("template")
	if selector, err := metav1.LabelSelectorAsSelector(s.Selector); err != nil {
		errs = append(errs, field.Invalid(fldPath.Child("selector"), s.Selector, ""))
	} else {
		if !selector.Empty() && !selector.Matches(labels.Set(s.Template.Labels)) {
			errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
		}
		// Kubernetes checks only the template's labels and annotations here, and finds bad pod specs
		// when the controller creates pods; logplane checks the pod spec now, its mounts allowed to
		// name volume claim templates.
		claims := make([]string, len(s.VolumeClaimTemplates))
		for i, c := range s.VolumeClaimTemplates {
			claims[i] = c.Name
		}
		errs = append(errs, podTemplateSpec(&s.Template, tp, claims...)...)
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), s.Template.Spec.RestartPolicy, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if s.Template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(tp.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in StatefulSet is not Supported"))
	}
	for i, pvc := range s.VolumeClaimTemplates {
		p := fldPath.Child("volumeClaimTemplates").Index(i)
		if pvc.Name == "" {
			errs = append(errs, field.Required(p.Child("metadata", "name"), ""))
		} else {
			errs = append(errs, dns1123Subdomain(pvc.Name, p.Child("metadata", "name"))...)
		}
		if len(pvc.Spec.AccessModes) == 0 {
			errs = append(errs, field.Required(p.Child("spec", "accessModes"), "at least 1 access mode is required"))
		}
	}
	return errs
}

// StatefulSetUpdate is ValidateStatefulSetUpdate: only replicas, ordinals, template, update
// strategy, PVC retention policy and minReadySeconds may change.
func StatefulSetUpdate(ss, old *appsv1.StatefulSet) field.ErrorList {
	errs := metaUpdate(&ss.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, statefulSetSpec(&ss.Spec, field.NewPath("spec"))...)
	c := ss.Spec.DeepCopy()
	c.Replicas = old.Spec.Replicas
	c.Template = old.Spec.Template
	c.UpdateStrategy = old.Spec.UpdateStrategy
	c.MinReadySeconds = old.Spec.MinReadySeconds
	c.Ordinals = old.Spec.Ordinals
	c.PersistentVolumeClaimRetentionPolicy = old.Spec.PersistentVolumeClaimRetentionPolicy
	if !equality.Semantic.DeepEqual(*c, old.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
	}
	return errs
}

func statefulSetStatus(s *appsv1.StatefulSetStatus, fldPath *field.Path) field.ErrorList {
	return replicaCounts(fldPath, map[string]int64{
		"replicas": int64(s.Replicas), "readyReplicas": int64(s.ReadyReplicas), "currentReplicas": int64(s.CurrentReplicas),
		"updatedReplicas": int64(s.UpdatedReplicas), "availableReplicas": int64(s.AvailableReplicas),
		"observedGeneration": s.ObservedGeneration,
	}, [][2]string{{"readyReplicas", "status.replicas"}, {"currentReplicas", "status.replicas"}, {"updatedReplicas", "status.replicas"}, {"availableReplicas", "status.replicas"}, {"availableReplicas", "status.readyReplicas"}})
}

// ControllerRevision validates a new ControllerRevision: metadata and spec, as Kubernetes does on create.
func ControllerRevision(cr *appsv1.ControllerRevision) field.ErrorList {
	errs := objectMeta(&cr.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, controllerRevisionBody(cr)...)
}

func controllerRevisionBody(cr *appsv1.ControllerRevision) field.ErrorList {
	var errs field.ErrorList
	if cr.Data.Raw == nil && cr.Data.Object == nil {
		errs = append(errs, field.Required(field.NewPath("data"), "data is mandatory"))
	}
	return append(errs, apivalidation.ValidateNonnegativeField(cr.Revision, field.NewPath("revision"))...)
}

// ControllerRevisionUpdate validates an update of a ControllerRevision (old to new): metadata, immutable fields, spec.
func ControllerRevisionUpdate(cr, old *appsv1.ControllerRevision) field.ErrorList {
	errs := metaUpdate(&cr.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, controllerRevisionBody(cr)...)
	if string(cr.Data.Raw) != string(old.Data.Raw) {
		errs = append(errs, field.Invalid(field.NewPath("data"), "", apivalidation.FieldImmutableErrorMsg))
	}
	return errs
}
