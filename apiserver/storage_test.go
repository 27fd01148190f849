package apiserver_test

import (
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/logplane/logplane/admission"
	"github.com/logplane/logplane/apiserver/apiservertest"
)

// TestStorageKindsWithKubectl: the cluster starts with the default StorageClass `local`, which
// `kubectl get sc` marks "(default)"; a claim that names no class gets it (DefaultStorageClass);
// claims and volumes Kubernetes rejects get its 422 and messages and are not written; a claim's
// spec is immutable but for growing a bound claim, which its class must allow
// (PersistentVolumeClaimResize: 403); pv, pvc and sc are kubectl's short names.
func TestStorageKindsWithKubectl(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{Admission: &admission.Config{}})
	cs := kubernetes.NewForConfigOrDie(s.Config)

	out := must(t, s, "", []string{"NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"}, "get", "sc")
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) != 7 || strings.Join(f[:6], " ") != "local (default) logplane.io/local Delete WaitForFirstConsumer true" {
		t.Fatalf("kubectl get sc:\n%s", out)
	}

	must(t, s, `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
`, []string{"persistentvolumeclaim/data created"}, "apply", "-f", "-")
	out = must(t, s, "", []string{"NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE"}, "get", "pvc")
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) != 5 || f[0] != "data" || f[1] != "Pending" || f[2] != "local" || f[3] != "<unset>" {
		t.Fatalf("kubectl get pvc:\n%s", out)
	}

	fails(t, s, `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: bad}
spec:
  resources: {requests: {storage: "0"}}
`, []string{`The PersistentVolumeClaim "bad" is invalid`, "spec.accessModes: Required value: at least 1 access mode is required",
		`spec.resources[storage]: Invalid value: "0": must be greater than zero`}, "apply", "-f", "-")
	fails(t, s, `apiVersion: v1
kind: PersistentVolume
metadata: {name: bad}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  local: {path: /mnt/disks/a}
`, []string{`The PersistentVolume "bad" is invalid: spec.nodeAffinity: Required value: Local volume requires node affinity`}, "apply", "-f", "-")
	fails(t, s, `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: bad}
provisioner: ""
reclaimPolicy: Recycle
`, []string{`The StorageClass "bad" is invalid`, "provisioner: Required value", `reclaimPolicy: Unsupported value: "Recycle"`}, "apply", "-f", "-")
	for _, r := range []string{"pvc/bad", "pv/bad", "sc/bad"} {
		fails(t, s, "", []string{"NotFound"}, "get", r)
	}

	must(t, s, `apiVersion: v1
kind: PersistentVolume
metadata: {name: disk1}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  hostPath: {path: /srv/disk1}
`, []string{"persistentvolume/disk1 created"}, "apply", "-f", "-")
	out = must(t, s, "", []string{"RECLAIM POLICY"}, "get", "pv", "disk1")
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 6 || strings.Join(f[:5], " ") != "disk1 2Gi RWO,ROX Retain Pending" {
		t.Fatalf("kubectl get pv:\n%s", out)
	}
	fails(t, s, "", []string{`spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation`},
		"patch", "pv", "disk1", "-p", `{"spec":{"hostPath":{"path":"/srv/other"}}}`)

	// Immutable spec: a pending claim cannot change or grow.
	fails(t, s, "", []string{"spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"},
		"patch", "pvc", "data", "-p", `{"spec":{"accessModes":["ReadWriteMany"]}}`)
	// A bound claim grows when its class allows it, never shrinks, and not at all in a class
	// that does not allow expansion.
	must(t, s, `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fixed}
provisioner: example.com/fixed
`, nil, "apply", "-f", "-")
	bind := func(name, class string) {
		t.Helper()
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
		pvc, err := cs.CoreV1().PersistentVolumeClaims("default").Create(t.Context(), pvc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvc.Status.Phase = corev1.ClaimBound
		if _, err := cs.CoreV1().PersistentVolumeClaims("default").UpdateStatus(t.Context(), pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind("grows", "local")
	bind("stays", "fixed")
	must(t, s, "", []string{"persistentvolumeclaim/grows patched"}, "patch", "pvc", "grows", "-p", `{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}`)
	fails(t, s, "", []string{"spec.resources.requests.storage: Forbidden: field can not be less than previous value"},
		"patch", "pvc", "grows", "-p", `{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}`)
	fails(t, s, "", []string{`persistentvolumeclaims "stays" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize`},
		"patch", "pvc", "stays", "-p", `{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}`)
	_, err := cs.CoreV1().PersistentVolumeClaims("default").Patch(t.Context(), "stays", "application/merge-patch+json",
		[]byte(`{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) || err.(apierrors.APIStatus).Status().Code != http.StatusForbidden {
		t.Fatalf("growing a claim of a class without expansion: %v, want 403", err)
	}
}
