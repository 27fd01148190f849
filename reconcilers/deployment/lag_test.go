package deployment_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deploymentreconciler "github.com/logplane/logplane/reconcilers/deployment"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/sets"
)

// A rolling update whose old replica set's status lags its scale-down: the status still counts
// the pods the spec no longer asks for. Those are neither unhealthy (the old replica set is not
// scaled back up to "clean" them) nor available (it is not scaled down past what availability
// allows). The replica set reconciler is left out, so that the test writes the replica sets'
// status itself and holds it stale.
func TestDeploymentRollingUpdateWithStaleReplicaSetStatus(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true,
		Reconcilers: func(o *sets.Options) { o.Only = []string{deploymentreconciler.Name} }})
	ctx := context.Background()
	rsClient := c.Client.AppsV1().ReplicaSets("default")
	// replicaSet waits for the replica set of image to reach replicas, and returns it.
	replicaSet := func(image string, replicas int32) *appsv1.ReplicaSet {
		t.Helper()
		var found *appsv1.ReplicaSet
		c.Eventually(30*time.Second, func() (bool, string) {
			for _, rs := range replicaSets(t, c, "app=web") {
				if rs.Spec.Template.Spec.Containers[0].Image == image {
					found = &rs
					return *rs.Spec.Replicas == replicas, fmt.Sprintf("%s has %d replicas, want %d", rs.Name, *rs.Spec.Replicas, replicas)
				}
			}
			return false, "no replica set of " + image
		})
		return found
	}
	// available writes a replica set's status: n pods, all of them available.
	available := func(rs *appsv1.ReplicaSet, n int32) {
		t.Helper()
		cur, err := rsClient.Get(ctx, rs.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Status = appsv1.ReplicaSetStatus{Replicas: n, FullyLabeledReplicas: n, ReadyReplicas: n, AvailableReplicas: n, ObservedGeneration: cur.Generation}
		if _, err := rsClient.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// 3 replicas, 25% surge and unavailability: at most 4 replicas, at least 3 available.
	c.MustApply(webManifest(3, 0, 10, "{type: RollingUpdate}", "busybox:1"))
	available(replicaSet("busybox:1", 3), 3)
	start := c.Store.Applied()
	c.MustApply(webManifest(3, 0, 10, "{type: RollingUpdate}", "busybox:2"))
	available(replicaSet("busybox:2", 1), 1)
	// The old replica set goes to 2; its status, never written again, still says 3 available.
	oldRS := replicaSet("busybox:1", 2)
	available(replicaSet("busybox:2", 2), 2)
	// Available: 2 old (not the 3 its status says) and 2 new, one more than the 3 needed. The
	// old replica set goes to 1, not back up to 3 and not down to 0.
	replicaSet("busybox:1", 1)
	c.WaitReconciled() // anything more the reconciler would write is written
	rs, err := rsClient.Get(ctx, oldRS.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *rs.Spec.Replicas != 1 {
		t.Fatalf("old replica set: %v", rsSummary([]appsv1.ReplicaSet{*rs}))
	}
	checkRollingBounds(t, c, start, "app=web", 4)
}
