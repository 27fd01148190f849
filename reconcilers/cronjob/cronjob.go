// Package cronjob is the reconciler of CronJobs, as the cronjob controller (v2) of
// kube-controller-manager (pkg/controller/cronjob): at each time of its schedule (cron syntax
// with the @hourly-style macros, in spec.timeZone) it creates a Job from its jobTemplate, named
// <cronjob>-<minutes since the epoch>, following concurrencyPolicy (Allow, Forbid, Replace),
// startingDeadlineSeconds and suspend; it keeps status.active, lastScheduleTime and
// lastSuccessfulTime, and deletes the oldest finished Jobs beyond the history limits. Missed
// schedules are handled as Kubernetes does: only the most recent one is started, however many
// were missed. Time is the engine's clock, so tests step schedules.
package cronjob

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler, as the actor of its writes.
const Name = "cronjob"

// scheduledTimestampAnnotation records on a Job the time it was scheduled for.
const scheduledTimestampAnnotation = "batch.kubernetes.io/cronjob-scheduled-timestamp"

var (
	jobsResource     = schema.GroupResource{Group: "batch", Resource: "jobs"}
	cronJobsResource = schema.GroupResource{Group: "batch", Resource: "cronjobs"}
)

// EventRecorder records Kubernetes Events; *recorder.Recorder is one.
type EventRecorder interface {
	Eventf(obj runtime.Object, cause uint64, eventtype, reason, format string, args ...any)
}

// writer is what the reconciler needs of the registry.
type writer interface {
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
}

var _ writer = (*registry.Registry)(nil)

// Config configures the reconciler.
type Config struct {
	// Workers reconciling CronJobs. Default 16: a reconcile mostly waits for its two appends
	// (the Job, then the CronJob's status), and a schedule shared by many CronJobs comes due at
	// once (BenchmarkCronJobs: p99 from the schedule to the Job 1.42 s with 4 workers, 0.97 s
	// with 16, docs/BENCHMARKS.md).
	Workers int
}

// Controller is the CronJob reconciler.
type Controller struct {
	w        writer
	ix       *informer.Index
	now      func() time.Time
	jobs     *kinds.Kind
	cronJobs *kinds.Kind
	events   EventRecorder
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the CronJob reconciler on e, with the recorder of its Events (component
// "cronjob-controller").
func New(e *engine.Engine, cfg Config) (*Controller, error) {
	ks, err := e.Kinds(jobsResource, cronJobsResource)
	if err != nil {
		return nil, fmt.Errorf("cronjob: %w", err)
	}
	jobs, cjs := ks[0], ks[1]
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	rec, err := e.EventRecorder(Name, "cronjob-controller")
	if err != nil {
		return nil, err
	}
	c := &Controller{w: e.Registry(), ix: e.Index(), now: e.Clock().Now, jobs: jobs, cronJobs: cjs, events: rec}
	e.Register(engine.Registration{
		Name:       Name,
		For:        cronJobsResource,
		Owns:       []schema.GroupResource{jobsResource},
		Workers:    cfg.Workers,
		Reconciler: engine.ReconcilerFunc(c.reconcile),
	})
	return c, nil
}

func (c *Controller) request(cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(Name), Cause: cause}
}

// ownedJobs returns the Jobs the CronJob controls, from the index.
func (c *Controller) ownedJobs(cj *batchv1.CronJob) []*batchv1.Job {
	return informer.Controlled[*batchv1.Job](c.ix, jobsResource, cj.UID)
}

func finishedCondition(j *batchv1.Job) (batchv1.JobConditionType, bool) {
	for _, cd := range j.Status.Conditions {
		if (cd.Type == batchv1.JobComplete || cd.Type == batchv1.JobFailed) && cd.Status == corev1.ConditionTrue {
			return cd.Type, true
		}
	}
	return "", false
}

func refOf(j *batchv1.Job) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: j.Namespace, Name: j.Name, UID: j.UID, ResourceVersion: j.ResourceVersion}
}

func (c *Controller) reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	obj, ok := c.ix.Object(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	cj, ok := obj.(*batchv1.CronJob)
	if !ok {
		return engine.Result{}, fmt.Errorf("%w: cronjobs decode to %T", engine.ErrTerminal, obj)
	}
	cj = cj.DeepCopy()
	old := cj.Status.DeepCopy()
	jobs := c.ownedJobs(cj)
	res, syncErr := c.sync(ctx, req, cj, jobs)
	if !apiequality.Semantic.DeepEqual(*old, cj.Status) {
		if err := c.updateStatus(ctx, cj, req.Cause); err != nil {
			return engine.Result{}, errors.Join(syncErr, err)
		}
	}
	if syncErr != nil {
		return engine.Result{}, syncErr
	}
	if cj.DeletionTimestamp == nil {
		if err := c.cleanupFinishedJobs(ctx, cj, jobs, req.Cause); err != nil {
			return engine.Result{}, err
		}
	}
	return res, nil
}

// sync is syncCronJob: it updates cj.Status in place and creates or deletes Jobs.
func (c *Controller) sync(ctx context.Context, req engine.Request, cj *batchv1.CronJob, jobs []*batchv1.Job) (engine.Result, error) {
	now := c.now()
	byUID := map[string]*batchv1.Job{}
	for _, j := range jobs {
		byUID[string(j.UID)] = j
		found := slices.ContainsFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.UID == j.UID })
		cond, finished := finishedCondition(j)
		switch {
		case !found && !finished:
			// A Job of ours not in the active list: created by kubectl create job --from, or
			// by us just before a crash.
			c.event(cj, req.Cause, corev1.EventTypeWarning, "UnexpectedJob", "Saw a job that the controller did not create or forgot: %s", j.Name)
		case found && finished:
			cj.Status.Active = slices.DeleteFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.UID == j.UID })
			c.event(cj, req.Cause, corev1.EventTypeNormal, "SawCompletedJob", "Saw completed job: %s, condition: %v", j.Name, cond)
		}
		if cond == batchv1.JobComplete && j.Status.CompletionTime != nil &&
			(cj.Status.LastSuccessfulTime == nil || j.Status.CompletionTime.After(cj.Status.LastSuccessfulTime.Time)) {
			cj.Status.LastSuccessfulTime = j.Status.CompletionTime.DeepCopy()
		}
	}
	// Active Jobs that are gone.
	cj.Status.Active = slices.DeleteFunc(cj.Status.Active, func(r corev1.ObjectReference) bool {
		if _, ok := byUID[string(r.UID)]; ok {
			return false
		}
		c.event(cj, req.Cause, corev1.EventTypeNormal, "MissingJob", "Active job went missing: %v", r.Name)
		return true
	})
	if cj.DeletionTimestamp != nil {
		return engine.Result{}, nil
	}
	if cj.Spec.TimeZone != nil {
		if _, err := time.LoadLocation(*cj.Spec.TimeZone); err != nil {
			c.event(cj, req.Cause, corev1.EventTypeWarning, "UnknownTimeZone", "invalid timeZone: %q: %s", *cj.Spec.TimeZone, err)
			return engine.Result{}, nil
		}
	}
	if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		return engine.Result{}, nil
	}
	sched, err := parseSchedule(cj)
	if err != nil {
		c.event(cj, req.Cause, corev1.EventTypeWarning, "UnparseableSchedule", "unparseable schedule: %q : %s", cj.Spec.Schedule, err)
		return engine.Result{}, nil
	}
	next := engine.Result{RequeueAfter: nextScheduleTimeDuration(cj, now, sched)}
	_, scheduled, miss := mostRecentScheduleTime(cj, now, sched, true)
	if scheduled == nil {
		return next, nil
	}
	if miss == manyMissed {
		c.event(cj, req.Cause, corev1.EventTypeWarning, "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")
	}
	if cj.Spec.StartingDeadlineSeconds != nil && scheduled.Add(time.Duration(*cj.Spec.StartingDeadlineSeconds)*time.Second).Before(now) {
		c.event(cj, req.Cause, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", scheduled.UTC().Format(time.RFC1123Z))
		return next, nil
	}
	name := jobName(cj, *scheduled)
	if slices.ContainsFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.Name == name }) ||
		(cj.Status.LastScheduleTime != nil && cj.Status.LastScheduleTime.Time.Equal(*scheduled)) {
		return next, nil
	}
	if cj.Spec.ConcurrencyPolicy == batchv1.ForbidConcurrent && len(cj.Status.Active) > 0 {
		c.event(cj, req.Cause, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
		return next, nil
	}
	if cj.Spec.ConcurrencyPolicy == batchv1.ReplaceConcurrent {
		for _, r := range slices.Clone(cj.Status.Active) {
			if err := c.deleteJob(ctx, cj, r.Name, r.UID, req.Cause); err != nil {
				return engine.Result{}, err
			}
			cj.Status.Active = slices.DeleteFunc(cj.Status.Active, func(x corev1.ObjectReference) bool { return x.UID == r.UID })
		}
	}
	job := jobFromTemplate(cj, *scheduled)
	out, err := c.w.Create(ctx, c.jobs, job, c.request(c.specCause(req)))
	switch {
	case apierrors.IsAlreadyExists(err):
		// Created before, by us (a crash between the Job and the status) or by a replica
		// that held the key: it is this schedule's Job if we control it.
		existing, ok := c.ix.Object(eventlog.Key{Group: jobsResource.Group, Resource: jobsResource.Resource, Namespace: cj.Namespace, Name: name})
		ej, isJob := existing.(*batchv1.Job)
		if !ok || !isJob {
			return engine.Result{}, fmt.Errorf("cronjob: job %s/%s exists but is not in the index yet: %w", cj.Namespace, name, err)
		}
		if ref := metav1.GetControllerOfNoCopy(ej); ref == nil || ref.UID != cj.UID {
			return next, nil
		}
		if _, finished := finishedCondition(ej); !finished && !slices.ContainsFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.UID == ej.UID }) {
			cj.Status.Active = append(cj.Status.Active, refOf(ej))
		}
		cj.Status.LastScheduleTime = &metav1.Time{Time: *scheduled}
		return next, nil
	case err != nil:
		c.event(cj, req.Cause, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return engine.Result{}, fmt.Errorf("cronjob: creating job %s/%s: %w", cj.Namespace, name, err)
	}
	created, ok := out.(*batchv1.Job)
	if !ok {
		return engine.Result{}, fmt.Errorf("cronjob: jobs decode to %T", out)
	}
	c.event(cj, req.Cause, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %v", created.Name)
	cj.Status.Active = append(cj.Status.Active, refOf(created))
	cj.Status.LastScheduleTime = &metav1.Time{Time: *scheduled}
	return next, nil
}

// specCause is the cause of the Jobs a CronJob creates: its last spec change.
func (c *Controller) specCause(req engine.Request) uint64 {
	if m, ok := c.ix.Meta(req.Key); ok && m.SpecSeq > 0 {
		return max(m.SpecSeq, req.Cause)
	}
	return req.Cause
}

// jobFromTemplate is getJobFromTemplate2: the Job of a scheduled time.
func jobFromTemplate(cj *batchv1.CronJob, scheduled time.Time) *batchv1.Job {
	t := cj.Spec.JobTemplate.DeepCopy()
	annotations := t.Annotations
	if annotations == nil {
		annotations = map[string]string{}
	}
	at := scheduled
	if cj.Spec.TimeZone != nil {
		if loc, err := time.LoadLocation(*cj.Spec.TimeZone); err == nil {
			at = scheduled.In(loc)
		}
	}
	annotations[scheduledTimestampAnnotation] = at.Format(time.RFC3339)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: jobName(cj, scheduled), Namespace: cj.Namespace, Labels: t.Labels, Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: t.Spec,
	}
}

func (c *Controller) deleteJob(ctx context.Context, cj *batchv1.CronJob, name string, uid types.UID, cause uint64) error {
	_, _, err := c.w.Delete(ctx, c.jobs, cj.Namespace, name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}, c.request(cause))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		c.event(cj, cause, corev1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
		return fmt.Errorf("cronjob: deleting job %s/%s: %w", cj.Namespace, name, err)
	}
	c.event(cj, cause, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", name)
	return nil
}

// cleanupFinishedJobs deletes the oldest finished Jobs beyond the history limits.
func (c *Controller) cleanupFinishedJobs(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job, cause uint64) error {
	if cj.Spec.FailedJobsHistoryLimit == nil && cj.Spec.SuccessfulJobsHistoryLimit == nil {
		return nil
	}
	var succeeded, failed []*batchv1.Job
	for _, j := range jobs {
		if j.DeletionTimestamp != nil {
			continue
		}
		switch cond, _ := finishedCondition(j); cond {
		case batchv1.JobComplete:
			succeeded = append(succeeded, j)
		case batchv1.JobFailed:
			failed = append(failed, j)
		}
	}
	var errs []error
	if cj.Spec.SuccessfulJobsHistoryLimit != nil {
		errs = append(errs, c.removeOldest(ctx, cj, succeeded, int(*cj.Spec.SuccessfulJobsHistoryLimit), cause))
	}
	if cj.Spec.FailedJobsHistoryLimit != nil {
		errs = append(errs, c.removeOldest(ctx, cj, failed, int(*cj.Spec.FailedJobsHistoryLimit), cause))
	}
	return errors.Join(errs...)
}

// removeOldest deletes the Jobs beyond limit, the oldest by start time first (as Kubernetes'
// byJobStartTime: a Job not started is newer than any started; then by name).
func (c *Controller) removeOldest(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job, limit int, cause uint64) error {
	if len(jobs) <= limit {
		return nil
	}
	sort.Slice(jobs, func(a, b int) bool {
		sa, sb := jobs[a].Status.StartTime, jobs[b].Status.StartTime
		switch {
		case sa == nil && sb != nil:
			return false
		case sa != nil && sb == nil:
			return true
		case sa == nil || sa.Equal(sb):
			return jobs[a].Name < jobs[b].Name
		}
		return sa.Before(sb)
	})
	var errs []error
	for _, j := range jobs[:len(jobs)-limit] {
		errs = append(errs, c.deleteJob(ctx, cj, j.Name, j.UID, cause))
	}
	return errors.Join(errs...)
}

// updateStatus writes the CronJob's status.
func (c *Controller) updateStatus(ctx context.Context, cj *batchv1.CronJob, cause uint64) error {
	st := cj.Status
	_, err := c.w.Modify(ctx, c.cronJobs, cj.Namespace, cj.Name, c.request(cause), registry.UpdateOptions{Subresource: "status"},
		func(cur runtime.Object) (runtime.Object, error) {
			x, ok := cur.(*batchv1.CronJob)
			if !ok || x.UID != cj.UID {
				return nil, errSkip
			}
			x.Status = st
			x.ResourceVersion = cj.ResourceVersion
			return x, nil
		})
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("cronjob: updating the status of %s/%s: %w", cj.Namespace, cj.Name, err)
}

var errSkip = errors.New("cronjob: nothing to do")

func (c *Controller) event(cj *batchv1.CronJob, cause uint64, typ, reason, format string, args ...any) {
	obj, ok := c.ix.Object(eventlog.Key{Group: cronJobsResource.Group, Resource: cronJobsResource.Resource, Namespace: cj.Namespace, Name: cj.Name})
	if !ok {
		return
	}
	c.events.Eventf(obj, cause, typ, reason, format, args...)
}
