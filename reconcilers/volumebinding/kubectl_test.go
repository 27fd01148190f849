package volumebinding_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/volumebinding"
)

func pv(name, size, policy, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: %s, labels: {size: "%s"}}
spec:
  capacity: {storage: %s}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: %s
  hostPath: {path: /srv/%s}
%s`, name, size, size, policy, name, extra)
}

func pvc(name, size, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: %s}}
%s`, name, size, extra)
}

func claimPhase(t *testing.T, c *reconcilerstest.Cluster, name string) (string, string) {
	t.Helper()
	got, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		return "", err.Error()
	}
	return string(got.Status.Phase), got.Spec.VolumeName
}

func volumePhase(t *testing.T, c *reconcilerstest.Cluster, name string) string {
	t.Helper()
	got, err := c.Client.CoreV1().PersistentVolumes().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	return string(got.Status.Phase)
}

func waitClaim(t *testing.T, c *reconcilerstest.Cluster, name, phase, volume string) {
	t.Helper()
	c.Eventually(20*time.Second, func() (bool, string) {
		p, v := claimPhase(t, c, name)
		return p == phase && v == volume, fmt.Sprintf("claim %s is %s on %q, want %s on %q", name, p, v, phase, volume)
	})
}

func waitVolume(t *testing.T, c *reconcilerstest.Cluster, name, phase string) {
	t.Helper()
	c.Eventually(20*time.Second, func() (bool, string) {
		p := volumePhase(t, c, name)
		return p == phase, fmt.Sprintf("volume %s is %s, want %s", name, p, phase)
	})
}

func hasEvent(t *testing.T, c *reconcilerstest.Cluster, name, reason, message string) func() (bool, string) {
	return func() (bool, string) {
		evs, err := c.Client.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Message, message) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, fmt.Sprintf("%s has no %s event %q; has %q", name, reason, message, seen)
	}
}

// The binder binds a claim to the smallest volume that fits (class, size, access modes,
// selector), to a volume pre-bound to it by claimRef whatever its size, and to the volume it
// names; the phases follow (`kubectl get pv,pvc`); a claim nothing fits stays Pending with
// Kubernetes' event; deleting a claim releases a Retain volume and fails a Delete volume that no
// provisioner owns.
func TestBinding(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true})
	c.MustApply(pv("small", "1Gi", "Retain", ""))
	c.MustApply(pv("medium", "2Gi", "Retain", ""))
	c.MustApply(pv("large", "10Gi", "Delete", ""))
	c.MustApply(pv("reserved", "20Gi", "Retain", "  claimRef: {namespace: default, name: picky}\n"))
	for _, v := range []string{"small", "medium", "large"} {
		waitVolume(t, c, v, "Available")
	}

	// The smallest that fits.
	c.MustApply(pvc("data", "1500Mi", ""))
	waitClaim(t, c, "data", "Bound", "medium")
	waitVolume(t, c, "medium", "Bound")
	out := c.MustKubectl("get", "pvc", "data")
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 5 || strings.Join(f[:5], " ") != "data Bound medium 2Gi RWO" {
		t.Errorf("kubectl get pvc:\n%s", out)
	}
	out = c.MustKubectl("get", "pv", "medium")
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 6 || strings.Join(f[:6], " ") != "medium 2Gi RWO Retain Bound default/data" {
		t.Errorf("kubectl get pv:\n%s", out)
	}
	// Pre-bound by claimRef, though larger than needed.
	c.MustApply(pvc("picky", "1Gi", ""))
	waitClaim(t, c, "picky", "Bound", "reserved")
	// A selector.
	c.MustApply(pvc("labelled", "1Gi", "  selector: {matchLabels: {size: 10Gi}}\n"))
	waitClaim(t, c, "labelled", "Bound", "large")
	// By volumeName.
	c.MustApply(pvc("named", "1Gi", "  volumeName: small\n"))
	waitClaim(t, c, "named", "Bound", "small")
	// Nothing fits.
	c.MustApply(pvc("huge", "100Gi", ""))
	c.Eventually(20*time.Second, hasEvent(t, c, "huge", volumebinding.ReasonFailedBinding, "no persistent volumes available for this claim and no storage class is set"))
	if p, v := claimPhase(t, c, "huge"); p != "Pending" || v != "" {
		t.Errorf("huge is %s on %q", p, v)
	}
	// A volume that fits appears: the claim binds.
	c.MustApply(pv("jumbo", "200Gi", "Retain", ""))
	waitClaim(t, c, "huge", "Bound", "jumbo")

	// Deleting claims: Retain keeps the volume Released; Delete without a provisioner fails.
	c.MustKubectl("delete", "pvc", "data", "labelled")
	waitVolume(t, c, "medium", "Released")
	waitVolume(t, c, "large", "Failed")
	c.Eventually(20*time.Second, func() (bool, string) {
		got, err := c.Client.CoreV1().PersistentVolumes().Get(t.Context(), "large", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(got.Status.Message, "no deletable volume plugin matched"), got.Status.Message
	})
	// A released volume keeps its claimRef: a new claim of the same name does not get it.
	c.MustApply(pvc("data", "1500Mi", ""))
	c.Eventually(20*time.Second, hasEvent(t, c, "data", volumebinding.ReasonFailedBinding, "no persistent volumes available"))
	c.WaitReconciled()
	if p, v := claimPhase(t, c, "data"); p != "Pending" || v != "" {
		t.Errorf("a new claim data is %s on %q, want Pending: the released volume is not reused", p, v)
	}
	// A bound claim whose volume is deleted is Lost.
	if err := c.Client.CoreV1().PersistentVolumes().Delete(t.Context(), "small", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitClaim(t, c, "named", "Lost", "small")
	c.Eventually(20*time.Second, hasEvent(t, c, "named", volumebinding.ReasonClaimLost, "Bound claim has lost its PersistentVolume. Data on the volume is lost!"))
}

// A claim of a WaitForFirstConsumer class is not bound by the binder, even to a volume that
// fits: it waits for the scheduler, with Kubernetes' event; once the scheduler picks a node,
// the claim is handed to its class's provisioner.
func TestWaitForFirstConsumer(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true})
	c.MustApply(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: later}
provisioner: logplane.io/local
volumeBindingMode: WaitForFirstConsumer
`)
	c.MustApply(strings.Replace(pv("fits", "1Gi", "Retain", ""), "spec:\n", "spec:\n  storageClassName: later\n", 1))
	waitVolume(t, c, "fits", "Available")
	c.MustApply(strings.Replace(pvc("wait", "1Gi", ""), `storageClassName: ""`, "storageClassName: later", 1))
	c.Eventually(20*time.Second, hasEvent(t, c, "wait", volumebinding.ReasonWaitForFirstConsumer, "waiting for first consumer to be created before binding"))
	c.WaitReconciled()
	if p, v := claimPhase(t, c, "wait"); p != "Pending" || v != "" {
		t.Fatalf("wait is %s on %q before any consumer", p, v)
	}
	c.MustKubectl("annotate", "pvc", "wait", "volume.kubernetes.io/selected-node=node-1")
	c.Eventually(20*time.Second, hasEvent(t, c, "wait", volumebinding.ReasonExternalProvisioning,
		"Waiting for a volume to be created either by the external provisioner 'logplane.io/local' or manually by the system administrator."))
	c.Eventually(20*time.Second, func() (bool, string) {
		got, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(t.Context(), "wait", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return got.Annotations["volume.kubernetes.io/storage-provisioner"] == "logplane.io/local", fmt.Sprint(got.Annotations)
	})
	// A provisioned volume, pre-bound to the claim by UID, is bound.
	got, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(t.Context(), "wait", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.MustApply(strings.Replace(pv("pvc-"+string(got.UID), "1Gi", "Delete",
		fmt.Sprintf("  claimRef: {namespace: default, name: wait, uid: %s}\n", got.UID)), "spec:\n", "spec:\n  storageClassName: later\n", 1))
	waitClaim(t, c, "wait", "Bound", "pvc-"+string(got.UID))
	if p := volumePhase(t, c, "fits"); p != string(corev1.VolumeAvailable) {
		t.Errorf("fits is %s", p)
	}
}

// A claim that a pod uses, deleted, stays Terminating (its kubernetes.io/pvc-protection
// finalizer, which admission puts on every claim) until the pod is gone, as with Kubernetes'
// pvc-protection controller.
func TestClaimInUseProtection(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true})
	c.MustApply(strings.Replace(pvc("used", "1Gi", ""), "metadata: {name: used}", "metadata: {name: used, finalizers: [kubernetes.io/pvc-protection]}", 1))
	c.MustApply(`apiVersion: v1
kind: Pod
metadata: {name: user}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: used}}]
`)
	c.MustKubectl("delete", "pvc", "used", "--wait=false")
	c.WaitReconciled()
	out := c.MustKubectl("get", "pvc", "used")
	if !strings.Contains(out, "Terminating") {
		t.Fatalf("a claim in use, deleted:\n%s", out)
	}
	c.MustKubectl("delete", "pod", "user", "--grace-period=0", "--force")
	c.Eventually(20*time.Second, func() (bool, string) {
		_, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(t.Context(), "used", metav1.GetOptions{})
		return err != nil && strings.Contains(err.Error(), "not found"), fmt.Sprint(err)
	})
}
