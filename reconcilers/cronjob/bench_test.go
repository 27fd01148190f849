package cronjob_test

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/cronjob"
	"github.com/logplane/logplane/reconcilers/garbagecollector"
	"github.com/logplane/logplane/reconcilers/job"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/scheduler"
	"github.com/logplane/logplane/reconcilers/sets"
)

// BenchmarkCronJobs runs 1,000 CronJobs scheduled every minute on a fake clock, steps the clock
// past the next minute three times, and reports, over the 3,000 Jobs, the milliseconds from the
// step to each Job's create applied in the projection: p50-ms, p99-ms and max-ms. With
// run=all, the reconcilers of CronJobs, Jobs, the garbage collector and the scheduler run in
// process with 10 simulated nodes whose containers exit 0 at once, so each minute's Jobs run
// their pods while the next are created; with run=cronjob only the CronJob reconciler runs (the
// Jobs are created and nothing runs them): its own share.
func BenchmarkCronJobs(b *testing.B) {
	const cronJobs, rounds = 1000, 3
	for _, all := range []bool{true, false} {
		name := "run=all"
		if !all {
			name = "run=cronjob"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				benchCronJobs(b, cronJobs, rounds, all)
			}
		})
	}
}

// jobCreates records when each Job's create is applied, after the time the round started.
type jobCreates struct {
	mu      sync.Mutex
	since   time.Time
	took    []time.Duration
	want    int
	arrived chan struct{}
}

func benchCronJobs(b *testing.B, cronJobs, rounds int, all bool) {
	b.StopTimer()
	nodes := 10
	only := []string{cronjob.Name, job.Name, garbagecollector.Name, scheduler.Name}
	if !all {
		nodes, only = 0, []string{cronjob.Name}
	}
	fake := clocktesting.NewFakeClock(time.Now())
	c := reconcilerstest.Start(b, reconcilerstest.Options{Nodes: nodes, Clock: fake,
		NodeOptions: reconcilerstest.NodeOptions{Clock: fake, RenewInterval: 10 * time.Second, MaxPods: 1000, Quiet: true,
			Exit: func(runtimeapi.ContainerConfig) (time.Duration, int32, bool) { return 0, 0, true }},
		// Node lifecycle is left out: the nodes renew their leases in real time.
		Reconcilers: func(o *sets.Options) {
			o.Only, o.Workers = only, *benchWorkers
		}})
	ctx := context.Background()
	w := &jobCreates{arrived: make(chan struct{}, 1)}
	cancel := c.Store.Subscribe(func(ch projections.Change) {
		if ch.New == nil || ch.Old != nil || ch.New.Key.Resource != "jobs" {
			return
		}
		now := time.Now()
		w.mu.Lock()
		w.took = append(w.took, now.Sub(w.since))
		n := len(w.took)
		w.mu.Unlock()
		if n >= w.want {
			select {
			case w.arrived <- struct{}{}:
			default:
			}
		}
	})
	defer cancel()

	const clients = 32
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := i; n < cronJobs; n += clients {
				if _, err := c.Client.BatchV1().CronJobs("default").Create(ctx, benchCronJob(fmt.Sprintf("cron-%d", n)), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	c.WaitReconciled()

	for round := 1; round <= rounds; round++ {
		// The next minute after both the fake and the real time (the CronJobs' creation
		// times are the API server's, real).
		now := fake.Now()
		next := now.Truncate(time.Minute).Add(time.Minute)
		if real := time.Now(); !real.Before(next) {
			next = real.Truncate(time.Minute).Add(time.Minute)
		}
		w.mu.Lock()
		w.want = round * cronJobs
		w.mu.Unlock()
		b.StartTimer()
		w.mu.Lock()
		w.since = time.Now()
		w.mu.Unlock()
		fake.Step(next.Add(time.Second).Sub(now))
		deadline := time.After(5 * time.Minute)
		for done := false; !done; {
			select {
			case <-w.arrived:
				w.mu.Lock()
				done = len(w.took) >= w.want
				w.mu.Unlock()
			case <-deadline:
				w.mu.Lock()
				n := len(w.took)
				w.mu.Unlock()
				b.Fatalf("round %d: %d Jobs created of %d after 5 minutes", round, n, w.want)
			}
		}
		b.StopTimer()
		// The round's Jobs run their pods and are seen finished before the next minute.
		c.WaitReconciled()
	}
	w.mu.Lock()
	took := slices.Clone(w.took)
	w.mu.Unlock()
	if len(took) != rounds*cronJobs {
		b.Fatalf("%d Jobs created, want %d", len(took), rounds*cronJobs)
	}
	slices.Sort(took)
	ms := func(q float64) float64 {
		return float64(took[min(len(took)-1, int(q*float64(len(took))))].Microseconds()) / 1000
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}

func benchCronJob(name string) *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.CronJobSpec{
			Schedule: "*/1 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyOnFailure,
				Containers:    []corev1.Container{{Name: "hello", Image: "exit-0"}},
			}}}},
		},
	}
}

var benchWorkers = flag.Int("bench-workers", 0, "workers per reconciler in BenchmarkCronJobs (0: the default)")
