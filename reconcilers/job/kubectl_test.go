package job_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/garbagecollector"
	"github.com/logplane/logplane/reconcilers/job"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/scheduler"
	"github.com/logplane/logplane/reconcilers/sets"
)

// exits is how the simulated containers behave, by image: "exit-N" exits at once with code N,
// "done" exits 0 after 200ms, anything else runs until stopped.
func exits(cc runtimeapi.ContainerConfig) (time.Duration, int32, bool) {
	var code int32
	if _, err := fmt.Sscanf(cc.Image, "exit-%d", &code); err == nil {
		return 0, code, true
	}
	if cc.Image == "done" {
		return 200 * time.Millisecond, 0, true
	}
	return 0, 0, false
}

// start runs a cluster with one simulated node whose containers behave as exits says; with
// fake, the reconcilers and the node's containers follow that clock.
func start(t *testing.T, fake *clocktesting.FakeClock) *reconcilerstest.Cluster {
	opts := reconcilerstest.Options{Nodes: 1, NodeOptions: reconcilerstest.NodeOptions{Exit: exits}}
	if fake != nil {
		opts.Clock = fake
		opts.NodeOptions.Clock = fake
		opts.Reconcilers = withoutNodeLifecycle
	}
	return reconcilerstest.Start(t, opts)
}

// withoutNodeLifecycle runs the reconcilers a Job needs, leaving node lifecycle out: the nodes
// renew their leases in real time, and a stepped clock would find them gone.
func withoutNodeLifecycle(o *sets.Options) {
	o.Only = []string{job.Name, garbagecollector.Name, scheduler.Name}
}

func getJob(t *testing.T, c *reconcilerstest.Cluster, name string) *batchv1.Job {
	t.Helper()
	j, err := c.Client.BatchV1().Jobs("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func hasCondition(j *batchv1.Job, t batchv1.JobConditionType, reason string) bool {
	for _, cd := range j.Status.Conditions {
		if cd.Type == t && cd.Status == corev1.ConditionTrue && (reason == "" || cd.Reason == reason) {
			return true
		}
	}
	return false
}

func waitCondition(t *testing.T, c *reconcilerstest.Cluster, name string, ct batchv1.JobConditionType, reason string) *batchv1.Job {
	t.Helper()
	var j *batchv1.Job
	c.Eventually(60*time.Second, func() (bool, string) {
		j = getJob(t, c, name)
		return hasCondition(j, ct, reason), fmt.Sprintf("job %s: status %+v", name, j.Status)
	})
	return j
}

// podWatch counts, from the log, the pods of a Job: created, and the most active at once.
type podWatch struct {
	mu        sync.Mutex
	active    map[string]bool
	created   map[string]bool
	maxActive int
}

func watchPods(c *reconcilerstest.Cluster, job string) *podWatch {
	w := &podWatch{active: map[string]bool{}, created: map[string]bool{}}
	cancel := c.Store.Subscribe(func(ch projections.Change) {
		o := ch.New
		if o == nil {
			o = ch.Old
		}
		if o == nil || o.Key.Resource != "pods" || o.Labels["job-name"] != job {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.created[o.Key.Name] = true
		phase := ""
		if ch.New != nil {
			phase = ch.New.Fields["status.phase"]
		}
		if ch.New == nil || phase == string(corev1.PodSucceeded) || phase == string(corev1.PodFailed) {
			delete(w.active, o.Key.Name)
		} else {
			w.active[o.Key.Name] = true
		}
		w.maxActive = max(w.maxActive, len(w.active))
	})
	c.Logger.Debug("watching pods", "job", job)
	_ = cancel // the store goes with the cluster
	return w
}

func (w *podWatch) counts() (created, maxActive int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.created), w.maxActive
}

// A Job of 6 completions with parallelism 2 runs exactly 6 pods, never more than 2 at once,
// and kubectl shows it as Kubernetes does.
func TestJobCompletionsAndParallelism(t *testing.T) {
	c := start(t, nil)
	w := watchPods(c, "work")
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: work
spec:
  completions: 6
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: done
`)
	j := waitCondition(t, c, "work", batchv1.JobComplete, batchv1.JobReasonCompletionsReached)
	c.WaitReconciled()
	if !hasCondition(j, batchv1.JobSuccessCriteriaMet, batchv1.JobReasonCompletionsReached) {
		t.Errorf("no SuccessCriteriaMet condition: %+v", j.Status.Conditions)
	}
	if j.Status.Succeeded != 6 || j.Status.Failed != 0 || j.Status.Active != 0 || j.Status.StartTime == nil || j.Status.CompletionTime == nil {
		t.Errorf("status %+v", j.Status)
	}
	if created, most := w.counts(); created != 6 || most > 2 {
		t.Errorf("%d pods created (want 6), at most %d active at once (want ≤ 2)", created, most)
	}
	for _, p := range c.Pods("default", "job-name=work") {
		if p.Labels[batchv1.JobNameLabel] != "work" || p.Labels[batchv1.ControllerUidLabel] != string(j.UID) || p.Labels["controller-uid"] != string(j.UID) {
			t.Errorf("pod %s labels %v", p.Name, p.Labels)
		}
		if slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer) {
			t.Errorf("pod %s still has the tracking finalizer", p.Name)
		}
		if !strings.HasPrefix(p.Name, "work-") || p.Status.Phase != corev1.PodSucceeded {
			t.Errorf("pod %s phase %s", p.Name, p.Status.Phase)
		}
	}
	out := c.MustKubectl("get", "jobs")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME STATUS COMPLETIONS DURATION AGE" {
		t.Fatalf("kubectl get jobs:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != "work" || f[1] != "Complete" || f[2] != "6/6" {
		t.Errorf("kubectl get jobs:\n%s", out)
	}
	// A deleted finished pod does not make the Job run another: it was counted once.
	c.MustKubectl("delete", "pod", c.Pods("default", "job-name=work")[0].Name)
	c.WaitReconciled()
	if j := getJob(t, c, "work"); j.Status.Succeeded != 6 {
		t.Errorf("after deleting a pod: succeeded %d", j.Status.Succeeded)
	}
	if created, _ := w.counts(); created != 6 {
		t.Errorf("%d pods created after deleting a finished one", created)
	}
}

// kubectl create job runs one pod to completion: 1/1.
func TestKubectlCreateJob(t *testing.T) {
	c := start(t, nil)
	c.MustKubectl("create", "job", "hello", "--image=done")
	waitCondition(t, c, "hello", batchv1.JobComplete, "")
	out := c.MustKubectl("get", "job", "hello", "--no-headers")
	if f := strings.Fields(out); len(f) != 5 || f[1] != "Complete" || f[2] != "1/1" {
		t.Errorf("kubectl get job hello: %s", out)
	}
}

// Failures back off exponentially on the engine's clock (10s, then 20s), and the Job fails
// with BackoffLimitExceeded after backoffLimit+1 failures: exactly 3 pods for a limit of 2.
func TestJobBackoffLimit(t *testing.T) {
	fake := clocktesting.NewFakeClock(time.Now())
	c := start(t, fake)
	w := watchPods(c, "fails")
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: fails
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: fail
        image: exit-1
`)
	waitFailed := func(n int32) {
		t.Helper()
		c.Eventually(30*time.Second, func() (bool, string) {
			j := getJob(t, c, "fails")
			return j.Status.Failed == n && len(j.Status.UncountedTerminatedPods.Failed) == 0, fmt.Sprintf("status %+v", j.Status)
		})
		c.WaitReconciled()
	}
	waitFailed(1)
	if created, _ := w.counts(); created != 1 {
		t.Fatalf("%d pods before the back-off passed, want 1", created)
	}
	fake.Step(9 * time.Second)
	c.WaitReconciled()
	if created, _ := w.counts(); created != 1 {
		t.Fatalf("%d pods 9s into a 10s back-off, want 1", created)
	}
	fake.Step(time.Second)
	waitFailed(2)
	fake.Step(19 * time.Second)
	c.WaitReconciled()
	if created, _ := w.counts(); created != 2 {
		t.Fatalf("%d pods 19s into the second (20s) back-off, want 2", created)
	}
	fake.Step(time.Second)
	j := waitCondition(t, c, "fails", batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded)
	c.WaitReconciled()
	if !hasCondition(j, batchv1.JobFailureTarget, batchv1.JobReasonBackoffLimitExceeded) || j.Status.Failed != 3 || j.Status.Succeeded != 0 {
		t.Errorf("status %+v", j.Status)
	}
	if created, _ := w.counts(); created != 3 {
		t.Errorf("%d pods, want 3", created)
	}
	out := c.MustKubectl("get", "job", "fails", "--no-headers")
	if f := strings.Fields(out); f[1] != "Failed" || f[2] != "0/1" {
		t.Errorf("kubectl get job: %s", out)
	}
}

// activeDeadlineSeconds fails the Job with DeadlineExceeded and stops its running pods.
func TestJobActiveDeadline(t *testing.T) {
	fake := clocktesting.NewFakeClock(time.Now())
	c := start(t, fake)
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: slow
spec:
  activeDeadlineSeconds: 30
  parallelism: 2
  completions: 4
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: forever
`)
	c.Eventually(30*time.Second, func() (bool, string) {
		n := 0
		for _, p := range c.Pods("default", "job-name=slow") {
			if podReady(p) {
				n++
			}
		}
		return n == 2, fmt.Sprintf("%d pods ready", n)
	})
	c.WaitReconciled()
	// A status write that only moves numbers waits for its batch period, on the engine's clock.
	fake.Step(job.ActivityBatchPeriod)
	c.Eventually(30*time.Second, func() (bool, string) {
		j := getJob(t, c, "slow")
		return j.Status.Active == 2 && j.Status.Ready != nil && *j.Status.Ready == 2, fmt.Sprintf("status %+v", j.Status)
	})
	c.WaitReconciled()
	fake.Step(29*time.Second - job.ActivityBatchPeriod)
	c.WaitReconciled()
	if j := getJob(t, c, "slow"); hasCondition(j, batchv1.JobFailureTarget, "") || j.Status.Active != 2 {
		t.Fatalf("before the deadline: %+v", j.Status)
	}
	fake.Step(time.Second)
	j := waitCondition(t, c, "slow", batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded)
	if j.Status.Active != 0 || j.Status.Failed != 2 {
		t.Errorf("status %+v", j.Status)
	}
	for _, cd := range j.Status.Conditions {
		if cd.Type == batchv1.JobFailed && cd.Message != "Job was active longer than specified deadline" {
			t.Errorf("message %q", cd.Message)
		}
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		pods := c.Pods("default", "job-name=slow")
		return len(pods) == 0, fmt.Sprintf("%d pods left", len(pods))
	})
}

// An Indexed Job runs one pod per index, with the index in an annotation, a label, the
// environment (resolved by the node agent) and the hostname; completedIndexes lists them.
func TestJobIndexed(t *testing.T) {
	var mu sync.Mutex
	envs := map[string]string{}
	opts := reconcilerstest.Options{Nodes: 1, NodeOptions: reconcilerstest.NodeOptions{Exit: func(cc runtimeapi.ContainerConfig) (time.Duration, int32, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range cc.Env {
			if v, ok := strings.CutPrefix(e, "JOB_COMPLETION_INDEX="); ok {
				envs[v] = v
			}
		}
		return exits(cc)
	}}}
	c := reconcilerstest.Start(t, opts)
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: idx
spec:
  completionMode: Indexed
  completions: 4
  parallelism: 4
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: done
`)
	j := waitCondition(t, c, "idx", batchv1.JobComplete, "")
	if j.Status.CompletedIndexes != "0-3" || j.Status.Succeeded != 4 {
		t.Errorf("status %+v", j.Status)
	}
	pods := c.Pods("default", "job-name=idx")
	if len(pods) != 4 {
		t.Fatalf("%d pods", len(pods))
	}
	for _, p := range pods {
		i := p.Annotations[batchv1.JobCompletionIndexAnnotation]
		if p.Labels[batchv1.JobCompletionIndexAnnotation] != i || !strings.HasPrefix(p.Name, "idx-"+i+"-") || p.Spec.Hostname != "idx-"+i {
			t.Errorf("pod %s: index %q, labels %v, hostname %q", p.Name, i, p.Labels, p.Spec.Hostname)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range 4 {
		if _, ok := envs[fmt.Sprint(i)]; !ok || len(envs) != 4 {
			t.Errorf("the containers saw JOB_COMPLETION_INDEX %v, want 0 to 3", envs)
		}
	}
}

// podFailurePolicy: an exit code matched by Ignore does not count (the pod is replaced, with a
// backoffLimit of 0); one matched by FailJob fails the Job at once with Kubernetes' message.
func TestJobPodFailurePolicy(t *testing.T) {
	fake := clocktesting.NewFakeClock(time.Now())
	var mu sync.Mutex
	runs := 0
	opts := reconcilerstest.Options{Nodes: 1, Clock: fake, Reconcilers: withoutNodeLifecycle, NodeOptions: reconcilerstest.NodeOptions{Clock: fake,
		Exit: func(cc runtimeapi.ContainerConfig) (time.Duration, int32, bool) {
			mu.Lock()
			defer mu.Unlock()
			runs++
			if runs == 1 {
				return 0, 3, true // ignored
			}
			return 0, 42, true // fails the Job
		}}}
	c := reconcilerstest.Start(t, opts)
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: policy
spec:
  backoffLimit: 0
  podFailurePolicy:
    rules:
    - action: Ignore
      onExitCodes:
        operator: In
        values: [3]
    - action: FailJob
      onExitCodes:
        containerName: main
        operator: In
        values: [42]
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: any
`)
	j := waitCondition(t, c, "policy", batchv1.JobFailed, batchv1.JobReasonPodFailurePolicy)
	pods := c.Pods("default", "job-name=policy")
	if len(pods) != 2 || j.Status.Failed != 1 {
		t.Fatalf("%d pods, status %+v", len(pods), j.Status)
	}
	var failed string
	for _, p := range pods {
		if p.Status.ContainerStatuses[0].State.Terminated.ExitCode == 42 {
			failed = p.Name
		}
	}
	want := fmt.Sprintf("Container main for pod default/%s failed with exit code 42 matching FailJob rule at index 1", failed)
	for _, cd := range j.Status.Conditions {
		if cd.Type == batchv1.JobFailed && cd.Message != want {
			t.Errorf("message %q, want %q", cd.Message, want)
		}
	}
}

// A suspended Job runs nothing; resumed, it runs; suspended again, its pods are deleted.
func TestJobSuspendResume(t *testing.T) {
	c := start(t, nil)
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: later
spec:
  suspend: true
  parallelism: 2
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: forever
`)
	waitCondition(t, c, "later", batchv1.JobSuspended, "JobSuspended")
	c.WaitReconciled()
	if pods := c.Pods("default", "job-name=later"); len(pods) != 0 {
		t.Fatalf("a suspended Job has %d pods", len(pods))
	}
	out := c.MustKubectl("get", "job", "later", "--no-headers")
	if f := strings.Fields(out); f[1] != "Suspended" {
		t.Errorf("kubectl get job: %s", out)
	}
	c.MustKubectl("patch", "job", "later", "--type=merge", "-p", `{"spec":{"suspend":false}}`)
	c.Eventually(30*time.Second, func() (bool, string) {
		j := getJob(t, c, "later")
		return j.Status.Active == 2 && j.Status.StartTime != nil && !hasCondition(j, batchv1.JobSuspended, ""), fmt.Sprintf("status %+v", j.Status)
	})
	c.MustKubectl("patch", "job", "later", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
	waitCondition(t, c, "later", batchv1.JobSuspended, "JobSuspended")
	c.Eventually(30*time.Second, func() (bool, string) {
		pods := c.Pods("default", "job-name=later")
		return len(pods) == 0, fmt.Sprintf("%d pods left", len(pods))
	})
}

// ttlSecondsAfterFinished deletes a finished Job, and its pods, once it has passed on the
// engine's clock.
func TestJobTTLAfterFinished(t *testing.T) {
	fake := clocktesting.NewFakeClock(time.Now())
	c := start(t, fake)
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: brief
spec:
  ttlSecondsAfterFinished: 60
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: exit-0
`)
	waitCondition(t, c, "brief", batchv1.JobComplete, "")
	c.WaitReconciled()
	fake.Step(59 * time.Second)
	c.WaitReconciled()
	getJob(t, c, "brief")
	fake.Step(time.Second)
	c.Eventually(30*time.Second, func() (bool, string) {
		_, err := c.Client.BatchV1().Jobs("default").Get(context.Background(), "brief", metav1.GetOptions{})
		pods := c.Pods("default", "job-name=brief")
		return err != nil && len(pods) == 0, fmt.Sprintf("job: %v, %d pods", err, len(pods))
	})
}

// Restarting the reconciler (a new engine with a new index, as a new process) while a Job runs
// neither loses nor doubles a count: 30 completions, restarted three times, end at exactly 30
// succeeded, one per Succeeded pod.
func TestJobCountsExactAcrossRestarts(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1, NoReconcilers: true, NodeOptions: reconcilerstest.NodeOptions{Exit: exits}})
	run := func() (stop func()) { return runJobReconciler(t, c) }
	stop := run()
	defer func() { stop() }()
	w := watchPods(c, "many")
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: many
spec:
  completions: 30
  parallelism: 4
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: done
`)
	for _, at := range []int32{4, 12, 20} {
		c.Eventually(60*time.Second, func() (bool, string) {
			j := getJob(t, c, "many")
			return j.Status.Succeeded >= at, fmt.Sprintf("status %+v", j.Status)
		})
		stop()
		stop = run()
	}
	j := waitCondition(t, c, "many", batchv1.JobComplete, "")
	succeeded := 0
	for _, p := range c.Pods("default", "job-name=many") {
		if p.Status.Phase == corev1.PodSucceeded {
			succeeded++
		}
	}
	if j.Status.Succeeded != 30 || succeeded != 30 || j.Status.Failed != 0 {
		t.Errorf("status %+v; %d Succeeded pods", j.Status, succeeded)
	}
	// Expectations are per process: a restart during a creation may make a pod too many (then
	// deleted), never a success too many.
	created, most := w.counts()
	t.Logf("%d pods created, at most %d active at once", created, most)
}

// Pods that finish and are deleted while no Job reconciler runs are still counted, once: the
// reconciler that starts next reads their terminal transitions back from the log. Twice: the
// first time the Job has counted nothing yet (read back from its creation), the second time
// from the position its status counts through. Without the read-back, the 3 pods deleted each
// time would be run again (12 pods created, not 6).
func TestJobCountsPodsDeletedWhileDown(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1, NoReconcilers: true, NodeOptions: reconcilerstest.NodeOptions{Exit: exits}})
	ctx := context.Background()
	run := func() (stop func()) { return runJobReconciler(t, c) }
	w := watchPods(c, "gone")
	stop := run()
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: gone
spec:
  completions: 6
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: done
`)
	for round, want := range []int{3, 6} {
		c.Eventually(30*time.Second, func() (bool, string) {
			created, _ := w.counts()
			return created == want, fmt.Sprintf("%d pods created, want %d", created, want)
		})
		stop() // the pods run on (200ms) with no Job reconciler
		var names []string
		c.Eventually(30*time.Second, func() (bool, string) {
			names = names[:0]
			for _, p := range c.Pods("default", "job-name=gone") {
				if p.Status.Phase != corev1.PodSucceeded {
					return false, fmt.Sprintf("pod %s is %s", p.Name, p.Status.Phase)
				}
				names = append(names, p.Name)
			}
			return len(names) == 3, fmt.Sprintf("%d pods", len(names))
		})
		for _, n := range names {
			if err := c.Client.CoreV1().Pods("default").Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		c.Eventually(30*time.Second, func() (bool, string) {
			left := c.Pods("default", "job-name=gone")
			return len(left) == 0, fmt.Sprintf("round %d: %d pods left", round, len(left))
		})
		stop = run()
	}
	defer func() { stop() }()
	j := waitCondition(t, c, "gone", batchv1.JobComplete, "")
	if j.Status.Succeeded != 6 || j.Status.Failed != 0 || j.Status.Active != 0 {
		t.Errorf("status %+v", j.Status)
	}
	if created, _ := w.counts(); created != 6 {
		t.Errorf("%d pods created, want 6", created)
	}
}

func podReady(p corev1.Pod) bool {
	for _, cd := range p.Status.Conditions {
		if cd.Type == corev1.PodReady {
			return cd.Status == corev1.ConditionTrue
		}
	}
	return false
}

// A Job counted by the tracking-finalizer protocol of earlier versions (counters, uids in
// status.uncountedTerminatedPods, pods that keep the finalizer until counted; no mark) is taken
// over without a count lost or doubled: one pod counted already (no finalizer), one in flight
// (its uid in the status), one finished and not counted yet (finalizer) end at 3 succeeded,
// Complete, no pod created, and no finalizer left.
func TestJobCountedByFinalizersTakenOver(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1, NoReconcilers: true, NodeOptions: reconcilerstest.NodeOptions{Exit: exits}})
	ctx := context.Background()
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: old
spec:
  completions: 3
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: done
`)
	j := getJob(t, c, "old")
	w := watchPods(c, "old")
	var uids []types.UID
	for i, finalizer := range []bool{false, true, true} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("old-%d", i), Namespace: "default", Labels: j.Spec.Template.Labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: j.Name, UID: j.UID, Controller: ptr.To(true)}}},
			Spec: j.Spec.Template.Spec,
		}
		if finalizer {
			p.Finalizers = []string{batchv1.JobTrackingFinalizer}
		}
		out, err := c.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, out.UID)
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		n := 0
		for _, p := range c.Pods("default", "job-name=old") {
			if p.Status.Phase == corev1.PodSucceeded {
				n++
			}
		}
		return n == 3, fmt.Sprintf("%d pods succeeded", n)
	})
	j = getJob(t, c, "old")
	j.Status.Succeeded = 1
	j.Status.StartTime = &metav1.Time{Time: time.Now()}
	j.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Succeeded: []types.UID{uids[1]}}
	if _, err := c.Client.BatchV1().Jobs("default").UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer runJobReconciler(t, c)()
	j = waitCondition(t, c, "old", batchv1.JobComplete, "")
	if j.Status.Succeeded != 3 || j.Status.Failed != 0 || len(j.Status.UncountedTerminatedPods.Succeeded) != 0 {
		t.Errorf("status %+v", j.Status)
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		for _, p := range c.Pods("default", "job-name=old") {
			if len(p.Finalizers) > 0 {
				return false, fmt.Sprintf("pod %s keeps %v", p.Name, p.Finalizers)
			}
		}
		return true, ""
	})
	if created, _ := w.counts(); created != 3 {
		t.Errorf("%d pods, want the 3 there were", created)
	}
}

// A Job adopts an orphan pod its selector matches and releases a pod it controls that its
// selector no longer matches (Kubernetes' conformance "Job should adopt matching orphans and
// release non-matching pods").
func TestJobAdoptsAndReleases(t *testing.T) {
	c := start(t, nil)
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: claims
spec:
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: forever
`)
	var pods []corev1.Pod
	c.Eventually(30*time.Second, func() (bool, string) {
		pods = c.Pods("default", "job-name=claims")
		return len(pods) == 2, fmt.Sprintf("%d pods", len(pods))
	})
	j := getJob(t, c, "claims")
	controller := func(name string) string {
		p, err := c.Client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ref := metav1.GetControllerOf(p); ref != nil {
			return string(ref.UID)
		}
		return ""
	}
	orphan, other := pods[0].Name, pods[1].Name
	c.MustKubectl("patch", "pod", orphan, "--type=json", "-p", `[{"op":"remove","path":"/metadata/ownerReferences"}]`)
	c.Eventually(30*time.Second, func() (bool, string) {
		return controller(orphan) == string(j.UID), "the orphan is not adopted again"
	})
	c.MustKubectl("label", "pod", other, "--overwrite", batchv1.ControllerUidLabel+"=someone-else")
	c.Eventually(30*time.Second, func() (bool, string) {
		return controller(other) == "", "the pod its selector no longer matches is not released"
	})
}

// runJobReconciler runs the Job reconciler alone on an engine of its own (a new index, as a new
// process would have) until the returned stop is called.
func runJobReconciler(t *testing.T, c *reconcilerstest.Cluster) (stop func()) {
	t.Helper()
	e := engine.New(c.Store, engine.Options{Logger: c.Logger, Registry: c.Registry, Host: "test"})
	if _, err := job.New(e, job.Config{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }() // it returns nil once ctx ends
	return func() { cancel(); <-done }
}
