package namespaces_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/apiserver/logplaneapi"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// cond is what a test expects of one namespace condition.
type cond struct {
	status          corev1.ConditionStatus
	reason, message string
}

// okConditions are the five conditions of a namespace whose deletion found nothing wrong, as
// Kubernetes writes them.
func okConditions() map[corev1.NamespaceConditionType]cond {
	return map[corev1.NamespaceConditionType]cond{
		corev1.NamespaceDeletionDiscoveryFailure: {corev1.ConditionFalse, "ResourcesDiscovered", "All resources successfully discovered"},
		corev1.NamespaceDeletionGVParsingFailure: {corev1.ConditionFalse, "ParsedGroupVersions", "All legacy kube types successfully parsed"},
		corev1.NamespaceDeletionContentFailure:   {corev1.ConditionFalse, "ContentDeleted", "All content successfully deleted, may be waiting on finalization"},
		corev1.NamespaceContentRemaining:         {corev1.ConditionFalse, "ContentRemoved", "All content successfully removed"},
		corev1.NamespaceFinalizersRemaining:      {corev1.ConditionFalse, "ContentHasNoFinalizers", "All content-preserving finalizers finished"},
	}
}

// waitConditions waits for namespace ns to be Terminating with exactly the conditions want.
func waitConditions(t *testing.T, c *reconcilerstest.Cluster, ns string, want map[corev1.NamespaceConditionType]cond) *corev1.Namespace {
	t.Helper()
	var n *corev1.Namespace
	c.Eventually(30*time.Second, func() (bool, string) {
		var err error
		n, err = c.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got := map[corev1.NamespaceConditionType]cond{}
		for _, nc := range n.Status.Conditions {
			if _, dup := got[nc.Type]; dup {
				return false, fmt.Sprintf("condition %s twice: %+v", nc.Type, n.Status.Conditions)
			}
			if nc.LastTransitionTime.IsZero() {
				return false, fmt.Sprintf("condition %s has no lastTransitionTime", nc.Type)
			}
			got[nc.Type] = cond{nc.Status, nc.Reason, nc.Message}
		}
		if n.Status.Phase != corev1.NamespaceTerminating || len(got) != len(want) {
			return false, fmt.Sprintf("phase %s, conditions %+v", n.Status.Phase, n.Status.Conditions)
		}
		for typ, w := range want {
			if got[typ] != w {
				return false, fmt.Sprintf("condition %s: %+v, want %+v", typ, got[typ], w)
			}
		}
		return true, ""
	})
	return n
}

func waitGone(t *testing.T, c *reconcilerstest.Cluster, ns string) {
	t.Helper()
	c.Eventually(30*time.Second, func() (bool, string) {
		n, err := c.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
		if err == nil {
			return false, fmt.Sprintf("namespace %s still there: %s, %+v", ns, n.Status.Phase, n.Status.Conditions)
		}
		return apierrors.IsNotFound(err), err.Error()
	})
}

func dropFinalizers(t *testing.T, c *reconcilerstest.Cluster, ns, resource, name string) {
	t.Helper()
	c.MustKubectl("-n", ns, "patch", resource, name, "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
}

// Deleting a namespace deletes everything in it; the namespace goes once nothing is left, and
// its history shows it terminating, then gone.
func TestNamespaceDeletion(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true})
	ctx := t.Context()
	c.MustKubectl("create", "namespace", "doomed")
	for i := range 3 {
		c.MustKubectl("-n", "doomed", "create", "configmap", fmt.Sprint("c", i))
	}
	c.MustKubectl("-n", "doomed", "run", "p", "--image=nginx")
	c.MustKubectl("delete", "namespace", "doomed", "--timeout=30s")
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace after kubectl delete returned: %v", err)
	}
	if l, err := c.Client.CoreV1().ConfigMaps("doomed").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Fatalf("left in the namespace: %v %+v", err, l)
	}
	body, err := c.Client.CoreV1().RESTClient().Get().AbsPath(logplaneapi.HistoryPath("/api/v1/namespaces/doomed")).DoRaw(ctx)
	var h logplaneapi.History
	if err != nil || json.Unmarshal(body, &h) != nil || len(h.Items) < 3 || h.Items[len(h.Items)-1].Type != "DELETED" {
		t.Fatalf("history: %v %s", err, body)
	}
}

// Content held by a finalizer keeps its namespace Terminating, and the namespace's conditions
// say what is left and why, with Kubernetes' reasons and messages; once the finalizer is
// removed, the namespace goes.
func TestFinalizerRemaining(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true})
	ctx := t.Context()
	c.MustKubectl("create", "namespace", "blocked")
	held := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "held", Finalizers: []string{"example.com/x"}}}
	if _, err := c.Client.CoreV1().ConfigMaps("blocked").Create(ctx, held, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.MustKubectl("-n", "blocked", "create", "configmap", "plain")
	c.MustKubectl("-n", "blocked", "create", "secret", "generic", "s", "--from-literal=k=v")
	c.MustKubectl("delete", "namespace", "blocked", "--wait=false")

	want := okConditions()
	want[corev1.NamespaceContentRemaining] = cond{corev1.ConditionTrue, "SomeResourcesRemain", "Some resources are remaining: configmaps. has 1 resource instances"}
	want[corev1.NamespaceFinalizersRemaining] = cond{corev1.ConditionTrue, "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: example.com/x in 1 resource instances"}
	waitConditions(t, c, "blocked", want)
	// Everything else went.
	cms, err := c.Client.CoreV1().ConfigMaps("blocked").List(ctx, metav1.ListOptions{})
	if err != nil || len(cms.Items) != 1 || cms.Items[0].Name != "held" || cms.Items[0].DeletionTimestamp == nil {
		t.Fatalf("configmaps left: %v %+v", err, cms)
	}
	if ss, err := c.Client.CoreV1().Secrets("blocked").List(ctx, metav1.ListOptions{}); err != nil || len(ss.Items) != 0 {
		t.Fatalf("secrets left: %v %+v", err, ss)
	}
	// kubectl describe shows them, as on Kubernetes.
	desc := c.MustKubectl("describe", "namespace", "blocked")
	for _, s := range []string{"Status:       Terminating", "NamespaceFinalizersRemaining", "SomeFinalizersRemain",
		"Some content in the namespace has finalizers remaining: example.com/x in 1 resource instances"} {
		if !strings.Contains(desc, s) {
			t.Errorf("describe namespace: no %q in\n%s", s, desc)
		}
	}

	dropFinalizers(t, c, "blocked", "configmap", "held")
	waitGone(t, c, "blocked")
}

// Pods go first (Kubernetes' ordered namespace deletion, the 1.34 conformance test "namespace
// deletion should delete pod first"): while a pod is held by its finalizer, the namespace has
// its conditions and the rest of its content is kept.
func TestPodsFirst(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1})
	ctx := t.Context()
	c.MustKubectl("create", "namespace", "nsdeletetest")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "test-pod", Finalizers: []string{"e2e.example.com/finalizer"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
	}
	if _, err := c.Client.CoreV1().Pods("nsdeletetest").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.MustKubectl("-n", "nsdeletetest", "wait", "--for=condition=Ready", "pod/test-pod", "--timeout=30s")
	c.MustKubectl("-n", "nsdeletetest", "create", "configmap", "test-configmap", "--from-literal=key=value")
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, "nsdeletetest", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// While pods are left, Kubernetes reports only whether deleting failed: every condition says
	// all is well.
	waitConditions(t, c, "nsdeletetest", okConditions())
	if _, err := c.Client.CoreV1().ConfigMaps("nsdeletetest").Get(ctx, "test-configmap", metav1.GetOptions{}); err != nil {
		t.Fatalf("the configmap went before the pod: %v", err)
	}
	p, err := c.Client.CoreV1().Pods("nsdeletetest").Get(ctx, "test-pod", metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("pod: %v, %+v", err, p)
	}
	_, err = c.Client.CoreV1().Pods("nsdeletetest").Patch(ctx, "test-pod", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, "nsdeletetest")
}

// A pod that should be gone and is not (its node is down, and its grace period of a second is
// over) is a failure to delete content: NamespaceDeletionContentFailure says so, until the node
// comes back and finishes it.
func TestContentDeletionFailure(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 1})
	ctx := t.Context()
	c.MustKubectl("create", "namespace", "stranded")
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
	}
	if _, err := c.Client.CoreV1().Pods("stranded").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.MustKubectl("-n", "stranded", "wait", "--for=condition=Ready", "pod/p", "--timeout=30s")
	c.Nodes.Stop("node-1")
	c.MustKubectl("delete", "namespace", "stranded", "--wait=false")
	want := okConditions()
	want[corev1.NamespaceDeletionContentFailure] = cond{corev1.ConditionTrue, "ContentDeletionFailed",
		"Failed to delete all resource types, 1 remaining: unexpected items still remain in namespace: stranded for gvr: /v1, Resource=pods"}
	waitConditions(t, c, "stranded", want)
	if err := c.Nodes.Restart(ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, "stranded")
}
