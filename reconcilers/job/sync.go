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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
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

// state is what one reconcile finds: the Job's pods, sorted out.
type state struct {
	active               []*corev1.Pod
	newSucc              []*corev1.Pod // finished, tracked, not yet in uncountedTerminatedPods
	newFail              []*corev1.Pod // idem, counting towards the backoffLimit
	ignored              []*corev1.Pod // failed, ignored by the pod failure policy
	release              []*corev1.Pod // tracked pods whose uid the status already holds, or of a finished Job
	failMessage          string        // of a FailJob rule matched
	lastFailure          time.Time     // finish time of the latest failure after the latest success
	failuresAfterSuccess int
	// Finished pods beyond maxUncounted, left for the next reconcile: they count in what this
	// one decides (no pod is created for them), not yet in the status.
	laterSucc, laterFail int
	laterIndexes         indexes
	// Pods being deleted that have not reached a terminal phase (status.terminating); with
	// podReplacementPolicy Failed they are neither active nor finished, and not replaced yet.
	terminating, notReplaced []*corev1.Pod
	// With backoffLimitPerIndex (perIndex): the failed indexes, those of the status and new
	// ones; and per pending index, the failed pod that its replacement takes its failure count
	// from: it stays uncounted, with its finalizer, until the replacement exists.
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
	pods := c.podsOf(j)
	finished := isTrue(j, batchv1.JobComplete) || isTrue(j, batchv1.JobFailed)
	if finished {
		// Release what is left, and delete the Job once its time to live has passed.
		if err := c.removeFinalizers(ctx, j, pods, req.Cause); err != nil {
			return engine.Result{}, err
		}
		return c.ttl(ctx, j, now, req.Cause)
	}
	if j.DeletionTimestamp != nil {
		return engine.Result{}, c.removeFinalizers(ctx, j, pods, req.Cause)
	}

	st := c.sort(j, pods)
	status := *j.Status.DeepCopy()
	uncounted := status.UncountedTerminatedPods
	if uncounted == nil {
		uncounted = &batchv1.UncountedTerminatedPods{}
	}
	// Uids the status holds whose pods no longer carry the finalizer (or are gone) are counted.
	tracked := map[types.UID]bool{}
	for _, p := range pods {
		if hasTracking(p) {
			tracked[p.UID] = true
		}
	}
	var keepSucc, keepFail []types.UID
	for _, u := range uncounted.Succeeded {
		if tracked[u] {
			keepSucc = append(keepSucc, u)
		} else if !isIndexed(j) {
			status.Succeeded++
		}
	}
	for _, u := range uncounted.Failed {
		if tracked[u] {
			keepFail = append(keepFail, u)
		} else {
			status.Failed++
		}
	}
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
	}
	// Newly finished pods enter uncountedTerminatedPods (and, for an Indexed Job, their index
	// enters completedIndexes) in this write; their finalizers go after it.
	for _, p := range st.newSucc {
		keepSucc = append(keepSucc, p.UID)
	}
	for _, p := range st.newFail {
		keepFail = append(keepFail, p.UID)
	}
	uncounted.Succeeded, uncounted.Failed = keepSucc, keepFail
	if isIndexed(j) {
		status.CompletedIndexes = done.String()
		status.Succeeded = int32(len(done))
	}
	succeeded := int(status.Succeeded)
	if !isIndexed(j) {
		succeeded += len(keepSucc) + st.laterSucc
	} else {
		for i := range st.laterIndexes {
			if i < completions && !done[i] {
				succeeded++
			}
		}
	}
	failed := int(status.Failed) + len(keepFail) + st.laterFail
	later := st.laterSucc + st.laterFail

	suspended := j.Spec.Suspend != nil && *j.Spec.Suspend
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
		succeededIndexes := done
		if isIndexed(j) && len(st.laterIndexes) > 0 {
			succeededIndexes = union(done, st.laterIndexes)
		}
		var policyMsg string
		if isIndexed(j) {
			policyMsg = matchSuccessPolicy(j.Spec.SuccessPolicy, completions, succeededIndexes)
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
		// A finishing Job counts the failures it held back for replacements that will not come.
		for _, p := range st.delayed {
			if _, _, counts := matchPodFailurePolicy(j.Spec.PodFailurePolicy, p); counts {
				st.newFail = append(st.newFail, p)
				keepFail = append(keepFail, p.UID)
			} else {
				st.ignored = append(st.ignored, p)
			}
		}
		uncounted.Failed, st.delayed = keepFail, nil
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
			status.StartTime = ptr.To(metav1.NewTime(now))
		}
		if c.exp.Satisfied(key) {
			var wait time.Duration
			finishedIndexes := done
			if len(st.laterIndexes) > 0 {
				finishedIndexes = union(done, st.laterIndexes)
			}
			st.active, wait, manageErr = c.manage(ctx, key, j, st, finishedIndexes, succeeded, now, c.specCause(key, req))
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
	if len(keepSucc) == 0 && len(keepFail) == 0 {
		status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	} else {
		status.UncountedTerminatedPods = uncounted
	}
	// The final condition, once every finished pod is counted and none is left running or
	// terminating.
	if len(keepSucc) == 0 && len(keepFail) == 0 && later == 0 && len(st.active) == 0 && len(st.terminating) == 0 && len(st.notReplaced) == 0 {
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
	if err := c.updateStatus(ctx, j, status, req.Cause); err != nil {
		return engine.Result{}, errors.Join(manageErr, err)
	}
	// Only once the status holds their uids do the finished pods lose their finalizers.
	release := slices.Concat(st.release, st.newSucc, st.newFail, st.ignored)
	if err := c.release(ctx, j, release, req.Cause); err != nil {
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

// sort sorts the Job's pods out: active ones, finished ones not counted yet (with what the pod
// failure policy says of the failed), tracked ones already counted.
func (c *Controller) sort(j *batchv1.Job, pods []*corev1.Pod) state {
	var st state
	inStatus := map[types.UID]bool{}
	if u := j.Status.UncountedTerminatedPods; u != nil {
		for _, x := range slices.Concat(u.Succeeded, u.Failed) {
			inStatus[x] = true
		}
	}
	var lastSuccess time.Time
	var failures []time.Time
	for _, p := range pods {
		if isTerminating(p) {
			st.terminating = append(st.terminating, p)
		}
		switch {
		case !isFinished(p, j) && p.DeletionTimestamp != nil:
			st.notReplaced = append(st.notReplaced, p)
			continue
		case !isFinished(p, j):
			st.active = append(st.active, p)
			continue
		case !hasTracking(p):
			// Counted already.
		case inStatus[p.UID]:
			st.release = append(st.release, p)
		case isSucceeded(p):
			st.newSucc = append(st.newSucc, p)
		default:
			msg, action, counts := matchPodFailurePolicy(j.Spec.PodFailurePolicy, p)
			if action != nil && *action == batchv1.PodFailurePolicyActionFailJob && st.failMessage == "" {
				st.failMessage = msg
			}
			if counts {
				st.newFail = append(st.newFail, p)
			} else {
				st.ignored = append(st.ignored, p)
			}
		}
		// The back-off follows the failures since the latest success, among the pods there.
		if isSucceeded(p) {
			if t := finishTime(p); t.After(lastSuccess) {
				lastSuccess = t
			}
		} else if _, action, counts := matchPodFailurePolicy(j.Spec.PodFailurePolicy, p); counts || action == nil {
			failures = append(failures, finishTime(p))
		}
	}
	for _, t := range failures {
		if t.After(lastSuccess) {
			st.failuresAfterSuccess++
			if t.After(st.lastFailure) {
				st.lastFailure = t
			}
		}
	}
	// At most MaxUncounted new uids per write, as Kubernetes' MaxUncountedPods, so that the
	// status stays small; the rest wait for the next reconcile (the finalizer removals of these
	// queue it).
	if extra := len(st.newSucc) + len(st.newFail) - c.cfg.MaxUncounted; extra > 0 {
		st.laterIndexes = indexes{}
		cut := min(extra, len(st.newFail))
		st.laterFail = cut
		st.newFail = st.newFail[:len(st.newFail)-cut]
		if rest := extra - cut; rest > 0 {
			for _, p := range st.newSucc[len(st.newSucc)-rest:] {
				if i := indexOf(p); i != unknownIndex {
					st.laterIndexes[i] = true
				}
			}
			st.laterSucc = rest
			st.newSucc = st.newSucc[:len(st.newSucc)-rest]
		}
	}
	return st
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

// podFromTemplate is the pod a Job creates: its template, with the Job as controller, the
// tracking finalizer and, for an Indexed Job, the completion index (and, with
// backoffLimitPerIndex, the index's failure counts, from the failed pod it replaces, if any).
func podFromTemplate(j *batchv1.Job, index int, replaces *corev1.Pod) *corev1.Pod {
	t := j.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    j.Namespace,
			GenerateName: j.Name + "-",
			Labels:       t.Labels,
			Annotations:  t.Annotations,
			Finalizers:   append(t.Finalizers, batchv1.JobTrackingFinalizer),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: j.Name, UID: j.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
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

// release removes the tracking finalizer from pods the Job's status has counted (or holds in
// uncountedTerminatedPods).
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

// removeFinalizers releases every pod of a finished or deleted Job.
func (c *Controller) removeFinalizers(ctx context.Context, j *batchv1.Job, pods []*corev1.Pod, cause uint64) error {
	return c.release(ctx, j, pods, cause)
}

// updateStatus writes the status computed from the revision read (409 if the Job changed
// since: the reconcile runs again on the new one).
func (c *Controller) updateStatus(ctx context.Context, j *batchv1.Job, st batchv1.JobStatus, cause uint64) error {
	if apiequality.Semantic.DeepEqual(j.Status, st) {
		return nil
	}
	_, err := c.w.Modify(ctx, c.jobs, j.Namespace, j.Name, c.request(cause), registry.UpdateOptions{Subresource: "status"},
		func(cur runtime.Object) (runtime.Object, error) {
			cj, ok := cur.(*batchv1.Job)
			if !ok || cj.UID != j.UID {
				return nil, errSkip
			}
			cj.Status = st
			cj.ResourceVersion = j.ResourceVersion
			return cj, nil
		})
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
