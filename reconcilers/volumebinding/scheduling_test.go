package volumebinding_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

func podWithClaim(name, claim string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  containers: [{name: c, image: busybox, volumeMounts: [{name: data, mountPath: /data}]}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: %s}}]
`, name, claim)
}

func podNode(t *testing.T, c *reconcilerstest.Cluster, name string) string {
	t.Helper()
	p, err := c.Client.CoreV1().Pods("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return p.Spec.NodeName
}

// The scheduler treats claims as Kubernetes' VolumeBinding plug-in: a pod whose claim is
// missing is unschedulable with Kubernetes' message; a pod whose WaitForFirstConsumer claim a
// static local volume of one node fits goes to that node, the volume is pre-bound to the claim
// and the binder binds it; a claim to provision gets the chosen node as its selected-node; a
// pod whose bound volume has an affinity to one node goes there.
func TestSchedulingWithClaims(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 3})
	c.MustApply(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: manual}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: dynamic}
provisioner: logplane.io/local
volumeBindingMode: WaitForFirstConsumer
`)
	c.MustApply(podWithClaim("orphan", "nope"))
	c.Eventually(20*time.Second, hasEvent(t, c, "orphan", "FailedScheduling", `0/3 nodes are available: persistentvolumeclaim "nope" not found.`))

	c.MustApply(`apiVersion: v1
kind: PersistentVolume
metadata: {name: disk-on-2}
spec:
  storageClassName: manual
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  local: {path: /mnt/disk}
  nodeAffinity:
    required:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-2]}]}]
`)
	c.MustApply(strings.Replace(pvc("static", "1Gi", ""), `storageClassName: ""`, "storageClassName: manual", 1))
	c.MustApply(podWithClaim("on-static", "static"))
	c.Eventually(20*time.Second, func() (bool, string) {
		n := podNode(t, c, "on-static")
		return n == "node-2", "on-static is on " + n
	})
	waitClaim(t, c, "static", "Bound", "disk-on-2")
	// Another pod of the bound claim goes where its volume is.
	c.MustApply(podWithClaim("again", "static"))
	c.Eventually(20*time.Second, func() (bool, string) {
		n := podNode(t, c, "again")
		return n == "node-2", "again is on " + n
	})
	// A second claim of the class finds no volume: the pod fits nowhere.
	c.MustApply(strings.Replace(pvc("static2", "1Gi", ""), `storageClassName: ""`, "storageClassName: manual", 1))
	c.MustApply(podWithClaim("no-room", "static2"))
	c.Eventually(20*time.Second, hasEvent(t, c, "no-room", "FailedScheduling", "3 node(s) didn't find available persistent volumes to bind"))

	c.MustApply(strings.Replace(pvc("fresh", "1Gi", ""), `storageClassName: ""`, "storageClassName: dynamic", 1))
	c.MustApply(podWithClaim("on-fresh", "fresh"))
	c.Eventually(20*time.Second, func() (bool, string) {
		n := podNode(t, c, "on-fresh")
		got, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(t.Context(), "fresh", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		sel := got.Annotations["volume.kubernetes.io/selected-node"]
		return n != "" && sel == n, fmt.Sprintf("on-fresh is on %q, the claim's selected node is %q", n, sel)
	})
	// The simulated node's provisioner makes the volume, the binder binds it, the pod runs.
	got, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(t.Context(), "fresh", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitClaim(t, c, "fresh", "Bound", "pvc-"+string(got.UID))
	c.Eventually(30*time.Second, func() (bool, string) {
		p, err := c.Client.CoreV1().Pods("default").Get(t.Context(), "on-fresh", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == "Running", "on-fresh is " + string(p.Status.Phase)
	})
}
