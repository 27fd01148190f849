package job_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/sets"
)

// BenchmarkJobs runs Jobs on 100 simulated nodes (logplane's node agent on the sim runtime,
// whose containers exit 0 at once), the reconcilers and the scheduler in process, and reports
// the seconds from the first create until every Job is Complete (seconds) and the pods
// completed per minute (pods/min): 1,000 Jobs of one pod each, created by 32 clients
// (jobs=1000), and one Indexed Job of 10,000 completions with parallelism 500 (indexed=10000).
func BenchmarkJobs(b *testing.B) {
	b.Run("jobs=1000", func(b *testing.B) {
		for range b.N {
			benchJobs(b, 1000, 1, 1, false)
		}
	})
	b.Run("indexed=10000", func(b *testing.B) {
		for range b.N {
			benchJobs(b, 1, 10000, 500, true)
		}
	})
}

// completeJobs counts, as the projection applies their changes, the Jobs whose Complete
// condition is true, and the pods that succeeded.
type completeJobs struct {
	mu        sync.Mutex
	complete  map[string]bool
	succeeded map[string]bool
	want      int
	last      time.Time // when the last Job became Complete
	done      chan struct{}
}

func watchComplete(store *projections.Store, want int) (*completeJobs, func()) {
	w := &completeJobs{complete: map[string]bool{}, succeeded: map[string]bool{}, want: want, done: make(chan struct{})}
	cancel := store.Subscribe(func(ch projections.Change) {
		if ch.New == nil {
			return
		}
		switch ch.New.Key.Resource {
		case "pods":
			if ch.New.Fields["status.phase"] == string(corev1.PodSucceeded) {
				w.mu.Lock()
				w.succeeded[ch.New.Key.Name] = true
				w.mu.Unlock()
			}
		case "jobs":
			obj, err := ch.New.Decode()
			if err != nil {
				return
			}
			j, ok := obj.(*batchv1.Job)
			if !ok || !hasCondition(j, batchv1.JobComplete, "") {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.complete[j.Name] {
				return
			}
			w.complete[j.Name] = true
			w.last = time.Now()
			if len(w.complete) == w.want {
				close(w.done)
			}
		}
	})
	return w, cancel
}

func (w *completeJobs) counts() (complete, succeeded int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.complete), len(w.succeeded)
}

func batchJob(name string, completions, parallelism int32, indexed bool) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			Completions: ptr.To(completions),
			Parallelism: ptr.To(parallelism),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "work", Image: "exit-0"}},
			}},
		},
	}
	if indexed {
		j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
	}
	return j
}

func benchJobs(b *testing.B, jobs int, completions, parallelism int32, indexed bool) {
	b.StopTimer()
	const nodes = 100
	c := reconcilerstest.Start(b, reconcilerstest.Options{Nodes: nodes,
		NodeOptions: reconcilerstest.NodeOptions{RenewInterval: 10 * time.Second, Quiet: true, Exit: exits},
		Reconcilers: func(o *sets.Options) { o.Workers = *benchWorkers }})
	ctx := context.Background()
	c.Eventually(30*time.Second, func() (bool, string) {
		l, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == nodes, "nodes not registered"
	})
	w, cancel := watchComplete(c.Store, jobs)
	defer cancel()
	cpu0, err := reconcilerstest.ProcessCPU(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	var tr *trace
	if testing.Verbose() {
		var stop func()
		tr, stop = startTrace(c.Store)
		defer stop()
	}
	b.StartTimer()
	start := time.Now()
	const clients = 32
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := i; n < jobs; n += clients {
				if _, err := c.Client.BatchV1().Jobs("default").Create(ctx, batchJob(fmt.Sprintf("job-%d", n), completions, parallelism, indexed), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	created := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(10 * time.Minute):
		complete, succeeded := w.counts()
		b.Fatalf("after 10 minutes: %d of %d Jobs Complete, %d pods succeeded", complete, jobs, succeeded)
	}
	w.mu.Lock()
	took := w.last.Sub(start)
	w.mu.Unlock()
	b.StopTimer()
	cpu1, err := reconcilerstest.ProcessCPU(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	pods := jobs * int(completions)
	if _, succeeded := w.counts(); succeeded != pods {
		b.Fatalf("%d pods succeeded, want %d", succeeded, pods)
	}
	if tr != nil {
		tr.log(b, c)
	}
	b.ReportMetric(took.Seconds(), "seconds")
	b.ReportMetric(float64(pods)/took.Minutes(), "pods/min")
	b.ReportMetric(created.Seconds(), "s-to-created")
	b.ReportMetric((cpu1 - cpu0).Seconds(), "cpu-s")
}

var benchWorkers = flag.Int("bench-workers", 0, "workers per reconciler in BenchmarkJobs (0: the default)")
