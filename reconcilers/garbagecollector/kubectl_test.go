package garbagecollector_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/reconcilerstest/seeds"
)

const nginxDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
spec:
  replicas: 2
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:%s
        ports:
        - containerPort: 80
`

func waitPods(t *testing.T, c *reconcilerstest.Cluster, ns, selector string, n int) {
	t.Helper()
	c.Eventually(30*time.Second, func() (bool, string) {
		ps := c.Pods(ns, selector)
		running := 0
		for _, p := range ps {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running++
			}
		}
		return len(ps) == n && running == n, fmt.Sprintf("%d pods, %d running, want %d", len(ps), running, n)
	})
}

// The Kubernetes 201 walkthrough: create a Deployment, update its image with apply, delete it:
// its replica sets and pods go with it.
func TestDeleteDeployment(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 2})
	c.MustApply(fmt.Sprintf(nginxDeployment, "1.7.9"))
	waitPods(t, c, "default", "app=nginx", 2)
	c.MustApply(fmt.Sprintf(nginxDeployment, "1.8"))
	c.MustKubectl("rollout", "status", "deployment/nginx-deployment", "--timeout=60s")
	if out := c.MustKubectl("get", "rs", "--no-headers"); strings.Count(out, "nginx-deployment-") != 2 {
		t.Fatalf("replica sets: %q", out)
	}
	out := c.MustKubectl("delete", "deployment", "nginx-deployment")
	if !strings.Contains(out, `deployment.apps "nginx-deployment" deleted`) {
		t.Errorf("kubectl delete said %q", out)
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		rs, err := c.Kubectl("get", "rs", "-o", "name")
		if err != nil {
			return false, err.Error()
		}
		p, err := c.Kubectl("get", "pods", "-l", "app=nginx", "-o", "name")
		if err != nil {
			return false, err.Error()
		}
		return rs == "" && p == "", "left: " + rs + p
	})
}

// The wiki's ReplicationController cleanup: delete the controller and its pods go; with
// --cascade=orphan they stay, without owner references, and a new controller adopts them
// instead of creating others.
func TestDeleteReplicationController(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 3})
	c.MustApply(seeds.NginxMultiNode("nginx", 80))
	waitPods(t, c, "default", "app=nginx", 3)
	orphans := map[string]bool{}
	for _, p := range c.Pods("default", "app=nginx") {
		orphans[p.Name] = true
	}
	out := c.MustKubectl("delete", "rc", "nginx-www", "--cascade=orphan")
	if !strings.Contains(out, `replicationcontroller "nginx-www" deleted`) {
		t.Errorf("kubectl delete said %q", out)
	}
	if _, err := c.Client.CoreV1().ReplicationControllers("default").Get(context.Background(), "nginx-www", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the controller is still there: %v", err)
	}
	c.WaitReconciled() // the collector has handled the deletion
	ps := c.Pods("default", "app=nginx")
	if len(ps) != 3 {
		t.Fatalf("%d pods left after an orphaning delete, want 3", len(ps))
	}
	for _, p := range ps {
		if len(p.OwnerReferences) != 0 || !orphans[p.Name] || p.DeletionTimestamp != nil {
			t.Errorf("pod %s: owners %v, deleting %v", p.Name, p.OwnerReferences, p.DeletionTimestamp)
		}
	}
	// A new controller with the same selector adopts them.
	c.MustApply(seeds.NginxMultiNode("nginx", 80))
	c.Eventually(30*time.Second, func() (bool, string) {
		ps := c.Pods("default", "app=nginx")
		adopted := 0
		for _, p := range ps {
			if ref := metav1.GetControllerOf(&p); ref != nil && ref.Name == "nginx-www" && orphans[p.Name] {
				adopted++
			}
		}
		return len(ps) == 3 && adopted == 3, fmt.Sprintf("%d pods, %d adopted", len(ps), adopted)
	})
	// Deleted the default way, its pods go with it.
	c.MustKubectl("delete", "replicationcontroller", "nginx-www")
	c.Eventually(30*time.Second, func() (bool, string) {
		out, err := c.Kubectl("get", "pods", "-o", "name")
		return err == nil && out == "", "pods left: " + out
	})
}

// Foreground deletion: the owner stays (deletionTimestamp, foregroundDeletion finalizer) until
// its pods are gone, and pods on a node that is down stay terminating until it comes back.
func TestForegroundDeletion(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1})
	c.MustApply(seeds.NginxMultiNode("nginx", 80))
	waitPods(t, c, "default", "app=nginx", 3)
	c.Nodes.Stop("node-1")
	c.MustKubectl("delete", "rc", "nginx-www", "--cascade=foreground", "--wait=false")
	c.Eventually(10*time.Second, func() (bool, string) {
		ps := c.Pods("default", "app=nginx")
		deleting := 0
		for _, p := range ps {
			if p.DeletionTimestamp != nil {
				deleting++
			}
		}
		return deleting == 3, fmt.Sprintf("%d of %d pods terminating", deleting, len(ps))
	})
	rc, err := c.Client.CoreV1().ReplicationControllers("default").Get(context.Background(), "nginx-www", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the controller went before its pods: %v", err)
	}
	if rc.DeletionTimestamp == nil || len(rc.Finalizers) != 1 || rc.Finalizers[0] != metav1.FinalizerDeleteDependents {
		t.Errorf("controller being deleted: %v, finalizers %v", rc.DeletionTimestamp, rc.Finalizers)
	}
	if err := c.Nodes.Restart(context.Background(), "node-1"); err != nil {
		t.Fatal(err)
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		_, err := c.Client.CoreV1().ReplicationControllers("default").Get(context.Background(), "nginx-www", metav1.GetOptions{})
		return apierrors.IsNotFound(err) && len(c.Pods("default", "app=nginx")) == 0, fmt.Sprintf("controller: %v", err)
	})

	// A deployment deleted in the foreground waits for its replica set, which waits for its pods.
	c.MustApply(fmt.Sprintf(nginxDeployment, "1.7.9"))
	waitPods(t, c, "default", "app=nginx", 2)
	out := c.MustKubectl("delete", "deployment", "nginx-deployment", "--cascade=foreground")
	if !strings.Contains(out, "deleted") {
		t.Errorf("kubectl delete said %q", out)
	}
	if out := c.MustKubectl("get", "rs,pods", "-o", "name"); out != "" {
		t.Errorf("left after a foreground delete returned: %q", out)
	}
}

// Deleting a namespace deletes its workloads, and the namespace goes once they are gone.
func TestDeleteNamespace(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 2})
	c.MustKubectl("create", "namespace", "shop")
	c.MustKubectl("-n", "shop", "create", "deployment", "web", "--image=nginx", "--replicas=3")
	waitPods(t, c, "shop", "app=web", 3)
	c.MustKubectl("delete", "namespace", "shop", "--timeout=60s")
	if _, err := c.Client.CoreV1().Namespaces().Get(context.Background(), "shop", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace after delete: %v", err)
	}
	if ps := c.Pods("shop", ""); len(ps) != 0 {
		t.Errorf("%d pods left", len(ps))
	}
}

// A pod with two owners loses only the reference to the one deleted.
func TestTwoOwners(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true})
	ctx := context.Background()
	a, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dep", OwnerReferences: []metav1.OwnerReference{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "a", UID: a.UID}, {APIVersion: "v1", Kind: "ConfigMap", Name: "b", UID: b.UID}}}}
	if _, err := c.Client.CoreV1().Secrets("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.MustKubectl("delete", "configmap", "a")
	c.Eventually(10*time.Second, func() (bool, string) {
		s, err := c.Client.CoreV1().Secrets("default").Get(ctx, "dep", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(s.OwnerReferences) == 1 && s.OwnerReferences[0].UID == b.UID, fmt.Sprintf("owners %v", s.OwnerReferences)
	})
	c.MustKubectl("delete", "configmap", "b")
	c.Eventually(10*time.Second, func() (bool, string) {
		_, err := c.Client.CoreV1().Secrets("default").Get(ctx, "dep", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// makeCycle creates pod1, pod2 and pod3 in the default namespace and makes them own each other in
// a circle (pod1 owned by pod3, pod2 by pod1, pod3 by pod2), each reference a blocking
// controller reference, as Kubernetes' conformance test "Garbage collector should not be
// blocked by dependency circle" does, and waits for them to run.
func makeCycle(t *testing.T, c *reconcilerstest.Cluster) map[string]*corev1.Pod {
	t.Helper()
	ctx := t.Context()
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"pod1", "pod2", "pod3"} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"cycle": "yes"}},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
		}
		p, err := c.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods[name] = p
	}
	patch := func(name, owner string) {
		t.Helper()
		body := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":"%s","uid":"%s","controller":true,"blockOwnerDeletion":true}]}}`,
			owner, pods[owner].UID)
		p, err := c.Client.CoreV1().Pods("default").Patch(ctx, name, types.StrategicMergePatchType, []byte(body), metav1.PatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods[name] = p
	}
	patch("pod1", "pod3")
	patch("pod2", "pod1")
	patch("pod3", "pod2")
	waitPods(t, c, "default", "cycle=yes", 3)
	return pods
}

// The conformance test "Garbage collector should not be blocked by dependency circle": pod1
// deleted in the foreground (with its uid as precondition) takes pod2 and pod3 with it, although
// each waits for the next: the collector unblocks the reference of the member whose dependent
// already waits, as Kubernetes' does.
func TestDependencyCircleForeground(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1})
	pods := makeCycle(t, c)
	fg := metav1.DeletePropagationForeground
	if err := c.Client.CoreV1().Pods("default").Delete(t.Context(), "pod1", metav1.DeleteOptions{
		PropagationPolicy: &fg, Preconditions: metav1.NewUIDPreconditions(string(pods["pod1"].UID))}); err != nil {
		t.Fatal(err)
	}
	c.Eventually(60*time.Second, func() (bool, string) {
		ps := c.Pods("default", "")
		var left []string
		for _, p := range ps {
			left = append(left, fmt.Sprintf("%s(deleting %v, finalizers %v, owners %v)", p.Name, p.DeletionTimestamp != nil, p.Finalizers, p.OwnerReferences))
		}
		return len(ps) == 0, fmt.Sprintf("pods left: %v", left)
	})
}

// The same circle with pod1 deleted the default way (background): each member goes once its
// owner is gone.
func TestDependencyCircleBackground(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1})
	makeCycle(t, c)
	c.MustKubectl("delete", "pod", "pod1", "--wait=false")
	c.Eventually(60*time.Second, func() (bool, string) {
		ps := c.Pods("default", "")
		var left []string
		for _, p := range ps {
			left = append(left, fmt.Sprintf("%s(deleting %v, finalizers %v)", p.Name, p.DeletionTimestamp != nil, p.Finalizers))
		}
		return len(ps) == 0, fmt.Sprintf("pods left: %v", left)
	})
}

// kubectl's foreground deletion of a member of a circle returns: the whole circle goes.
func TestDependencyCircleKubectlForeground(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1})
	makeCycle(t, c)
	if _, err := c.Kubectl("delete", "pod", "pod2", "--cascade=foreground", "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		out, err := c.Kubectl("get", "pods", "-o", "name")
		return err == nil && out == "", "pods left: " + out
	})
}
