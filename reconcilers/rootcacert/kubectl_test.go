package rootcacert_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/rootcacert"
)

// start runs the publisher on a test cluster, the way `logplane reconcile` runs it, with the
// CA the cluster's API server serves with.
func start(t *testing.T) (*reconcilerstest.Cluster, *engine.Engine) {
	t.Helper()
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoReconcilers: true, NoScheduler: true})
	e := engine.New(c.Store, engine.Options{Logger: c.Logger, Registry: c.Registry})
	if _, err := rootcacert.New(e, rootcacert.Config{CA: c.CA}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }() // it returns nil once ctx ends
	t.Cleanup(func() { cancel(); <-done })
	return c, e
}

func rootCA(t *testing.T, c *reconcilerstest.Cluster, ns string) (*corev1.ConfigMap, error) {
	t.Helper()
	return c.Client.CoreV1().ConfigMaps(ns).Get(t.Context(), rootcacert.ConfigMapName, metav1.GetOptions{})
}

// published waits for ns's kube-root-ca.crt to be what Kubernetes' publisher makes, other than
// the ConfigMap not, and returns it.
func published(t *testing.T, c *reconcilerstest.Cluster, ns string, not *corev1.ConfigMap) *corev1.ConfigMap {
	t.Helper()
	var cm *corev1.ConfigMap
	c.Eventually(10*time.Second, func() (bool, string) {
		var err error
		cm, err = rootCA(t, c, ns)
		if err != nil {
			return false, err.Error()
		}
		if not != nil && cm.ResourceVersion == not.ResourceVersion {
			return false, "still the ConfigMap of resourceVersion " + not.ResourceVersion
		}
		ok := len(cm.Data) == 1 && cm.Data["ca.crt"] == string(c.CA) && cm.Annotations["kubernetes.io/description"] == rootcacert.Description
		return ok, fmt.Sprintf("data %q, annotations %v", cm.Data, cm.Annotations)
	})
	return cm
}

// Every namespace, those there from the start and new ones, gets kube-root-ca.crt with the CA
// that verifies the API server; deleted, it comes back; changed, it is put back.
func TestEveryNamespaceGetsTheRootCA(t *testing.T) {
	c, e := start(t)
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		published(t, c, ns, nil)
	}
	c.MustKubectl("create", "namespace", "team-a")
	cm := published(t, c, "team-a", nil)

	// A client that trusts only the published certificate reaches the API server, as a pod's
	// client would (the admin's client certificate stands in for the pod's token).
	cfg := rest.CopyConfig(c.Config)
	cfg.TLSClientConfig.CAFile, cfg.TLSClientConfig.CAData = "", []byte(cm.Data["ca.crt"])
	if _, err := kubernetes.NewForConfigOrDie(cfg).Discovery().ServerVersion(); err != nil {
		t.Fatalf("verifying the API server with kube-root-ca.crt: %v", err)
	}

	// Deleted, it is made again.
	c.MustKubectl("-n", "team-a", "delete", "configmap", rootcacert.ConfigMapName)
	again := published(t, c, "team-a", cm)
	if again.UID == cm.UID {
		t.Errorf("the ConfigMap was not made again: uid %s", again.UID)
	}
	// Changed, it is put back: data (an added key goes too) and description.
	c.MustKubectl("-n", "team-a", "patch", "configmap", rootcacert.ConfigMapName, "--type=merge",
		"-p", `{"data":{"ca.crt":"not a certificate","extra":"x"}}`)
	cm = published(t, c, "team-a", again)
	c.MustKubectl("-n", "team-a", "annotate", "configmap", rootcacert.ConfigMapName, "kubernetes.io/description-")
	published(t, c, "team-a", cm)

	if st := e.Stats().Snapshot()[rootcacert.Name]; st.Errors != 0 {
		t.Errorf("%d reconciles failed", st.Errors)
	}
}

// A terminating namespace does not get the ConfigMap again.
func TestNotInTerminatingNamespaces(t *testing.T) {
	c, e := start(t)
	ctx := t.Context()
	c.MustKubectl("create", "namespace", "doomed")
	published(t, c, "doomed", nil)
	// Content with a finalizer keeps the namespace terminating.
	stuck := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "stuck", Finalizers: []string{"example.com/x"}}}
	if _, err := c.Client.CoreV1().ConfigMaps("doomed").Create(ctx, stuck, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Let the namespace go, so that nothing is left terminating.
		_, _ = c.Client.CoreV1().ConfigMaps("doomed").Patch(context.Background(), "stuck", "application/merge-patch+json",
			[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}) // best effort: the cluster goes with the test
	})
	c.MustKubectl("delete", "namespace", "doomed", "--wait=false")
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
	if err != nil || ns.Status.Phase != corev1.NamespaceTerminating {
		t.Fatalf("namespace: %v, %+v", err, ns.Status)
	}
	// Whoever deletes it (the namespace lifecycle or this test), the ConfigMap goes...
	err = c.Client.CoreV1().ConfigMaps("doomed").Delete(ctx, rootcacert.ConfigMapName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	c.Eventually(10*time.Second, func() (bool, string) {
		_, err := rootCA(t, c, "doomed")
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	cmKind, _ := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Resource: "configmaps"})
	h, err := c.Registry.History(ctx, cmKind, "doomed", rootcacert.ConfigMapName)
	if err != nil || len(h) == 0 {
		t.Fatalf("history: %v, %d records", err, len(h))
	}
	tombstone := h[len(h)-1].Seq
	// ... and once the publisher has reconciled the namespace for that deletion, it is still gone.
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.WaitReconciled(waitCtx, tombstone); err != nil {
		t.Fatal(err)
	}
	if cm, err := rootCA(t, c, "doomed"); !apierrors.IsNotFound(err) {
		t.Errorf("in a terminating namespace: %v, %v", cm, err)
	}
	if st := e.Stats().Snapshot()[rootcacert.Name]; st.Errors != 0 {
		t.Errorf("%d reconciles failed", st.Errors)
	}
}
