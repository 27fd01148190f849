package job_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// byIndex makes a container's fate depend on its JOB_COMPLETION_INDEX: fate(index) gives the
// exit code, or -1 to run until stopped.
func byIndex(fate func(index string) int32) func(runtimeapi.ContainerConfig) (time.Duration, int32, bool) {
	return func(cc runtimeapi.ContainerConfig) (time.Duration, int32, bool) {
		for _, e := range cc.Env {
			if v, ok := strings.CutPrefix(e, "JOB_COMPLETION_INDEX="); ok {
				if code := fate(v); code >= 0 {
					return 0, code, true
				}
			}
		}
		return 0, 0, false
	}
}

// backoffLimitPerIndex: index 0 fails every time and is retried once, after its own 10s
// back-off, by a pod that carries the index's failure count; index 1 fails by a FailIndex rule
// and is not retried; 2 and 3 succeed. The Job then fails with FailedIndexes, as Kubernetes.
func TestJobBackoffLimitPerIndex(t *testing.T) {
	fake := clocktesting.NewFakeClock(time.Now())
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1, Clock: fake, Reconcilers: withoutNodeLifecycle,
		NodeOptions: reconcilerstest.NodeOptions{Clock: fake, Exit: byIndex(func(i string) int32 {
			switch i {
			case "0":
				return 1
			case "1":
				return 42
			}
			return 0
		})}})
	w := watchPods(c, "perindex")
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: perindex
spec:
  completionMode: Indexed
  completions: 4
  parallelism: 4
  backoffLimitPerIndex: 1
  podFailurePolicy:
    rules:
    - action: FailIndex
      onExitCodes:
        operator: In
        values: [42]
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: any
`)
	c.Eventually(30*time.Second, func() (bool, string) {
		j := getJob(t, c, "perindex")
		return j.Status.FailedIndexes != nil && *j.Status.FailedIndexes == "1" && j.Status.CompletedIndexes == "2,3" &&
				len(c.Pods("default", "job-name=perindex,batch.kubernetes.io/job-completion-index=0")) == 1 &&
				c.Pods("default", "job-name=perindex,batch.kubernetes.io/job-completion-index=0")[0].Status.Phase == corev1.PodFailed,
			fmt.Sprintf("status %+v failed %v pods %v", j.Status, ptrString(j.Status.FailedIndexes), podSummary(c.Pods("default", "job-name=perindex")))
	})
	c.WaitReconciled()
	if created, _ := w.counts(); created != 4 {
		t.Fatalf("%d pods before index 0's back-off passed, want 4", created)
	}
	fake.Step(10 * time.Second)
	j := waitCondition(t, c, "perindex", batchv1.JobFailed, batchv1.JobReasonFailedIndexes)
	c.WaitReconciled()
	if *j.Status.FailedIndexes != "0,1" || j.Status.CompletedIndexes != "2,3" || j.Status.Failed != 3 || j.Status.Succeeded != 2 {
		t.Errorf("status %+v", j.Status)
	}
	if !hasCondition(j, batchv1.JobFailureTarget, batchv1.JobReasonFailedIndexes) {
		t.Errorf("conditions %+v", j.Status.Conditions)
	}
	counts := map[string][]string{}
	for _, p := range c.Pods("default", "job-name=perindex") {
		i := p.Annotations[batchv1.JobCompletionIndexAnnotation]
		counts[i] = append(counts[i], p.Annotations[batchv1.JobIndexFailureCountAnnotation])
	}
	if created, _ := w.counts(); created != 5 || len(counts["0"]) != 2 || len(counts["1"]) != 1 ||
		!(counts["0"][0] == "0" && counts["0"][1] == "1" || counts["0"][0] == "1" && counts["0"][1] == "0") {
		t.Errorf("%d pods; failure counts by index %v, want index 0 twice (0 then 1) and index 1 once", created, counts)
	}
}

// maxFailedIndexes: one failed index beyond a limit of 0 fails the Job at once; its running
// pods are stopped, and the Job is Failed once they have terminated.
func TestJobMaxFailedIndexes(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1, NodeOptions: reconcilerstest.NodeOptions{Exit: byIndex(func(i string) int32 {
		if i == "1" {
			return 1
		}
		return -1
	})}})
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: maxfailed
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  backoffLimitPerIndex: 0
  maxFailedIndexes: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: any
`)
	j := waitCondition(t, c, "maxfailed", batchv1.JobFailed, batchv1.JobReasonMaxFailedIndexesExceeded)
	// The indexes stopped by the failure count as failed too (Kubernetes' calculateFailedIndexes
	// takes every failed pod, and a deleted one is failed).
	if *j.Status.FailedIndexes != "0-2" || j.Status.Active != 0 || *j.Status.Terminating != 0 || j.Status.Failed != 3 {
		t.Errorf("status %+v failed %q terminating %d", j.Status, *j.Status.FailedIndexes, *j.Status.Terminating)
	}
	for _, p := range c.Pods("default", "job-name=maxfailed") {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodFailed {
			t.Errorf("pod %s still %s", p.Name, p.Status.Phase)
		}
	}
}

// successPolicy: index 0 succeeding is enough; the other indexes' pods are stopped, and the
// Job completes with reason SuccessPolicy and Kubernetes' message.
func TestJobSuccessPolicy(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1, NodeOptions: reconcilerstest.NodeOptions{Exit: byIndex(func(i string) int32 {
		if i == "0" {
			return 0
		}
		return -1
	})}})
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: leader
spec:
  completionMode: Indexed
  completions: 4
  parallelism: 4
  successPolicy:
    rules:
    - succeededIndexes: "0"
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: any
`)
	j := waitCondition(t, c, "leader", batchv1.JobComplete, batchv1.JobReasonSuccessPolicy)
	for _, cd := range j.Status.Conditions {
		if (cd.Type == batchv1.JobComplete || cd.Type == batchv1.JobSuccessCriteriaMet) && cd.Message != "Matched rules at index 0" {
			t.Errorf("condition %s: message %q", cd.Type, cd.Message)
		}
	}
	if !hasCondition(j, batchv1.JobSuccessCriteriaMet, batchv1.JobReasonSuccessPolicy) || j.Status.CompletedIndexes != "0" || j.Status.Succeeded != 1 || j.Status.Active != 0 {
		t.Errorf("status %+v", j.Status)
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		live := 0
		for _, p := range c.Pods("default", "job-name=leader") {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				live++
			}
		}
		return live == 0, fmt.Sprintf("%d pods still running", live)
	})
}

// podReplacementPolicy Failed: a deleted pod is replaced only once it has reached a terminal
// phase (the node agent gives a pod stopped for its deletion one, as the kubelet), never while
// it is still terminating; stopped by its deletion, it counts as failed.
func TestJobPodReplacementPolicyFailed(t *testing.T) {
	c := start(t, nil)
	var mu sync.Mutex
	var order []string // "terminal <pod>" and "created <pod>", in log order
	c.Store.Subscribe(func(ch projections.Change) {
		if ch.New == nil || ch.New.Key.Resource != "pods" || ch.New.Labels["job-name"] != "replace" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ch.Old == nil {
			order = append(order, "created "+ch.New.Key.Name)
		}
		terminal := func(o *projections.Object) bool {
			ph := o.Fields["status.phase"]
			return ph == string(corev1.PodFailed) || ph == string(corev1.PodSucceeded)
		}
		if terminal(ch.New) && (ch.Old == nil || !terminal(ch.Old)) {
			order = append(order, "terminal "+ch.New.Key.Name)
		}
	})
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: replace
spec:
  podReplacementPolicy: Failed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: any
`)
	var first string
	c.Eventually(30*time.Second, func() (bool, string) {
		pods := c.Pods("default", "job-name=replace")
		if len(pods) == 1 && pods[0].Status.Phase == corev1.PodRunning {
			first = pods[0].Name
		}
		return first != "", fmt.Sprintf("pods %d", len(pods))
	})
	c.MustKubectl("delete", "pod", first, "--wait=false")
	c.Eventually(30*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		var b strings.Builder
		for _, p := range c.Pods("default", "job-name=replace") {
			fmt.Fprintf(&b, "\n%s phase=%s deleting=%v finalizers=%v statuses=%+v", p.Name, p.Status.Phase, p.DeletionTimestamp, p.Finalizers, p.Status.ContainerStatuses)
		}
		return len(order) >= 3, fmt.Sprint(order, b.String())
	})
	mu.Lock()
	defer mu.Unlock()
	if order[0] != "created "+first || order[1] != "terminal "+first || !strings.HasPrefix(order[2], "created ") {
		t.Errorf("log order %v: want the first pod created, then terminal, then its replacement", order)
	}
	// The replacement shows in active once the status write that only moves numbers has waited
	// its batch period.
	c.Eventually(30*time.Second, func() (bool, string) {
		j := getJob(t, c, "replace")
		return j.Status.Active == 1 && j.Status.Failed == 1 && j.Status.Terminating != nil, fmt.Sprintf("status %+v", j.Status)
	})
}

func ptrString(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func podSummary(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "\n%s index=%s phase=%s deleting=%v finalizers=%v annotations=%v", p.Name, p.Labels[batchv1.JobCompletionIndexAnnotation], p.Status.Phase, p.DeletionTimestamp != nil, p.Finalizers, p.Annotations)
	}
	return b.String()
}
