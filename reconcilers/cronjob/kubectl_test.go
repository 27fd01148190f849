package cronjob_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/cronjob"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/garbagecollector"
	"github.com/logplane/logplane/reconcilers/job"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/scheduler"
	"github.com/logplane/logplane/reconcilers/sets"
)

// harness is a cluster whose reconcilers and simulated containers follow a fake clock, with the
// Jobs created in the log counted by name. Containers of image "exit-0" exit 0 at once; others
// run until stopped.
type harness struct {
	*reconcilerstest.Cluster
	t    *testing.T
	fake *clocktesting.FakeClock
	mu   sync.Mutex
	jobs []string // created, in order
}

func start(t *testing.T) *harness {
	fake := clocktesting.NewFakeClock(time.Now())
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1, Clock: fake, NodeOptions: reconcilerstest.NodeOptions{Clock: fake,
		Exit: func(cc runtimeapi.ContainerConfig) (time.Duration, int32, bool) { return 0, 0, cc.Image == "exit-0" }},
		// Node lifecycle is left out: the nodes renew their leases in real time, and a clock
		// stepped by hours would find them gone.
		Reconcilers: func(o *sets.Options) {
			o.Only = []string{cronjob.Name, job.Name, garbagecollector.Name, scheduler.Name}
		}})
	h := &harness{Cluster: c, t: t, fake: fake}
	c.Store.Subscribe(func(ch projections.Change) {
		if ch.New != nil && ch.Old == nil && ch.New.Key.Resource == "jobs" {
			h.mu.Lock()
			h.jobs = append(h.jobs, ch.New.Key.Name)
			h.mu.Unlock()
		}
	})
	return h
}

func (h *harness) created() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.jobs)
}

// nextMinute steps the clock to one second past the next minute, and waits for the
// reconcilers to have handled it.
func (h *harness) nextMinute() time.Time {
	now := h.fake.Now()
	at := now.Truncate(time.Minute).Add(time.Minute)
	h.fake.Step(at.Add(time.Second).Sub(now))
	h.WaitReconciled()
	return at
}

// waitJobs waits until n Jobs were created, and the reconcilers have handled what followed.
func (h *harness) waitJobs(n int) []string {
	h.t.Helper()
	h.Eventually(30*time.Second, func() (bool, string) {
		got := h.created()
		return len(got) >= n, fmt.Sprintf("jobs created: %v, want %d", got, n)
	})
	h.WaitReconciled()
	if got := h.created(); len(got) != n {
		h.t.Fatalf("jobs created: %v, want %d", got, n)
	}
	return h.created()
}

func (h *harness) cronJob(name string) *batchv1.CronJob {
	h.t.Helper()
	cj, err := h.Client.BatchV1().CronJobs("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return cj
}

const hello = `
apiVersion: batch/v1
kind: CronJob
metadata:
  name: hello
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: hello
            image: exit-0
            command: [/bin/sh, -c, date; echo Hello from the Kubernetes cluster]
          restartPolicy: OnFailure
`

// The 001 CronJob: a Job each minute, named for its minute, that completes; status and kubectl
// as Kubernetes shows them; a jump of hours starts one catch-up Job, not a flood, and does not
// stop the CronJob; kubectl create job --from=cronjob runs one more by hand.
func TestCronJobHello(t *testing.T) {
	h := start(t)
	h.MustApply(hello)
	h.WaitReconciled()
	if got := h.created(); len(got) != 0 {
		t.Fatalf("jobs before the first minute: %v", got)
	}
	at := h.nextMinute()
	jobs := h.waitJobs(1)
	if want := fmt.Sprintf("hello-%d", at.Unix()/60); jobs[0] != want {
		t.Errorf("job %s, want %s", jobs[0], want)
	}
	h.Eventually(30*time.Second, func() (bool, string) {
		cj := h.cronJob("hello")
		js, _ := h.Client.BatchV1().Jobs("default").List(context.Background(), metav1.ListOptions{}) // for the message only
		ps, _ := h.Client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})  // for the message only
		return len(cj.Status.Active) == 0 && cj.Status.LastSuccessfulTime != nil, fmt.Sprintf("status %+v\njobs %+v\npods %+v", cj.Status, js.Items, ps.Items)
	})
	cj := h.cronJob("hello")
	if !cj.Status.LastScheduleTime.Time.Equal(at) {
		t.Errorf("lastScheduleTime %v, want %v", cj.Status.LastScheduleTime, at)
	}
	j, err := h.Client.BatchV1().Jobs("default").Get(context.Background(), jobs[0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(j); ref == nil || ref.Kind != "CronJob" || ref.UID != cj.UID || j.Annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] != at.Local().Format(time.RFC3339) {
		t.Errorf("job owner %+v, annotations %v", j.OwnerReferences, j.Annotations)
	}
	out := h.MustKubectl("get", "cronjob", "hello")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE" {
		t.Fatalf("kubectl get cronjob:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != "hello" || f[1] != "*/1" || f[6] != "<none>" || f[7] != "False" || f[8] != "0" {
		t.Errorf("kubectl get cronjob:\n%s", out)
	}

	// Three hours pass at once (180 missed schedules): one Job, for the latest minute.
	now := h.fake.Now()
	h.fake.Step(3 * time.Hour)
	h.WaitReconciled()
	jobs = h.waitJobs(2)
	if want := fmt.Sprintf("hello-%d", now.Add(3*time.Hour).Unix()/60); jobs[1] != want {
		t.Errorf("catch-up job %s, want %s", jobs[1], want)
	}
	// ...and it carries on at the next minute.
	h.nextMinute()
	h.waitJobs(3)

	// A Job by hand.
	h.MustKubectl("create", "job", "manual", "--from=cronjob/hello")
	h.Eventually(30*time.Second, func() (bool, string) {
		j, err := h.Client.BatchV1().Jobs("default").Get(context.Background(), "manual", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods, _ := h.Client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=manual"}) // for the message only
		return j.Status.Succeeded == 1, fmt.Sprintf("manual job status %+v, pods %+v", j.Status, pods.Items)
	})
	// History: successfulJobsHistoryLimit 3 (the default) keeps the three newest.
	h.Eventually(30*time.Second, func() (bool, string) {
		l, err := h.Client.BatchV1().Jobs("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, j := range l.Items {
			if j.DeletionTimestamp == nil {
				names = append(names, j.Name)
			}
		}
		return len(names) == 3 && !slices.Contains(names, jobs[0]), fmt.Sprintf("jobs %v", names)
	})
}

// concurrencyPolicy Forbid skips a schedule while a Job runs; Replace deletes it for the new
// one; suspend stops scheduling; startingDeadlineSeconds skips a schedule seen too late.
func TestCronJobConcurrencyAndDeadline(t *testing.T) {
	h := start(t)
	h.MustApply(`
apiVersion: batch/v1
kind: CronJob
metadata:
  name: long
spec:
  schedule: "@every 1m"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: run
            image: forever
          restartPolicy: Never
`)
	h.WaitReconciled()
	h.fake.Step(time.Minute + time.Second)
	h.WaitReconciled()
	jobs := h.waitJobs(1)
	h.fake.Step(time.Minute)
	h.WaitReconciled()
	h.waitJobs(1)
	if cj := h.cronJob("long"); len(cj.Status.Active) != 1 || cj.Status.Active[0].Name != jobs[0] {
		t.Fatalf("active %+v", cj.Status.Active)
	}

	// Replace: the schedule Forbid skipped is still the latest, and now starts, replacing the
	// running Job; so does the next one.
	h.MustKubectl("patch", "cronjob", "long", "--type=merge", "-p", `{"spec":{"concurrencyPolicy":"Replace"}}`)
	replaced := func(n int) {
		t.Helper()
		jobs := h.waitJobs(n)
		h.Eventually(30*time.Second, func() (bool, string) {
			_, err := h.Client.BatchV1().Jobs("default").Get(context.Background(), jobs[n-2], metav1.GetOptions{})
			cj := h.cronJob("long")
			return err != nil && len(cj.Status.Active) == 1 && cj.Status.Active[0].Name == jobs[n-1], fmt.Sprintf("old job: %v, active %+v", err, cj.Status.Active)
		})
	}
	replaced(2)
	h.fake.Step(time.Minute)
	h.WaitReconciled()
	replaced(3)

	h.MustKubectl("patch", "cronjob", "long", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
	h.WaitReconciled()
	h.fake.Step(5 * time.Minute)
	h.WaitReconciled()
	h.waitJobs(3)
	if out := h.MustKubectl("get", "cronjob", "long", "--no-headers"); strings.Fields(out)[4] != "True" {
		t.Errorf("kubectl get cronjob: %s", out)
	}

	// Resumed with a deadline of 10 s, 20 s after a schedule (stepped there while suspended, so
	// that where the test's clock started within its minute does not matter): missed, no Job;
	// 30 s after the next one: missed too; then a Job at the one after.
	now := h.fake.Now()
	h.fake.Step(now.Truncate(time.Minute).Add(time.Minute + 20*time.Second).Sub(now))
	h.WaitReconciled()
	h.MustKubectl("patch", "cronjob", "long", "--type=merge", "-p", `{"spec":{"suspend":false,"startingDeadlineSeconds":10,"concurrencyPolicy":"Allow","schedule":"*/1 * * * *"}}`)
	now = h.fake.Now()
	h.fake.Step(now.Truncate(time.Minute).Add(time.Minute + 30*time.Second).Sub(now))
	h.WaitReconciled()
	h.waitJobs(3)
	h.nextMinute()
	h.waitJobs(4)
}

// A reconciler that died between creating a schedule's Job and writing the CronJob's status:
// the next one finds the Job (AlreadyExists), and records it as active with its
// lastScheduleTime, rather than creating another or forgetting it.
func TestCronJobAdoptsItsJobAfterCrash(t *testing.T) {
	fake := clocktesting.NewFakeClock(time.Now())
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoReconcilers: true, NoScheduler: true})
	c.MustApply(hello)
	cj, err := c.Client.BatchV1().CronJobs("default").Get(context.Background(), "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	at := fake.Now().Truncate(time.Minute).Add(time.Minute)
	name := fmt.Sprintf("hello-%d", at.Unix()/60)
	// The Job the dead reconciler created.
	if _, err := c.Client.BatchV1().Jobs("default").Create(context.Background(), &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob",
			Name: "hello", UID: cj.UID, Controller: ptr(true)}}},
		Spec: cj.Spec.JobTemplate.Spec,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var created []string
	c.Store.Subscribe(func(ch projections.Change) {
		if ch.New != nil && ch.Old == nil && ch.New.Key.Resource == "jobs" {
			mu.Lock()
			created = append(created, ch.New.Key.Name)
			mu.Unlock()
		}
	})
	e := engine.New(c.Store, engine.Options{Logger: c.Logger, Registry: c.Registry, Host: "test", Clock: fake})
	if _, err := cronjob.New(e, cronjob.Config{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }() // it returns nil once ctx ends
	t.Cleanup(func() { cancel(); <-done })
	fake.Step(at.Add(time.Second).Sub(fake.Now()))
	reconcilerstest.Eventually(t, 30*time.Second, func() (bool, string) {
		cj, err := c.Client.BatchV1().CronJobs("default").Get(context.Background(), "hello", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(cj.Status.Active) == 1 && cj.Status.Active[0].Name == name && cj.Status.LastScheduleTime != nil && cj.Status.LastScheduleTime.Time.Equal(at),
			fmt.Sprintf("status %+v", cj.Status)
	})
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if err := e.WaitReconciled(wctx, c.Store.Applied()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(created) != 0 {
		t.Errorf("jobs created: %v", created)
	}
}

func ptr[T any](v T) *T { return &v }
