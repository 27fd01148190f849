package validation

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // cron jobs name IANA time zones; do not depend on the host's zoneinfo

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxParallelismForIndexedJob is Kubernetes' limit on the parallelism of indexed jobs.
const maxParallelismForIndexedJob = 100000

// Job validates a new Job: metadata and spec, as Kubernetes does on create.
func Job(j *batchv1.Job) field.ErrorList {
	errs := objectMeta(&j.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	errs = append(errs, generatedSelector(j)...)
	errs = append(errs, jobSpec(&j.Spec, field.NewPath("spec"))...)
	if j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion && j.Spec.Completions != nil && *j.Spec.Completions > 0 {
		host := fmt.Sprintf("%s-%d", j.Name, *j.Spec.Completions-1)
		if len(utilvalidation.IsDNS1123Label(host)) > 0 {
			errs = append(errs, field.Invalid(metaPath.Child("name"), j.Name, "will not able to create pod with invalid DNS label: "+host))
		}
	}
	return errs
}

// generatedSelector checks that a job without manualSelector carries the selector and labels
// that defaults generated from its uid.
func generatedSelector(j *batchv1.Job) field.ErrorList {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return nil
	}
	var errs field.ErrorList
	lp := field.NewPath("spec", "template", "metadata", "labels")
	if j.Spec.Template.Labels == nil {
		return field.ErrorList{field.Required(lp, "")}
	}
	if j.UID == "" {
		return nil
	}
	uid := string(j.UID)
	for _, key := range []string{batchv1.ControllerUidLabel, "controller-uid"} {
		if v, ok := j.Spec.Template.Labels[key]; ok && v != uid {
			errs = append(errs, field.Invalid(lp.Key(key), v, fmt.Sprintf("must be '%s'", uid)))
		}
	}
	if j.Spec.Selector == nil {
		return errs
	}
	if v, ok := j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel]; !ok || v != uid {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector", "matchLabels"), j.Spec.Selector.MatchLabels, "`selector` not auto-generated"))
	}
	return errs
}

// jobSpec is ValidateJobSpec: the selector is required and matches the template.
func jobSpec(s *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	errs := jobSpecBody(s, fldPath)
	if s.Selector == nil {
		errs = append(errs, field.Required(fldPath.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(s.Selector, strictSelector, fldPath.Child("selector"))...)
	}
	if selector, err := metav1.LabelSelectorAsSelector(s.Selector); err == nil {
		if selector.Empty() {
			errs = append(errs, field.Required(fldPath.Child("selector"), ""))
		}
		if !selector.Matches(labels.Set(s.Template.Labels)) {
			errs = append(errs, field.Invalid(fldPath.Child("template", "metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
		}
	}
	return errs
}

func jobSpecBody(s *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	nonNeg := func(v *int32, name string) {
		if v != nil {
			errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*v), fldPath.Child(name))...)
		}
	}
	nonNeg(s.Parallelism, "parallelism")
	nonNeg(s.Completions, "completions")
	nonNeg(s.BackoffLimit, "backoffLimit")
	nonNeg(s.TTLSecondsAfterFinished, "ttlSecondsAfterFinished")
	nonNeg(s.BackoffLimitPerIndex, "backoffLimitPerIndex")
	nonNeg(s.MaxFailedIndexes, "maxFailedIndexes")
	if s.ActiveDeadlineSeconds != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(*s.ActiveDeadlineSeconds, fldPath.Child("activeDeadlineSeconds"))...)
	}
	if m := s.CompletionMode; m != nil {
		valid := []batchv1.CompletionMode{batchv1.NonIndexedCompletion, batchv1.IndexedCompletion}
		if !contains(valid, *m) {
			errs = append(errs, field.NotSupported(fldPath.Child("completionMode"), *m, valid))
		}
		if *m == batchv1.IndexedCompletion {
			if s.Completions == nil {
				errs = append(errs, field.Required(fldPath.Child("completions"), fmt.Sprintf("when completion mode is %s", batchv1.IndexedCompletion)))
			}
			if s.Parallelism != nil && *s.Parallelism > maxParallelismForIndexedJob {
				errs = append(errs, field.Invalid(fldPath.Child("parallelism"), *s.Parallelism,
					fmt.Sprintf("must be less than or equal to %d when completion mode is %s", maxParallelismForIndexedJob, batchv1.IndexedCompletion)))
			}
		}
	}
	if p := s.PodReplacementPolicy; p != nil {
		valid := []batchv1.PodReplacementPolicy{batchv1.Failed, batchv1.TerminatingOrFailed}
		if !contains(valid, *p) {
			errs = append(errs, field.NotSupported(fldPath.Child("podReplacementPolicy"), *p, valid))
		}
	}
	tp := fldPath.Child("template")
	errs = append(errs, podTemplateSpec(&s.Template, tp)...)
	rp := s.Template.Spec.RestartPolicy
	if rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), rp, []corev1.RestartPolicy{corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}))
	} else if rp == corev1.RestartPolicyOnFailure && s.PodFailurePolicy != nil {
		errs = append(errs, field.Invalid(tp.Child("spec", "restartPolicy"), rp,
			fmt.Sprintf("only %q is supported when podFailurePolicy is specified", corev1.RestartPolicyNever)))
	}
	return errs
}

// JobUpdate is ValidateJobUpdate: selector, template, completion mode and pod failure policy are
// immutable; completions too.
func JobUpdate(j, old *batchv1.Job) field.ErrorList {
	sp := field.NewPath("spec")
	errs := metaUpdate(&j.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, jobSpec(&j.Spec, sp)...)
	errs = append(errs, apivalidation.ValidateImmutableField(j.Spec.Completions, old.Spec.Completions, sp.Child("completions"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(j.Spec.Selector, old.Spec.Selector, sp.Child("selector"))...)
	errs = append(errs, jobTemplateUpdate(j, old, sp.Child("template"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(j.Spec.CompletionMode, old.Spec.CompletionMode, sp.Child("completionMode"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(j.Spec.PodFailurePolicy, old.Spec.PodFailurePolicy, sp.Child("podFailurePolicy"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(j.Spec.BackoffLimitPerIndex, old.Spec.BackoffLimitPerIndex, sp.Child("backoffLimitPerIndex"))...)
	return errs
}

// jobTemplateUpdate keeps the template immutable, except the scheduling directives (node
// selector, tolerations, affinity, scheduling gates, labels, annotations) of a suspended job that
// has not started.
func jobTemplateUpdate(j, old *batchv1.Job, fldPath *field.Path) field.ErrorList {
	t := j.Spec.Template.DeepCopy()
	suspended := old.Spec.Suspend != nil && *old.Spec.Suspend && old.Status.StartTime == nil
	if suspended {
		t.Labels, t.Annotations = old.Spec.Template.Labels, old.Spec.Template.Annotations
		t.Spec.NodeSelector = old.Spec.Template.Spec.NodeSelector
		t.Spec.Tolerations = old.Spec.Template.Spec.Tolerations
		t.Spec.Affinity = old.Spec.Template.Spec.Affinity
		t.Spec.SchedulingGates = old.Spec.Template.Spec.SchedulingGates
	}
	return apivalidation.ValidateImmutableField(*t, old.Spec.Template, fldPath)
}

func jobStatus(s *batchv1.JobStatus, fldPath *field.Path) field.ErrorList {
	errs := replicaCounts(fldPath, map[string]int64{
		"active": int64(s.Active), "succeeded": int64(s.Succeeded), "failed": int64(s.Failed),
	}, nil)
	if s.Ready != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.Ready), fldPath.Child("ready"))...)
	}
	if s.Terminating != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.Terminating), fldPath.Child("terminating"))...)
	}
	if s.StartTime != nil && s.CompletionTime != nil && s.CompletionTime.Before(s.StartTime) {
		errs = append(errs, field.Invalid(fldPath.Child("completionTime"), s.CompletionTime, "completionTime cannot be set before startTime"))
	}
	return errs
}

// CronJob validates a new CronJob: metadata and spec, as Kubernetes does on create.
func CronJob(c *batchv1.CronJob) field.ErrorList {
	errs := objectMeta(&c.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	if len(c.Name) > 52 {
		errs = append(errs, field.Invalid(metaPath.Child("name"), c.Name, "must be no more than 52 characters"))
	}
	return append(errs, cronJobSpec(&c.Spec, nil, field.NewPath("spec"))...)
}

// CronJobUpdate validates an update of a CronJob (old to new): metadata, immutable fields, spec.
func CronJobUpdate(c, old *batchv1.CronJob) field.ErrorList {
	errs := metaUpdate(&c.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, cronJobSpec(&c.Spec, &old.Spec, field.NewPath("spec"))...)
	// Labels of the job template may change: the jobs it makes are new objects.
	return errs
}

func cronJobSpec(s, old *batchv1.CronJobSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Schedule == "" {
		errs = append(errs, field.Required(fldPath.Child("schedule"), ""))
	} else {
		allowTZ := old != nil && strings.Contains(old.Schedule, "TZ")
		errs = append(errs, schedule(s.Schedule, allowTZ, s.TimeZone, fldPath.Child("schedule"))...)
	}
	if s.StartingDeadlineSeconds != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(*s.StartingDeadlineSeconds, fldPath.Child("startingDeadlineSeconds"))...)
	}
	if old == nil || !equalStringPtr(old.TimeZone, s.TimeZone) {
		errs = append(errs, timeZone(s.TimeZone, fldPath.Child("timeZone"))...)
	}
	cp := fldPath.Child("concurrencyPolicy")
	valid := []batchv1.ConcurrencyPolicy{batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent}
	switch {
	case s.ConcurrencyPolicy == "":
		errs = append(errs, field.Required(cp, ""))
	case !contains(valid, s.ConcurrencyPolicy):
		errs = append(errs, field.NotSupported(cp, s.ConcurrencyPolicy, valid))
	}
	jp := fldPath.Child("jobTemplate")
	errs = append(errs, metav1validation.ValidateLabels(s.JobTemplate.Labels, jp.Child("metadata", "labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(s.JobTemplate.Annotations, jp.Child("metadata", "annotations"))...)
	errs = append(errs, jobSpecBody(&s.JobTemplate.Spec, jp.Child("spec"))...)
	if s.JobTemplate.Spec.Selector != nil {
		errs = append(errs, field.Invalid(jp.Child("spec", "selector"), s.JobTemplate.Spec.Selector, "`selector` will be auto-generated"))
	}
	if m := s.JobTemplate.Spec.ManualSelector; m != nil && *m {
		errs = append(errs, field.NotSupported(jp.Child("spec", "manualSelector"), *m, []string{"nil", "false"}))
	}
	if s.SuccessfulJobsHistoryLimit != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.SuccessfulJobsHistoryLimit), fldPath.Child("successfulJobsHistoryLimit"))...)
	}
	if s.FailedJobsHistoryLimit != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.FailedJobsHistoryLimit), fldPath.Child("failedJobsHistoryLimit"))...)
	}
	return errs
}

func equalStringPtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func schedule(sched string, allowTZ bool, tz *string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if _, err := cron.ParseStandard(sched); err != nil {
		errs = append(errs, field.Invalid(fldPath, sched, err.Error()))
	}
	switch {
	case strings.Contains(sched, "TZ") && tz != nil:
		errs = append(errs, field.Invalid(fldPath, sched, "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
	case strings.Contains(sched, "TZ") && !allowTZ:
		errs = append(errs, field.Invalid(fldPath, sched, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
	}
	return errs
}

var validTimeZoneCharacters = regexp.MustCompile(`^[A-Za-z\.\-_0-9+]{1,14}$`)

func timeZone(tz *string, fldPath *field.Path) field.ErrorList {
	if tz == nil {
		return nil
	}
	if *tz == "" {
		return field.ErrorList{field.Invalid(fldPath, *tz, "timeZone must be nil or non-empty string")}
	}
	for _, part := range strings.Split(*tz, "/") {
		if part == "." || part == ".." || strings.HasPrefix(part, "-") || !validTimeZoneCharacters.MatchString(part) {
			return field.ErrorList{field.Invalid(fldPath, *tz, fmt.Sprintf("unknown time zone %s", *tz))}
		}
	}
	var errs field.ErrorList
	if strings.EqualFold(*tz, "Local") {
		errs = append(errs, field.Invalid(fldPath, *tz, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"))
	}
	if _, err := time.LoadLocation(*tz); err != nil {
		errs = append(errs, field.Invalid(fldPath, *tz, err.Error()))
	}
	return errs
}
