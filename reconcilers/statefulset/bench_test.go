package statefulset_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// BenchmarkStatefulSet creates a StatefulSet of 100 replicas on 10 simulated nodes (logplane's
// node agent on the sim runtime, the reconcilers and the scheduler in process) and reports the
// seconds until its status counts 100 ready replicas, with each pod management policy.
func BenchmarkStatefulSet(b *testing.B) {
	for _, policy := range []appsv1.PodManagementPolicyType{appsv1.ParallelPodManagement, appsv1.OrderedReadyPodManagement} {
		b.Run("policy="+string(policy), func(b *testing.B) {
			for range b.N {
				benchSet(b, policy, 100)
			}
		})
	}
}

func benchSet(b *testing.B, policy appsv1.PodManagementPolicyType, replicas int32) {
	b.StopTimer()
	c := reconcilerstest.Start(b, reconcilerstest.Options{Nodes: 10,
		NodeOptions: reconcilerstest.NodeOptions{RenewInterval: 10 * time.Second, MaxPods: 110, Quiet: true}})
	c.Eventually(30*time.Second, func() (bool, string) {
		l, err := c.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		return err == nil && len(l.Items) == 10, "nodes not registered"
	})
	ready := make(chan struct{})
	closed := false
	cancel := c.Store.Subscribe(func(ch projections.Change) {
		if closed || ch.New == nil || ch.New.Key.Resource != "statefulsets" || ch.New.Key.Name != "bench" {
			return
		}
		obj, err := ch.New.Decode()
		if err != nil {
			return
		}
		if s := obj.(*appsv1.StatefulSet); s.Status.ReadyReplicas == replicas {
			closed = true
			close(ready)
		}
	})
	defer cancel()
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         "bench",
			PodManagementPolicy: policy,
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bench"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}}},
			},
		},
	}
	b.StartTimer()
	start := time.Now()
	if _, err := c.Client.AppsV1().StatefulSets("default").Create(context.Background(), set, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(5 * time.Minute):
		b.Fatal(fmt.Sprintf("%d replicas not ready after 5 minutes", replicas))
	}
	took := time.Since(start)
	b.StopTimer()
	b.ReportMetric(took.Seconds(), "seconds")
}
