package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/ownerref"
	"github.com/logplane/logplane/registry"
)

// Messages of the conditions, as Kubernetes writes them.
const (
	msgCompletionsReached = "Reached expected number of succeeded pods"
	msgBackoffLimit       = "Job has reached the specified backoff limit"
	msgDeadline           = "Job was active longer than specified deadline"
	msgMaxFailedIndexes   = "Job has exceeded the specified maximal number of failed indexes"
	msgFailedIndexes      = "Job has failed indexes"
)

// errSkip ends a mutation that has nothing to do.
var errSkip = errors.New("job: nothing to do")

func (c *Controller) request(cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(Name), Cause: cause}
}

// specCause is the cause of the pods a Job creates: its last spec change, else the trigger.
func (c *Controller) specCause(key eventlog.Key, req engine.Request) uint64 {
	if m, ok := c.ix.Meta(key); ok && m.SpecSeq > 0 {
		return max(m.SpecSeq, req.Cause)
	}
	return req.Cause
}

// Finished pods: a pod the Job has not counted yet is finished once it succeeded or failed, or,
// with podReplacementPolicy TerminatingOrFailed, once it is being deleted (it is then replaced
// at once). With podReplacementPolicy Failed (the default when the Job has a podFailurePolicy)
// a pod being deleted is terminating until it reaches a terminal phase, and is replaced then.
// A pod stopped by its deletion counts as failed unless it succeeded before the deletion: a
// container that exits 0 on SIGTERM does not make a pod stopped by a deadline or a suspension
// a success.
func isSucceeded(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded && !stoppedByDeletion(p)
}
func isFailed(p *corev1.Pod, j *batchv1.Job) bool {
	switch {
	case p.Status.Phase == corev1.PodFailed:
		return true
	case p.Status.Phase == corev1.PodSucceeded:
		return stoppedByDeletion(p)
	default:
		return p.DeletionTimestamp != nil && !onlyReplaceFailed(j)
	}
}
func stoppedByDeletion(p *corev1.Pod) bool {
	if p.DeletionTimestamp == nil {
		return false
	}
	// deletionTimestamp less the grace period is when the deletion was asked for.
	asked := p.DeletionTimestamp.Add(-time.Duration(ptr.Deref(p.DeletionGracePeriodSeconds, 0)) * time.Second)
	return !finishTime(p).Before(asked)
}
func isFinished(p *corev1.Pod, j *batchv1.Job) bool { return isSucceeded(p) || isFailed(p, j) }

// isTerminating: being deleted, not in a terminal phase yet (status.terminating).
func isTerminating(p *corev1.Pod) bool {
	return p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// onlyReplaceFailed is Kubernetes' onlyReplaceFailedPods: podReplacementPolicy Failed, which a
// podFailurePolicy implies.
func onlyReplaceFailed(j *batchv1.Job) bool {
	return j.Spec.PodFailurePolicy != nil || ptr.Deref(j.Spec.PodReplacementPolicy, batchv1.TerminatingOrFailed) == batchv1.Failed
}

func hasTracking(p *corev1.Pod) bool {
	return slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer)
}

func condition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if j.Status.Conditions[i].Type == t {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

func isTrue(j *batchv1.Job, t batchv1.JobConditionType) bool {
	cd := condition(j, t)
	return cd != nil && cd.Status == corev1.ConditionTrue
}

// setCondition adds or updates a condition; it reports whether it changed anything.
func setCondition(st *batchv1.JobStatus, t batchv1.JobConditionType, status corev1.ConditionStatus, reason, msg string, now time.Time) bool {
	for i := range st.Conditions {
		cd := &st.Conditions[i]
		if cd.Type != t {
			continue
		}
		if cd.Status == status && cd.Reason == reason && cd.Message == msg {
			return false
		}
		if cd.Status != status {
			cd.LastTransitionTime = metav1.NewTime(now)
		}
		cd.Status, cd.Reason, cd.Message, cd.LastProbeTime = status, reason, msg, metav1.NewTime(now)
		return true
	}
	st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: t, Status: status, Reason: reason, Message: msg,
		LastProbeTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now)})
	return true
}

func completionsOf(j *batchv1.Job) (int, bool) {
	if j.Spec.Completions == nil {
		return 0, false
	}
	return int(*j.Spec.Completions), true
}

func parallelismOf(j *batchv1.Job) int {
	if j.Spec.Parallelism == nil {
		return 1
	}
	return int(*j.Spec.Parallelism)
}

func isIndexed(j *batchv1.Job) bool {
	return j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion
}

// ActivityBatchPeriod is how long a status write that changes only the numbers of active,
// ready and terminating pods (and sets the start time) waits after the Job's last status write
// (or its start), so that it carries what happens meanwhile: a one-pod Job that finishes
// within it is written once, Complete. Kubernetes' job controller delays the sync of every pod
// change by its syncJobBatchPeriod, 1s; here counts and conditions are written at once and only
// that churn waits.
const ActivityBatchPeriod = time.Second

// onlyActivity reports whether next differs from cur only in active, ready, terminating and a
// start time being set.
func onlyActivity(cur, next batchv1.JobStatus) bool {
	if cur.StartTime != nil && !cur.StartTime.Equal(next.StartTime) {
		return false
	}
	next.Active, next.Ready, next.Terminating, next.StartTime = cur.Active, cur.Ready, cur.Terminating, cur.StartTime
	if cur.UncountedTerminatedPods == nil && next.UncountedTerminatedPods != nil &&
		len(next.UncountedTerminatedPods.Succeeded)+len(next.UncountedTerminatedPods.Failed) == 0 {
		next.UncountedTerminatedPods = nil
	}
	return apiequality.Semantic.DeepEqual(cur, next)
}

// state is what one reconcile finds: the Job's pods, sorted out.
type state struct {
	active      []*corev1.Pod
	newSucc     []*corev1.Pod // finished since the Job's mark: counted by this reconcile's write
	newFail     []*corev1.Pod // idem, counting towards the backoffLimit
	ignored     []*corev1.Pod // idem, failed, ignored by the pod failure policy
	failed      []*corev1.Pod // every failed pod there is (counted or not), and those gone uncounted
	release     []*corev1.Pod // finished pods that still carry the tracking finalizer of old
	failMessage string        // of a FailJob rule matched
	// behind: a pod finished in a change the journal has not had delivered yet.
	behind               bool
	lastFailure          time.Time // finish time of the latest failure after the latest success
	failuresAfterSuccess int
	// Pods being deleted that have not reached a terminal phase (status.terminating); with
	// podReplacementPolicy Failed they are neither active nor finished, and not replaced yet.
	terminating, notReplaced []*corev1.Pod
	// With backoffLimitPerIndex (perIndex): the failed indexes, those of the status and new
	// ones; and per pending index, the latest failed pod, which its replacement takes its
	// failure count from.
	failedIndexes indexes
	delayed       map[int]*corev1.Pod
}

func finishTime(p *corev1.Pod) time.Time {
	var t time.Time
	for _, cs := range slices.Concat(p.Status.ContainerStatuses, p.Status.InitContainerStatuses) {
		if cs.State.Terminated != nil && cs.State.Terminated.FinishedAt.After(t) {
			t = cs.State.Terminated.FinishedAt.Time
		}
	}
	if t.IsZero() && p.DeletionTimestamp != nil {
		t = p.DeletionTimestamp.Add(-time.Duration(ptr.Deref(p.DeletionGracePeriodSeconds, 0)) * time.Second)
	}
	if t.IsZero() {
		t = p.CreationTimestamp.Time
	}
	return t
}

// podsOf returns the pods the Job controls, from the index.
func (c *Controller) podsOf(j *batchv1.Job) []*corev1.Pod {
	return informer.Controlled[*corev1.Pod](c.ix, podsResource, j.UID)
}

func (c *Controller) reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	key := req.Key
	obj, ok := c.ix.Object(key)
	if !ok {
		c.exp.Delete(key)
		return engine.Result{}, nil
	}
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return engine.Result{}, fmt.Errorf("%w: jobs decode to %T", engine.ErrTerminal, obj)
	}
	if m := j.Spec.ManagedBy; m != nil && *m != batchv1.JobControllerName {
		return engine.Result{}, nil // another controller's Job
	}
	now := c.now()
	finished := isTrue(j, batchv1.JobComplete) || isTrue(j, batchv1.JobFailed)
	if finished {
		// Release what is left, and delete the Job once its time to live has passed.
		if err := c.release(ctx, j, c.podsOf(j), req.Cause); err != nil {
			return engine.Result{}, err
		}
		return c.ttl(ctx, j, now, req.Cause)
	}
	if j.DeletionTimestamp != nil {
		return engine.Result{}, c.release(ctx, j, c.podsOf(j), req.Cause)
	}

	if err := c.claimPods(ctx, j, req.Cause); err != nil {
		return engine.Result{}, err
	}
	if err := c.replay(ctx, j); err != nil {
		return engine.Result{}, err
	}
	mark := countedThrough(j)
	pos, fresh, ok := c.journal.since(j.UID, mark)
	if !ok {
		return engine.Result{}, fmt.Errorf("job: the journal of %s/%s is not complete after its replay", j.Namespace, j.Name)
	}
	// The pods, read after the journal: the index is as far as the journal, or further.
	st := c.sort(j, c.podsOf(j), pos, fresh)
	if st.behind {
		// A pod finished in a change the journal has not had delivered yet; that change queues
		// the Job again.
		return engine.Result{}, nil
	}
	status := *j.Status.DeepCopy()
	status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	completions, hasCompletions := completionsOf(j)
	var done indexes
	if isIndexed(j) {
		done = parseIndexes(status.CompletedIndexes, completions)
		for _, p := range st.newSucc {
			if i := indexOf(p); i != unknownIndex && i < completions {
				done[i] = true
			}
		}
		if perIndex(j) {
			st.perIndex(j, done, completions)
			status.FailedIndexes = ptr.To(st.failedIndexes.String())
		}
		status.CompletedIndexes = done.String()
		status.Succeeded = int32(len(done))
	} else {
		status.Succeeded += int32(len(st.newSucc))
	}
	status.Failed += int32(len(st.newFail))
	succeeded, failed := int(status.Succeeded), int(status.Failed)

	suspended := j.Spec.Suspend != nil && *j.Spec.Suspend
	if !suspended && status.StartTime == nil {
		// The time this process first started the Job, until a status write carries it.
		status.StartTime = ptr.To(metav1.NewTime(c.journal.started(j.UID, now)))
	}
	var result engine.Result
	var manageErr error

	// Conditions that finish the Job, in Kubernetes' order.
	failureTarget := condition(j, batchv1.JobFailureTarget)
	successMet := condition(j, batchv1.JobSuccessCriteriaMet)
	var failReason, failMsg string
	switch {
	case failureTarget != nil && failureTarget.Status == corev1.ConditionTrue:
		failReason, failMsg = failureTarget.Reason, failureTarget.Message
	case st.failMessage != "":
		failReason, failMsg = batchv1.JobReasonPodFailurePolicy, st.failMessage
	case j.Spec.BackoffLimit != nil && (failed > int(*j.Spec.BackoffLimit) || pastBackoffLimitOnFailure(j, st.active)):
		failReason, failMsg = batchv1.JobReasonBackoffLimitExceeded, msgBackoffLimit
	case !suspended && j.Spec.ActiveDeadlineSeconds != nil && status.StartTime != nil &&
		!now.Before(status.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds)*time.Second)):
		failReason, failMsg = batchv1.JobReasonDeadlineExceeded, msgDeadline
	case perIndex(j) && j.Spec.MaxFailedIndexes != nil && len(st.failedIndexes) > int(*j.Spec.MaxFailedIndexes):
		failReason, failMsg = batchv1.JobReasonMaxFailedIndexesExceeded, msgMaxFailedIndexes
	case perIndex(j) && len(st.failedIndexes) > 0 && len(st.failedIndexes)+succeeded >= completions:
		failReason, failMsg = batchv1.JobReasonFailedIndexes, msgFailedIndexes
	}
	complete := false
	successReason, successMsg := batchv1.JobReasonCompletionsReached, msgCompletionsReached
	if failReason == "" {
		var policyMsg string
		if isIndexed(j) {
			policyMsg = matchSuccessPolicy(j.Spec.SuccessPolicy, completions, done)
		}
		switch {
		case successMet != nil && successMet.Status == corev1.ConditionTrue:
			complete = true
			successReason, successMsg = successMet.Reason, successMet.Message
		case policyMsg != "":
			complete = true
			successReason, successMsg = batchv1.JobReasonSuccessPolicy, policyMsg
		case isIndexed(j):
			complete = succeeded >= completions
		case hasCompletions:
			complete = succeeded >= completions
		default: // no completions: done once one pod succeeded and none is left running
			complete = succeeded > 0 && len(st.active) == 0
		}
	}
	if failReason != "" || complete {
		st.delayed = nil // no replacement will come
	}

	switch {
	case failReason != "":
		if setCondition(&status, batchv1.JobFailureTarget, corev1.ConditionTrue, failReason, failMsg, now) {
			c.event(j, req.Cause, corev1.EventTypeWarning, failReason, "%s", failMsg)
		}
		manageErr = c.deletePods(ctx, j, st.active, req.Cause)
	case complete:
		setCondition(&status, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, successReason, successMsg, now)
		manageErr = c.deletePods(ctx, j, st.active, req.Cause)
	case suspended:
		if len(st.active) > 0 {
			manageErr = c.deletePods(ctx, j, st.active, req.Cause)
		}
		if setCondition(&status, batchv1.JobSuspended, corev1.ConditionTrue, "JobSuspended", "Job suspended", now) {
			c.event(j, req.Cause, corev1.EventTypeNormal, "Suspended", "Job suspended")
		}
	default:
		if cd := condition(j, batchv1.JobSuspended); cd != nil && cd.Status == corev1.ConditionTrue {
			setCondition(&status, batchv1.JobSuspended, corev1.ConditionFalse, "JobResumed", "Job resumed", now)
			c.event(j, req.Cause, corev1.EventTypeNormal, "Resumed", "Job resumed")
			status.StartTime = nil // the deadline counts from the resumption
		}
		if status.StartTime == nil {
			status.StartTime = ptr.To(metav1.NewTime(c.journal.started(j.UID, now)))
		}
		if c.exp.Satisfied(key) {
			var wait time.Duration
			st.active, wait, manageErr = c.manage(ctx, key, j, st, done, succeeded, now, c.specCause(key, req))
			if wait > 0 {
				result.RequeueAfter = wait
			}
		}
		if j.Spec.ActiveDeadlineSeconds != nil {
			left := status.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds) * time.Second).Sub(now)
			if result.RequeueAfter == 0 || left < result.RequeueAfter {
				result.RequeueAfter = max(left, time.Millisecond)
			}
		}
	}

	// Pods deleted by this reconcile stay active until they are seen deleted (then counted).
	status.Active = int32(len(st.active))
	var ready int32
	for _, p := range st.active {
		if podReady(p) {
			ready++
		}
	}
	status.Ready = &ready
	status.Terminating = ptr.To(int32(len(st.terminating)))
	// The final condition, once none is left running or terminating.
	if len(st.active) == 0 && len(st.terminating) == 0 && len(st.notReplaced) == 0 {
		if cd := condition(&batchv1.Job{Status: status}, batchv1.JobFailureTarget); cd != nil && cd.Status == corev1.ConditionTrue {
			setCondition(&status, batchv1.JobFailed, corev1.ConditionTrue, cd.Reason, cd.Message, now)
			result = engine.Result{}
		} else if cd := condition(&batchv1.Job{Status: status}, batchv1.JobSuccessCriteriaMet); cd != nil && cd.Status == corev1.ConditionTrue {
			setCondition(&status, batchv1.JobComplete, corev1.ConditionTrue, cd.Reason, cd.Message, now)
			status.CompletionTime = ptr.To(metav1.NewTime(now))
			c.event(j, req.Cause, corev1.EventTypeNormal, "Completed", "Job completed")
			result = engine.Result{}
		}
	}
	counted := len(st.newSucc)+len(st.newFail)+len(st.ignored) > 0
	if !counted && onlyActivity(j.Status, status) {
		// Only how many pods are active, ready or terminating changed: written once the batch
		// period has passed since the Job's last status write (or its start), with what
		// happened meanwhile.
		last := c.journal.written(j.UID, j.CreationTimestamp.Time)
		if wait := last.Add(ActivityBatchPeriod).Sub(now); wait > 0 {
			if result.RequeueAfter == 0 || wait < result.RequeueAfter {
				result.RequeueAfter = wait
			}
			return result, manageErr
		}
	}
	if err := c.updateStatus(ctx, j, status, pos, counted, req.Cause); err != nil {
		return engine.Result{}, errors.Join(manageErr, err)
	}
	if err := c.release(ctx, j, st.release, req.Cause); err != nil {
		return engine.Result{}, errors.Join(manageErr, err)
	}
	if manageErr != nil {
		return engine.Result{}, manageErr
	}
	if isTrue(&batchv1.Job{Status: status}, batchv1.JobComplete) || isTrue(&batchv1.Job{Status: status}, batchv1.JobFailed) {
		return c.ttl(ctx, &batchv1.Job{ObjectMeta: j.ObjectMeta, Spec: j.Spec, Status: status}, now, req.Cause)
	}
	return result, nil
}

// sort sorts the Job's pods out: active ones, and finished ones, counted already or to count
// now: those whose terminal transition the journal holds after the Job's mark, up to pos
// (fresh, which also holds the pods gone since they finished).
func (c *Controller) sort(j *batchv1.Job, pods []*corev1.Pod, pos uint64, fresh map[types.UID]*transition) state {
	var st state
	var lastSuccess time.Time
	var failures []time.Time
	finished := func(p *corev1.Pod, t *transition) {
		succeeded := isSucceeded(p)
		msg, action, counts := matchPodFailurePolicy(j.Spec.PodFailurePolicy, p)
		if t != nil { // to count now
			switch {
			case succeeded:
				st.newSucc = append(st.newSucc, p)
			case counts:
				st.newFail = append(st.newFail, p)
			default:
				st.ignored = append(st.ignored, p)
			}
			if action != nil && *action == batchv1.PodFailurePolicyActionFailJob && st.failMessage == "" {
				st.failMessage = msg
			}
		}
		// The back-off follows the failures since the latest success, among the pods there.
		if succeeded {
			if t := finishTime(p); t.After(lastSuccess) {
				lastSuccess = t
			}
			return
		}
		st.failed = append(st.failed, p)
		if counts || action == nil {
			failures = append(failures, finishTime(p))
		}
	}
	for _, p := range pods {
		if isTerminating(p) {
			st.terminating = append(st.terminating, p)
		}
		if _, ok := fresh[p.UID]; ok && !isFinished(p, j) {
			st.behind = true // cannot be: the index is as far as the journal
			return st
		}
		switch {
		case !isFinished(p, j) && p.DeletionTimestamp != nil:
			st.notReplaced = append(st.notReplaced, p)
			continue
		case !isFinished(p, j):
			st.active = append(st.active, p)
			continue
		}
		if hasTracking(p) {
			st.release = append(st.release, p)
		}
		t, ok := fresh[p.UID]
		delete(fresh, p.UID)
		switch {
		case ok && t.seq > pos, !ok && resourceVersion(p) > pos:
			// Finished in a change the journal has not had delivered yet.
			st.behind = true
			return st
		case ok:
			finished(p, t)
		default:
			finished(p, nil) // its transition is at or before the mark: counted
		}
	}
	// Pods gone before they were counted.
	for _, t := range fresh {
		if t.seq > pos {
			st.behind = true
			return st
		}
		finished(t.pod, t)
	}
	for _, t := range failures {
		if t.After(lastSuccess) {
			st.failuresAfterSuccess++
			if t.After(st.lastFailure) {
				st.lastFailure = t
			}
		}
	}
	return st
}

func resourceVersion(p *corev1.Pod) uint64 {
	v, _ := strconv.ParseUint(p.ResourceVersion, 10, 64)
	return v
}

// pastBackoffLimitOnFailure: with restartPolicy OnFailure, the restarts of the active pods'
// containers count as failures (Kubernetes' pastBackoffLimitOnFailure).
func pastBackoffLimitOnFailure(j *batchv1.Job, active []*corev1.Pod) bool {
	if j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		return false
	}
	var restarts int32
	for _, p := range active {
		for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			restarts += cs.RestartCount
		}
	}
	limit := *j.Spec.BackoffLimit
	return limit == 0 && restarts > 0 || limit > 0 && restarts >= limit
}

func podReady(p *corev1.Pod) bool {
	for _, cd := range p.Status.Conditions {
		if cd.Type == corev1.PodReady {
			return cd.Status == corev1.ConditionTrue
		}
	}
	return false
}

// backOff is the delay before the next pod after n consecutive failures.
func (c *Controller) backOff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := c.cfg.BackOff
	for range n - 1 {
		d *= 2
		if d >= c.cfg.MaxBackOff {
			return c.cfg.MaxBackOff
		}
	}
	return min(d, c.cfg.MaxBackOff)
}

// manage creates or deletes pods so that the Job runs as many as parallelism and the remaining
// completions allow. It returns the active pods left and, when failures make it wait, how long.
func (c *Controller) manage(ctx context.Context, key eventlog.Key, j *batchv1.Job, st state, done indexes, succeeded int, now time.Time, cause uint64) ([]*corev1.Pod, time.Duration, error) {
	active := st.active
	parallelism := parallelismOf(j)
	completions, hasCompletions := completionsOf(j)
	want := parallelism
	switch {
	case isIndexed(j) || hasCompletions:
		want = min(parallelism, max(completions-succeeded, 0))
	case succeeded > 0:
		want = min(parallelism, len(active)) // without completions, no new pod once one succeeded
	}
	// With podReplacementPolicy Failed, a pod being deleted is replaced once it has failed:
	// until then it takes a place of those to create.
	room := want - len(st.notReplaced)
	var surplus []*corev1.Pod
	var missing []int // indexes to run (unknownIndex for a NonIndexed Job)
	if isIndexed(j) {
		// Keep one pod per pending index; the others (duplicates, completed, failed or
		// out-of-range indexes) go.
		seen := indexes{}
		for _, p := range st.notReplaced {
			seen[indexOf(p)] = true
		}
		var keep []*corev1.Pod
		for _, p := range byAge(active) {
			i := indexOf(p)
			if i == unknownIndex || i >= completions || done[i] || st.failedIndexes[i] || seen[i] {
				surplus = append(surplus, p)
				continue
			}
			seen[i] = true
			keep = append(keep, p)
		}
		if len(keep) > want {
			surplus = append(surplus, keep[want:]...)
			keep = keep[:want]
		}
		active = keep
		for i := 0; i < completions && len(active)+len(missing) < room; i++ {
			if !done[i] && !seen[i] && !st.failedIndexes[i] {
				missing = append(missing, i)
			}
		}
	} else {
		if len(active) > want {
			ordered := byAge(active)
			surplus = ordered[want:]
			active = ordered[:want]
		}
		for range room - len(active) {
			missing = append(missing, unknownIndex)
		}
	}
	var errs []error
	if len(surplus) > 0 {
		errs = append(errs, c.deletePods(ctx, j, surplus, cause))
	}
	if len(missing) == 0 {
		return active, 0, errors.Join(errs...)
	}
	var wait time.Duration
	switch {
	case perIndex(j):
		// Each index backs off after its own failures (Kubernetes' getRemainingTimePerIndex);
		// the indexes whose time has come start now, and the reconcile comes back for the others.
		ready := missing[:0:0]
		for _, i := range missing {
			if left := c.indexBackOff(st.delayed[i], now); left > 0 {
				if wait == 0 || left < wait {
					wait = left
				}
				continue
			}
			ready = append(ready, i)
		}
		if missing = ready; len(missing) == 0 {
			return active, wait, errors.Join(errs...)
		}
	case st.failuresAfterSuccess > 0:
		if left := st.lastFailure.Add(c.backOff(st.failuresAfterSuccess)).Sub(now); left > 0 {
			return active, left, errors.Join(errs...)
		}
	}
	missing = missing[:min(len(missing), c.cfg.Burst)]
	c.exp.ExpectCreations(key, len(missing))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, i := range missing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := c.createPod(ctx, j, i, st.delayed[i], cause)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				c.exp.CreationObserved(key)
				errs = append(errs, err)
				return
			}
			active = append(active, p)
		}()
	}
	wg.Wait()
	return active, wait, errors.Join(errs...)
}

// byAge orders pods as Kubernetes picks those to keep: ready before not ready, running before
// pending, older before newer.
func byAge(pods []*corev1.Pod) []*corev1.Pod {
	out := slices.Clone(pods)
	sort.SliceStable(out, func(a, b int) bool {
		pa, pb := out[a], out[b]
		if ra, rb := podReady(pa), podReady(pb); ra != rb {
			return ra
		}
		if ra, rb := pa.Status.Phase == corev1.PodRunning, pb.Status.Phase == corev1.PodRunning; ra != rb {
			return ra
		}
		return pa.CreationTimestamp.Before(&pb.CreationTimestamp)
	})
	return out
}

// claimPods adopts the orphan pods the Job's selector matches and releases those it controls
// that its selector no longer matches, as Kubernetes' ControllerRefManager claims them; the
// pods adopted or released show in the index, and queue the Job, once written.
func (c *Controller) claimPods(ctx context.Context, j *batchv1.Job, cause uint64) error {
	selector, err := metav1.LabelSelectorAsSelector(j.Spec.Selector)
	if err != nil || selector.Empty() {
		return nil // an invalid or empty selector claims nothing (validation refuses both)
	}
	var errs []error
	for _, p := range c.podsOf(j) {
		if !selector.Matches(labels.Set(p.Labels)) {
			errs = append(errs, ownerref.Release(ctx, c.w, c.pods, p.Namespace, p.Name, p.UID, []types.UID{j.UID}, c.request(cause)))
		}
	}
	ref := ownerref.Controller("batch/v1", "Job", j.Name, j.UID)
	_, err = ownerref.AdoptOrphans[*corev1.Pod](ctx, c.w, c.ix, c.pods, j.Namespace, selector, nil, ref, c.request(cause))
	return errors.Join(append(errs, err)...)
}

// podFromTemplate is the pod a Job creates: its template, with the Job as controller and, for an Indexed Job, the completion index (and, with
// backoffLimitPerIndex, the index's failure counts, from the failed pod it replaces, if any).
func podFromTemplate(j *batchv1.Job, index int, replaces *corev1.Pod) *corev1.Pod {
	t := j.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       j.Namespace,
			GenerateName:    j.Name + "-",
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			Finalizers:      t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{ownerref.Controller("batch/v1", "Job", j.Name, j.UID)},
		},
		Spec: t.Spec,
	}
	if index != unknownIndex {
		v := strconv.Itoa(index)
		pod.GenerateName = fmt.Sprintf("%s-%d-", j.Name, index)
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[batchv1.JobCompletionIndexAnnotation] = v
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		pod.Labels[batchv1.JobCompletionIndexAnnotation] = v
		if pod.Spec.Hostname == "" {
			pod.Spec.Hostname = fmt.Sprintf("%s-%d", j.Name, index)
		}
		addCompletionIndexEnv(&pod.Spec)
		if perIndex(j) {
			failures, ignored := newIndexFailureCounts(j, replaces)
			pod.Annotations[batchv1.JobIndexFailureCountAnnotation] = strconv.Itoa(int(failures))
			if ignored > 0 {
				pod.Annotations[batchv1.JobIndexIgnoredFailureCountAnnotation] = strconv.Itoa(int(ignored))
			}
		}
	}
	return pod
}

func (c *Controller) createPod(ctx context.Context, j *batchv1.Job, index int, replaces *corev1.Pod, cause uint64) (*corev1.Pod, error) {
	out, err := c.w.Create(ctx, c.pods, podFromTemplate(j, index, replaces), c.request(cause))
	if err != nil {
		c.event(j, cause, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return nil, fmt.Errorf("job: creating a pod of %s/%s: %w", j.Namespace, j.Name, err)
	}
	p, ok := out.(*corev1.Pod)
	if !ok {
		return nil, fmt.Errorf("job: pods decode to %T", out)
	}
	c.event(j, cause, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", p.Name)
	return p, nil
}

// deletePods deletes active pods (surplus ones, or all of a Job that is finishing or
// suspended); they then count as failed, as on Kubernetes.
func (c *Controller) deletePods(ctx context.Context, j *batchv1.Job, pods []*corev1.Pod, cause uint64) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uid := p.UID
			_, _, err := c.w.Delete(ctx, c.pods, p.Namespace, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}, c.request(cause))
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return
			}
			if err != nil {
				c.event(j, cause, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
				mu.Lock()
				errs = append(errs, fmt.Errorf("job: deleting pod %s/%s: %w", p.Namespace, p.Name, err))
				mu.Unlock()
				return
			}
			c.event(j, cause, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// release removes the batch.kubernetes.io/job-tracking finalizer from finished pods (pods
// created before counting went by the log carry it).
func (c *Controller) release(ctx context.Context, j *batchv1.Job, pods []*corev1.Pod, cause uint64) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, p := range pods {
		if !hasTracking(p) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.w.Modify(ctx, c.pods, p.Namespace, p.Name, c.request(cause), registry.UpdateOptions{},
				func(cur runtime.Object) (runtime.Object, error) {
					m, ok := cur.(metav1.Object)
					if !ok || m.GetUID() != p.UID || !slices.Contains(m.GetFinalizers(), batchv1.JobTrackingFinalizer) {
						return nil, errSkip
					}
					m.SetFinalizers(slices.DeleteFunc(slices.Clone(m.GetFinalizers()), func(f string) bool { return f == batchv1.JobTrackingFinalizer }))
					return cur, nil
				})
			if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
				return
			}
			mu.Lock()
			errs = append(errs, fmt.Errorf("job: removing the tracking finalizer of pod %s/%s: %w", p.Namespace, p.Name, err))
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// updateStatus writes the status computed from the revision read (409 if the Job changed
// since: the reconcile runs again on the new one), with the position of the log its counters
// count through.
func (c *Controller) updateStatus(ctx context.Context, j *batchv1.Job, st batchv1.JobStatus, pos uint64, counted bool, cause uint64) error {
	mark := countedThrough(j)
	if !counted && apiequality.Semantic.DeepEqual(j.Status, st) {
		return nil // nothing new to count, nothing changed: the mark can stay
	}
	if pos > mark {
		mark = pos
	}
	_, err := c.w.Modify(ctx, c.jobs, j.Namespace, j.Name, c.request(cause), registry.UpdateOptions{Subresource: "status"},
		func(cur runtime.Object) (runtime.Object, error) {
			cj, ok := cur.(*batchv1.Job)
			if !ok || cj.UID != j.UID {
				return nil, errSkip
			}
			cj.Status = st
			cj.ResourceVersion = j.ResourceVersion
			if cj.Annotations == nil {
				cj.Annotations = map[string]string{}
			}
			cj.Annotations[CountedThroughAnnotation] = strconv.FormatUint(mark, 10)
			return cj, nil
		})
	if err == nil {
		c.journal.wrote(j.UID, c.now(), st.StartTime != nil)
	}
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("job: updating the status of %s/%s: %w", j.Namespace, j.Name, err)
}

// ttl deletes a finished Job whose ttlSecondsAfterFinished has passed (in the foreground, as
// Kubernetes' TTL-after-finished controller), or asks to look again then.
func (c *Controller) ttl(ctx context.Context, j *batchv1.Job, now time.Time, cause uint64) (engine.Result, error) {
	if j.Spec.TTLSecondsAfterFinished == nil || j.DeletionTimestamp != nil {
		return engine.Result{}, nil
	}
	var finishedAt time.Time
	for _, cd := range j.Status.Conditions {
		if (cd.Type == batchv1.JobComplete || cd.Type == batchv1.JobFailed) && cd.Status == corev1.ConditionTrue {
			finishedAt = cd.LastTransitionTime.Time
		}
	}
	if finishedAt.IsZero() {
		return engine.Result{}, nil
	}
	if left := finishedAt.Add(time.Duration(*j.Spec.TTLSecondsAfterFinished) * time.Second).Sub(now); left > 0 {
		return engine.Result{RequeueAfter: left}, nil
	}
	uid := j.UID
	_, _, err := c.w.Delete(ctx, c.jobs, j.Namespace, j.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}, c.request(cause))
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return engine.Result{}, fmt.Errorf("job: deleting finished job %s/%s: %w", j.Namespace, j.Name, err)
	}
	return engine.Result{}, nil
}

func (c *Controller) event(j *batchv1.Job, cause uint64, typ, reason, format string, args ...any) {
	obj, ok := c.ix.Object(eventlog.Key{Group: jobsResource.Group, Resource: jobsResource.Resource, Namespace: j.Namespace, Name: j.Name})
	if !ok {
		return
	}
	c.events.Eventf(obj, cause, typ, reason, format, args...)
}
