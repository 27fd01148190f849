package replicaset_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/reconcilerstest/seeds"
)

// The workloads tutorial's ReplicaSet walkthrough, with the real kubectl: three replicas come
// up; a deleted pod is replaced; scaling up and down; a bare pod with the same labels is adopted
// (and, being one too many, deleted); a pod relabelled out of the selector is released and
// replaced.
func TestReplicaSetWalkthrough(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 2})
	c.MustApply(seeds.ReplicaSetDemo("gcr.io/google-samples/microservices-demo/emailservice:v0.7.0", 3))
	waitRS := func(desired, ready int) {
		t.Helper()
		c.Eventually(30*time.Second, func() (bool, string) {
			out, err := c.Kubectl("get", "rs", "emailservice-replicaset-demo", "--no-headers")
			if err != nil {
				return false, err.Error()
			}
			f := strings.Fields(out)
			want := []string{"emailservice-replicaset-demo", fmt.Sprint(desired), fmt.Sprint(desired), fmt.Sprint(ready)}
			return len(f) == 5 && strings.Join(f[:4], " ") == strings.Join(want, " "), "kubectl get rs: " + out
		})
		c.Eventually(30*time.Second, func() (bool, string) {
			pods := c.LivePods("app=emailservice-demo")
			running := 0
			for _, p := range pods {
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
			return len(pods) == desired && running == ready, fmt.Sprintf("%d pods, %d running, want %d", len(pods), running, desired)
		})
	}
	waitRS(3, 3)
	out := c.MustKubectl("get", "pods", "-l", "app=emailservice-demo", "--no-headers")
	if n := strings.Count(out, "Running"); n != 3 {
		t.Fatalf("kubectl get pods shows %d Running pods, want 3:\n%s", n, out)
	}
	for _, p := range c.LivePods("app=emailservice-demo") {
		if !strings.HasPrefix(p.Name, "emailservice-replicaset-demo-") || len(p.Name) != len("emailservice-replicaset-demo-")+5 {
			t.Errorf("pod name %q is not the replica set's name and 5 random characters", p.Name)
		}
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.Kind != "ReplicaSet" || ref.Name != "emailservice-replicaset-demo" || !*ref.BlockOwnerDeletion {
			t.Errorf("pod %s has controller %+v", p.Name, ref)
		}
	}

	// Delete one of the pods: another takes its place.
	victim := c.LivePods("app=emailservice-demo")[0].Name
	c.MustKubectl("delete", "pod", victim)
	waitRS(3, 3)
	for _, p := range c.LivePods("app=emailservice-demo") {
		if p.Name == victim {
			t.Fatalf("deleted pod %s is still there", victim)
		}
	}

	// Scale up and down.
	c.MustKubectl("scale", "rs", "emailservice-replicaset-demo", "--replicas=5")
	waitRS(5, 5)
	c.MustKubectl("scale", "rs", "emailservice-replicaset-demo", "--replicas=2")
	waitRS(2, 2)

	// A bare pod with the same labels: the replica set adopts it, and, having one pod too many,
	// deletes one.
	c.MustApply(`
apiVersion: v1
kind: Pod
metadata:
  name: bare
  labels:
    app: emailservice-demo
spec:
  containers:
  - name: server
    image: gcr.io/google-samples/microservices-demo/emailservice:v0.7.0
`)
	c.Eventually(30*time.Second, func() (bool, string) {
		p, err := c.Client.CoreV1().Pods("default").Get(context.Background(), "bare", metav1.GetOptions{})
		if err != nil {
			return true, "" // adopted, then deleted as the surplus one
		}
		ref := metav1.GetControllerOf(p)
		return ref != nil && ref.Name == "emailservice-replicaset-demo", fmt.Sprintf("bare pod owners: %+v", p.OwnerReferences)
	})
	waitRS(2, 2)

	// Relabel a pod out of the selector: it is released, and replaced.
	released := c.LivePods("app=emailservice-demo")[0].Name
	c.MustKubectl("label", "pod", released, "app=debugging", "--overwrite")
	c.Eventually(30*time.Second, func() (bool, string) {
		p, err := c.Client.CoreV1().Pods("default").Get(context.Background(), released, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(p.OwnerReferences) == 0, fmt.Sprintf("released pod owners: %+v", p.OwnerReferences)
	})
	waitRS(2, 2)

	// Status as kubectl -o yaml shows it.
	rs, err := c.Client.AppsV1().ReplicaSets("default").Get(context.Background(), "emailservice-replicaset-demo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := rs.Status
	if st.Replicas != 2 || st.FullyLabeledReplicas != 2 || st.ReadyReplicas != 2 || st.AvailableReplicas != 2 || st.ObservedGeneration != rs.Generation {
		t.Errorf("status %+v (generation %d)", st, rs.Generation)
	}
	events := c.MustKubectl("get", "events", "--field-selector", "involvedObject.name=emailservice-replicaset-demo", "--no-headers")
	for _, want := range []string{"SuccessfulCreate", "SuccessfulDelete", "Created pod: emailservice-replicaset-demo-", "Deleted pod: "} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}
}

// The wiki's ReplicationController walkthrough: three nginx pods on three nodes, describe,
// delete a pod and see another take its place, scale.
func TestReplicationControllerWalkthrough(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 3})
	if out, err := c.KubectlIn(seeds.NginxMultiNode("nginx", 80), "create", "-f", "-"); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "replicationcontroller/nginx-www created") {
		t.Fatalf("kubectl create said %q", out)
	}
	running := func(n int) {
		t.Helper()
		c.Eventually(30*time.Second, func() (bool, string) {
			out, err := c.Kubectl("get", "pods", "--no-headers")
			if err != nil {
				return false, err.Error()
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			return len(lines) == n && strings.Count(out, "Running") == n, out
		})
	}
	running(3)
	desc := c.MustKubectl("describe", "replicationcontroller")
	for _, want := range []string{"Name:         nginx-www", "Selector:     app=nginx", "Replicas:     3 current / 3 desired",
		"Pods Status:  3 Running / 0 Waiting / 0 Succeeded / 0 Failed", "SuccessfulCreate"} {
		if !strings.Contains(desc, want) {
			t.Errorf("kubectl describe rc lacks %q:\n%s", want, desc)
		}
	}
	nodes := map[string]bool{}
	for _, p := range c.LivePods("app=nginx") {
		nodes[p.Spec.NodeName] = true
		if !strings.HasPrefix(p.Name, "nginx-www-") {
			t.Errorf("pod %s is not named after its controller", p.Name)
		}
	}
	if len(nodes) != 3 {
		t.Errorf("the pods run on %d nodes, want 3: %v", len(nodes), nodes)
	}
	victim := c.LivePods("app=nginx")[0].Name
	c.MustKubectl("delete", "pod", victim)
	running(3)
	if out := c.MustKubectl("get", "pods"); strings.Contains(out, victim) {
		t.Fatalf("deleted pod %s still listed:\n%s", victim, out)
	}
	c.MustKubectl("scale", "rc", "nginx-www", "--replicas=5")
	running(5)
	out := c.MustKubectl("get", "rc", "nginx-www", "--no-headers")
	if f := strings.Fields(out); len(f) < 4 || f[1] != "5" || f[2] != "5" || f[3] != "5" {
		t.Errorf("kubectl get rc: %q, want 5 desired, 5 current, 5 ready", out)
	}
	rc, err := c.Client.CoreV1().ReplicationControllers("default").Get(context.Background(), "nginx-www", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := rc.Status; st.Replicas != 5 || st.FullyLabeledReplicas != 5 || st.ReadyReplicas != 5 || st.AvailableReplicas != 5 || st.ObservedGeneration != rc.Generation {
		t.Errorf("status %+v, generation %d", st, rc.Generation)
	}
	for _, p := range c.LivePods("app=nginx") {
		if ref := metav1.GetControllerOf(&p); ref == nil || ref.Kind != "ReplicationController" || ref.APIVersion != "v1" {
			t.Errorf("pod %s has controller %+v", p.Name, ref)
		}
	}
}
