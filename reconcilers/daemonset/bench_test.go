package daemonset_test

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// BenchmarkDaemonSet creates a DaemonSet on 100 simulated nodes, the reconcilers (and the
// scheduler) in one reconcile process, and reports the seconds until its 100 pods are
// available (s-to-ready), then the seconds a template change takes to roll out with
// maxUnavailable 10% (s-to-rollout).
func BenchmarkDaemonSet(b *testing.B) {
	const nodes = 100
	for range b.N {
		b.StopTimer()
		c := reconcilerstest.Start(b, reconcilerstest.Options{Nodes: nodes, Listen: true, NoReconcilers: true, NoScheduler: true,
			NodeOptions: reconcilerstest.NodeOptions{RenewInterval: 10 * time.Second, Quiet: true}})
		reconcilerstest.StartProcess(b, c.LogURL(), "r1", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(b)})
		ctx := b.Context()
		ds := daemonSet("agent", imageV1, func(ds *appsv1.DaemonSet) {
			u := intstr.FromString("10%")
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &u}
		})
		done := func(generation int64) func() (bool, string) {
			return func() (bool, string) {
				cur, err := c.Client.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				st := cur.Status
				return cur.Generation >= generation && st.ObservedGeneration >= cur.Generation && st.DesiredNumberScheduled == nodes &&
					st.UpdatedNumberScheduled == nodes && st.NumberAvailable == nodes, fmt.Sprintf("%+v", st)
			}
		}
		b.StartTimer()
		start := time.Now()
		if _, err := c.Client.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		poll(b, done(1))
		b.ReportMetric(time.Since(start).Seconds(), "s-to-ready")
		start = time.Now()
		patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"agent","image":"` + imageV2 + `"}]}}}}`)
		if _, err := c.Client.AppsV1().DaemonSets("default").Patch(ctx, "agent", "application/strategic-merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		poll(b, done(2))
		b.ReportMetric(time.Since(start).Seconds(), "s-to-rollout")
		b.StopTimer()
	}
}

func poll(b *testing.B, cond func() (bool, string)) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("after 5m: %s", msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
