package validation

import (
	"fmt"
	"math"
	"reflect"
	"strings"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// updatablePodSpecFields is how Kubernetes names what a pod update may change.
var updatablePodSpecFields = []string{
	"`spec.containers[*].image`",
	"`spec.initContainers[*].image`",
	"`spec.activeDeadlineSeconds`",
	"`spec.tolerations` (only additions to existing tolerations)",
	"`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
}

// PodUpdate is ValidatePodUpdate: metadata may change, and of the spec only container images,
// activeDeadlineSeconds (downwards), added tolerations and removed scheduling gates.
func PodUpdate(p, old *corev1.Pod) field.ErrorList {
	specPath := field.NewPath("spec")
	errs := metaUpdate(&p.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, podSpec(&p.Spec, specPath, podSpecOptions{isPod: true, allowHostSysctls: hasHostSysctls(&old.Spec)})...)

	cerrs, stop := containerUpdates(p.Spec.Containers, old.Spec.Containers, specPath.Child("containers"))
	errs = append(errs, cerrs...)
	if stop {
		return errs
	}
	cerrs, stop = containerUpdates(p.Spec.InitContainers, old.Spec.InitContainers, specPath.Child("initContainers"))
	errs = append(errs, cerrs...)
	if stop {
		return errs
	}

	adsPath := specPath.Child("activeDeadlineSeconds")
	if p.Spec.ActiveDeadlineSeconds != nil {
		v := *p.Spec.ActiveDeadlineSeconds
		if v < 0 || v > math.MaxInt32 {
			return append(errs, field.Invalid(adsPath, v, utilvalidation.InclusiveRangeError(0, math.MaxInt32)))
		}
		if old.Spec.ActiveDeadlineSeconds != nil && *old.Spec.ActiveDeadlineSeconds < v {
			return append(errs, field.Invalid(adsPath, v, "must be less than or equal to previous value"))
		}
	} else if old.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Invalid(adsPath, p.Spec.ActiveDeadlineSeconds, "must not update from a positive integer to nil value"))
	}

	errs = append(errs, onlyAddedTolerations(p.Spec.Tolerations, old.Spec.Tolerations, specPath.Child("tolerations"))...)
	errs = append(errs, onlyDeletedSchedulingGates(p.Spec.SchedulingGates, old.Spec.SchedulingGates, specPath.Child("schedulingGates"))...)

	if equality.Semantic.DeepEqual(p.Spec, old.Spec) {
		return errs
	}
	munged := *p.Spec.DeepCopy()
	for i := range munged.Containers {
		munged.Containers[i].Image = old.Spec.Containers[i].Image
	}
	for i := range munged.InitContainers {
		munged.InitContainers[i].Image = old.Spec.InitContainers[i].Image
	}
	munged.ActiveDeadlineSeconds = old.Spec.ActiveDeadlineSeconds
	munged.SchedulingGates = old.Spec.SchedulingGates
	munged.Tolerations = old.Spec.Tolerations
	if t := old.Spec.TerminationGracePeriodSeconds; t != nil && *t < 0 &&
		munged.TerminationGracePeriodSeconds != nil && *munged.TerminationGracePeriodSeconds == 1 {
		munged.TerminationGracePeriodSeconds = t
	}
	if len(old.Spec.SchedulingGates) > 0 && old.Spec.NodeSelector != nil {
		// A gated pod may gain node selector terms; the rest of the spec still may not change.
		munged.NodeSelector = old.Spec.NodeSelector
	}
	if !equality.Semantic.DeepEqual(munged, old.Spec) {
		diff := cmp.Diff(old.Spec, munged)
		errs = append(errs, field.Forbidden(specPath,
			fmt.Sprintf("pod updates may not change fields other than %s\n%v", strings.Join(updatablePodSpecFields, ","), diff)))
	}
	return errs
}

func containerUpdates(cs, old []corev1.Container, fldPath *field.Path) (field.ErrorList, bool) {
	if len(cs) != len(old) {
		return field.ErrorList{field.Forbidden(fldPath, "pod updates may not add or remove containers")}, true
	}
	return nil, false
}

func onlyAddedTolerations(ts, old []corev1.Toleration, fldPath *field.Path) field.ErrorList {
	for _, o := range old {
		found := false
		for _, t := range ts {
			c := o
			c.TolerationSeconds = t.TolerationSeconds
			if reflect.DeepEqual(c, t) {
				found = true
				break
			}
		}
		if !found {
			return field.ErrorList{field.Forbidden(fldPath, "existing toleration can not be modified except its tolerationSeconds")}
		}
	}
	return nil
}

func onlyDeletedSchedulingGates(gates, old []corev1.PodSchedulingGate, fldPath *field.Path) field.ErrorList {
	if len(gates) == 0 {
		return nil
	}
	had := map[string]bool{}
	for _, g := range old {
		had[g.Name] = true
	}
	for i, g := range gates {
		if !had[g.Name] {
			return field.ErrorList{field.Forbidden(fldPath.Index(i), "only deletion is allowed, but found new scheduling gate '"+g.Name+"'")}
		}
	}
	return nil
}

// podStatusUpdate checks what a node agent reports: a phase Kubernetes knows, no way back from a
// terminal phase, IPs that parse, and the node unchanged.
func podStatusUpdate(p, old *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	st := field.NewPath("status")
	phases := []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown}
	if p.Status.Phase != "" && !contains(phases, p.Status.Phase) {
		errs = append(errs, field.NotSupported(st.Child("phase"), p.Status.Phase, phases))
	}
	terminal := func(ph corev1.PodPhase) bool { return ph == corev1.PodSucceeded || ph == corev1.PodFailed }
	if terminal(old.Status.Phase) && p.Status.Phase != old.Status.Phase {
		errs = append(errs, field.Forbidden(st.Child("phase"),
			fmt.Sprintf("cannot transition from terminal phase %q to %q", old.Status.Phase, p.Status.Phase)))
	}
	if p.Spec.NodeName != old.Spec.NodeName {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "nodeName"), "may not be changed by a status update"))
	}
	for i, ip := range p.Status.PodIPs {
		errs = append(errs, utilvalidation.IsValidIP(st.Child("podIPs").Index(i).Child("ip"), ip.IP)...)
	}
	for i, ip := range p.Status.HostIPs {
		errs = append(errs, utilvalidation.IsValidIP(st.Child("hostIPs").Index(i).Child("ip"), ip.IP)...)
	}
	for i, cs := range p.Status.ContainerStatuses {
		if cs.RestartCount < 0 {
			errs = append(errs, field.Invalid(st.Child("containerStatuses").Index(i).Child("restartCount"), cs.RestartCount, isNegativeErrorMsg))
		}
	}
	return errs
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
