package job

import (
	"fmt"
	"math"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// perIndex reports whether an Indexed Job counts failures per index (backoffLimitPerIndex).
func perIndex(j *batchv1.Job) bool {
	return isIndexed(j) && j.Spec.BackoffLimitPerIndex != nil
}

// perIndex sorts out the failures of a Job with backoffLimitPerIndex, as Kubernetes'
// calculateFailedIndexes and getPodsWithDelayedDeletionPerIndex: an index fails when a pod of
// it fails by a FailIndex rule or after backoffLimitPerIndex counted failures before it; for
// each index still pending, the latest failed pod is the one its replacement carries the
// index's failure count on from (its annotation). Unlike Kubernetes, which keeps that pod
// uncounted, with its finalizer, until the replacement exists, every failed pod counts in
// status.failed once it finished.
func (st *state) perIndex(j *batchv1.Job, done indexes, completions int) {
	st.failedIndexes = parseIndexes(ptr.Deref(j.Status.FailedIndexes, ""), completions)
	limit := *j.Spec.BackoffLimitPerIndex
	for _, p := range st.failed {
		i := indexOf(p)
		if i == unknownIndex || i >= completions {
			continue
		}
		_, action, counts := matchPodFailurePolicy(j.Spec.PodFailurePolicy, p)
		if action != nil && *action == batchv1.PodFailurePolicyActionFailIndex || counts && indexFailureCount(p) >= limit {
			st.failedIndexes[i] = true
		}
	}
	running := indexes{}
	for _, p := range st.active {
		running[indexOf(p)] = true
	}
	st.delayed = map[int]*corev1.Pod{}
	for _, p := range st.failed {
		i := indexOf(p)
		if i == unknownIndex || i >= completions || done[i] || st.failedIndexes[i] || running[i] {
			continue
		}
		if last, ok := st.delayed[i]; !ok || absoluteFailureCount(last) <= absoluteFailureCount(p) && !finishTime(p).Before(finishTime(last)) {
			st.delayed[i] = p
		}
	}
}

// newIndexFailureCounts are the failure counts of the pod replacing a failed one of its index
// (Kubernetes' getNewIndexFailureCounts): one more counted failure, or one more ignored.
func newIndexFailureCounts(j *batchv1.Job, replaces *corev1.Pod) (failures, ignored int32) {
	if replaces == nil {
		return 0, 0
	}
	failures, ignored = indexFailureCount(replaces), annotationCount(replaces, batchv1.JobIndexIgnoredFailureCountAnnotation)
	if _, _, counts := matchPodFailurePolicy(j.Spec.PodFailurePolicy, replaces); counts {
		failures++
	} else {
		ignored++
	}
	return failures, ignored
}

// indexBackOff is how long an index waits before its replacement pod, after the failures its
// last failed pod carries (Kubernetes' getRemainingTimePerIndex).
func (c *Controller) indexBackOff(last *corev1.Pod, now time.Time) time.Duration {
	if last == nil {
		return 0
	}
	return max(finishTime(last).Add(c.backOff(int(absoluteFailureCount(last))+1)).Sub(now), 0)
}

func indexFailureCount(p *corev1.Pod) int32 {
	return annotationCount(p, batchv1.JobIndexFailureCountAnnotation)
}

func absoluteFailureCount(p *corev1.Pod) int32 {
	return indexFailureCount(p) + annotationCount(p, batchv1.JobIndexIgnoredFailureCountAnnotation)
}

// annotationCount reads a failure-count annotation; a missing, unreadable, negative or too
// large value (a user may write anything there) counts as 0, as in Kubernetes.
func annotationCount(p *corev1.Pod, name string) int32 {
	n, err := strconv.Atoi(p.Annotations[name])
	if err != nil || n < 0 || n > math.MaxInt32 {
		return 0
	}
	return int32(n)
}

// matchSuccessPolicy is Kubernetes' matchSuccessPolicy: the message of the first rule of an
// Indexed Job's successPolicy that the succeeded indexes satisfy, or "".
func matchSuccessPolicy(policy *batchv1.SuccessPolicy, completions int, succeeded indexes) string {
	if policy == nil || len(succeeded) == 0 {
		return ""
	}
	for n, rule := range policy.Rules {
		if rule.SucceededIndexes != nil {
			required := parseIndexes(*rule.SucceededIndexes, completions)
			if len(required) == 0 {
				continue
			}
			contains := 0
			for i := range required {
				if succeeded[i] {
					contains++
				}
			}
			if contains == len(required) || rule.SucceededCount != nil && contains >= int(*rule.SucceededCount) {
				return fmt.Sprintf("Matched rules at index %d", n)
			}
		} else if rule.SucceededCount != nil && len(succeeded) >= int(*rule.SucceededCount) {
			return fmt.Sprintf("Matched rules at index %d", n)
		}
	}
	return ""
}

// union is a new set holding both.
func union(a, b indexes) indexes {
	out := make(indexes, len(a)+len(b))
	for i := range a {
		out[i] = true
	}
	for i := range b {
		out[i] = true
	}
	return out
}
