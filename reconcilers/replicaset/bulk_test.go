package replicaset_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/sets"
	"github.com/logplane/logplane/registry"
)

// Scaling 0 → 300 → 120 in bursts of 40 creates exactly 300 pods and deletes exactly 180: the
// reconciles that run while a burst's pods are still coming back do not create or delete again.
func TestBulkScaleDoesNotOvershoot(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 10, Reconcilers: func(o *sets.Options) { o.BurstReplicas = 40 }})
	ctx := context.Background()
	zero := int32(0)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "bulk"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bulk"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bulk"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().ReplicaSets("default").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	scale := func(n int32) {
		t.Helper()
		c.MustKubectl("scale", "rs", "bulk", "--replicas="+itoa(n))
		c.Eventually(60*time.Second, func() (bool, string) {
			got, err := c.Client.AppsV1().ReplicaSets("default").Get(ctx, "bulk", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			pods := c.LivePods("app=bulk")
			return got.Status.Replicas == n && got.Status.ReadyReplicas == n && len(pods) == int(n),
				"status " + itoa(got.Status.Replicas) + " replicas, " + itoa(got.Status.ReadyReplicas) + " ready, " + itoa(int32(len(pods))) + " pods"
		})
	}
	count := func(reason string) int {
		t.Helper()
		c.WaitReconciled() // anything still in flight is written
		recs, err := c.Registry.Audit(ctx, registry.AuditQuery{Actor: "replicaset", Kind: eventv1.ActorKind_ACTOR_KIND_RECONCILER,
			Resource: schema.GroupResource{Resource: "pods"}})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range recs {
			if r.Event.GetReason() == reason {
				n++
			}
		}
		return n
	}
	scale(300)
	if n := count(registry.ReasonCreate); n != 300 {
		t.Errorf("%d pods created for 300 replicas", n)
	}
	scale(120)
	if n := count(registry.ReasonDelete); n != 180 {
		t.Errorf("%d pods deleted going from 300 to 120 replicas", n)
	}
	if n := count(registry.ReasonCreate); n != 300 {
		t.Errorf("%d pods created in all", n)
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
