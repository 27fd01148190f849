package sets_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

func TestMain(m *testing.M) {
	reconcilerstest.MaybeRunProcess()
	os.Exit(m.Run())
}

func parallel(n, workers int, fn func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

func demoDeployment(i int) *appsv1.Deployment {
	zero := int32(0)
	labels := map[string]string{"app": fmt.Sprintf("app-%d", i)}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", i)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
}

// Three reconcile processes share the work through the engine's partitions: each reconciles
// about a third of the deployments; one killed with SIGKILL in the middle of a scale-up loses
// nothing: its partitions move to the two others within seconds, and every deployment converges
// to exactly its replicas.
func TestScaleOutAndKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three reconcile processes")
	}
	const (
		deployments = 90
		replicas    = 10
	)
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 10, Listen: true, NoReconcilers: true, NoScheduler: true})
	ctx := context.Background()
	procs := []*reconcilerstest.Process{
		reconcilerstest.StartProcess(t, c.LogURL(), "r1", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(t)}),
		reconcilerstest.StartProcess(t, c.LogURL(), "r2", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(t)}),
		reconcilerstest.StartProcess(t, c.LogURL(), "r3", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(t)}),
	}
	owned := func(ps ...*reconcilerstest.Process) (total int, each []int) {
		for _, p := range ps {
			n := p.Stats().Owned
			total += n
			each = append(each, n)
		}
		return total, each
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		total, each := owned(procs...)
		for _, n := range each {
			if n < 20 || n > 22 {
				return false, fmt.Sprint(each)
			}
		}
		return total == 64, fmt.Sprint(each)
	})

	if err := parallel(deployments, 8, func(i int) error {
		_, err := c.Client.AppsV1().Deployments("default").Create(ctx, demoDeployment(i), metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c.Eventually(60*time.Second, func() (bool, string) {
		l, err := c.Client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(l.Items) == deployments, fmt.Sprintf("%d replica sets", len(l.Items))
	})
	// Each process reconciled about a third of the deployments (and, between them, each once:
	// the stats come a moment later).
	sum := 0
	c.Eventually(10*time.Second, func() (bool, string) {
		sum = 0
		for _, p := range procs {
			sum += p.Stats().Keys["deployment"]
		}
		return sum == deployments, fmt.Sprintf("the processes reconciled %d deployments between them, want %d", sum, deployments)
	})
	for _, p := range procs {
		st := p.Stats()
		share := float64(st.Keys["deployment"]) / float64(sum)
		t.Logf("%s: %d partitions, %d of %d deployments (%.0f%%), %d replica sets, %d reconciles in all", st.Holder, st.Owned,
			st.Keys["deployment"], sum, 100*share, st.Keys["replicaset"], total(st.Reconciles))
		if share < 0.23 || share > 0.43 {
			t.Errorf("%s reconciled %.0f%% of the deployments, want 33%% ± 10%%", st.Holder, 100*share)
		}
	}

	// Scale every deployment up, and kill -9 one process in the middle of it.
	scaled := make(chan error, 1)
	go func() {
		scaled <- parallel(deployments, 8, func(i int) error {
			_, err := c.Client.AppsV1().Deployments("default").UpdateScale(ctx, fmt.Sprintf("app-%d", i),
				&autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", i), Namespace: "default"},
					Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}, metav1.UpdateOptions{})
			return err
		})
	}()
	c.Eventually(60*time.Second, func() (bool, string) {
		l, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(l.Items) >= deployments*replicas/3, fmt.Sprintf("%d pods", len(l.Items))
	})
	procs[1].Kill()
	killed := time.Now()
	t.Logf("killed r2 with %d pods created", podCount(t, c))
	if err := <-scaled; err != nil {
		t.Fatal(err)
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		total, each := owned(procs[0], procs[2])
		return total == 64, fmt.Sprint(each)
	})
	takeover := time.Since(killed)
	t.Logf("r1 and r3 own all 64 partitions %v after the kill", takeover.Round(10*time.Millisecond))
	if takeover > 10*time.Second {
		t.Errorf("the partitions of the dead process moved only after %v", takeover)
	}
	c.Eventually(120*time.Second, func() (bool, string) {
		l, err := c.Client.AppsV1().Deployments("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		done := 0
		for _, d := range l.Items {
			if d.Status.AvailableReplicas == replicas && d.Status.UpdatedReplicas == replicas && d.Status.Replicas == replicas {
				done++
			}
		}
		return done == deployments, fmt.Sprintf("%d of %d deployments available", done, deployments)
	})
	converged := time.Since(killed)
	// Exactly the replicas asked for, no more, no fewer.
	c.Eventually(30*time.Second, func() (bool, string) {
		n := podCount(t, c)
		return n == deployments*replicas, fmt.Sprintf("%d pods, want %d", n, deployments*replicas)
	})
	t.Logf("every deployment available %v after the kill", converged.Round(10*time.Millisecond))
	for _, p := range []*reconcilerstest.Process{procs[0], procs[2]} {
		st := p.Stats()
		t.Logf("%s: %d partitions, %d deployments, %d replica sets, %d reconciles in all", st.Holder, st.Owned,
			st.Keys["deployment"], st.Keys["replicaset"], total(st.Reconciles))
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// podCount counts the pods that are not being deleted.
func podCount(t *testing.T, c *reconcilerstest.Cluster) int {
	t.Helper()
	l, err := c.Client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			n++
		}
	}
	return n
}
