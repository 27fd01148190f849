package validation_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/validation"
)

func claim(size string) *corev1.PersistentVolumeClaim {
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default", ResourceVersion: "1"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("local"),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}}}
	defaults.PersistentVolumeClaim(pvc)
	return pvc
}

func volume(mut func(*corev1.PersistentVolume)) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv1", ResourceVersion: "1"},
		Spec: corev1.PersistentVolumeSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/data/pv1"}}}}
	if mut != nil {
		mut(pv)
	}
	defaults.PersistentVolume(pv)
	return pv
}

// wantErrs checks that errs holds exactly the messages want (each a substring of one error).
func wantErrs(t *testing.T, what string, errs []string, want ...string) {
	t.Helper()
	if len(errs) != len(want) {
		t.Errorf("%s: got %d errors %q, want %d %q", what, len(errs), errs, len(want), want)
		return
	}
	for i := range want {
		if !strings.Contains(errs[i], want[i]) {
			t.Errorf("%s: error %d is %q, want it to contain %q", what, i, errs[i], want[i])
		}
	}
}

func strs[E interface{ Error() string }](errs []E) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestPersistentVolume(t *testing.T) {
	wantErrs(t, "valid hostPath", strs(validation.PersistentVolume(volume(nil))))
	wantErrs(t, "no source", strs(validation.PersistentVolume(volume(func(pv *corev1.PersistentVolume) { pv.Spec.HostPath = nil }))),
		"spec: Required value: must specify a volume type")
	wantErrs(t, "local without affinity", strs(validation.PersistentVolume(volume(func(pv *corev1.PersistentVolume) {
		pv.Spec.HostPath = nil
		pv.Spec.Local = &corev1.LocalVolumeSource{Path: "/mnt/disks/a"}
	}))), "spec.nodeAffinity: Required value: Local volume requires node affinity")
	wantErrs(t, "two sources", strs(validation.PersistentVolume(volume(func(pv *corev1.PersistentVolume) {
		pv.Spec.Local = &corev1.LocalVolumeSource{Path: "/mnt/disks/a"}
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}}}}
	}))), "spec.local: Forbidden: may not specify more than 1 volume type")
	wantErrs(t, "bad capacity and modes", strs(validation.PersistentVolume(volume(func(pv *corev1.PersistentVolume) {
		pv.Spec.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("0")}
		pv.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{"ReadSometimes"}
		pv.Spec.HostPath.Path = "/data/../etc"
	}))), `spec.accessModes: Unsupported value: "ReadSometimes"`, `spec.capacity[storage]: Invalid value: "0": must be greater than zero`,
		`spec.hostPath.path: Invalid value: "/data/../etc": must not contain '..'`)

	old := volume(nil)
	moved := volume(func(pv *corev1.PersistentVolume) { pv.Spec.HostPath.Path = "/data/other" })
	wantErrs(t, "source changed", strs(validation.PersistentVolumeUpdate(moved, old)),
		"spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation")
	bound := volume(func(pv *corev1.PersistentVolume) {
		pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "default", Name: "data"}
	})
	wantErrs(t, "claimRef set", strs(validation.PersistentVolumeUpdate(bound, old)))
}

func TestPersistentVolumeClaim(t *testing.T) {
	wantErrs(t, "valid", strs(validation.PersistentVolumeClaim(claim("1Gi"))))
	c := claim("1Gi")
	c.Spec.AccessModes = nil
	delete(c.Spec.Resources.Requests, corev1.ResourceStorage)
	wantErrs(t, "empty", strs(validation.PersistentVolumeClaim(c)),
		"spec.accessModes: Required value: at least 1 access mode is required", "spec.resources[storage]: Required value")
	c = claim("1Gi")
	c.Spec.AccessModes = append(c.Spec.AccessModes, corev1.ReadWriteOncePod)
	wantErrs(t, "rwop with others", strs(validation.PersistentVolumeClaim(c)),
		"spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes")

	old := claim("1Gi")
	changed := claim("1Gi")
	changed.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	wantErrs(t, "access modes changed", strs(validation.PersistentVolumeClaimUpdate(changed, old)),
		"spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims")
	grown := claim("2Gi")
	wantErrs(t, "grown while pending", strs(validation.PersistentVolumeClaimUpdate(grown, old)),
		"spec: Forbidden: spec is immutable after creation except resources.requests")
	grown.Status.Phase = corev1.ClaimBound
	wantErrs(t, "grown while bound", strs(validation.PersistentVolumeClaimUpdate(grown, old)))
	shrunk := claim("512Mi")
	shrunk.Status.Phase = corev1.ClaimBound
	wantErrs(t, "shrunk", strs(validation.PersistentVolumeClaimUpdate(shrunk, old)),
		"spec.resources.requests.storage: Forbidden: field can not be less than previous value")
	named := claim("1Gi")
	named.Spec.VolumeName = "pv1"
	wantErrs(t, "volumeName set once", strs(validation.PersistentVolumeClaimUpdate(named, old)))
	renamed := claim("1Gi")
	renamed.Spec.VolumeName = "pv2"
	wantErrs(t, "volumeName changed", strs(validation.PersistentVolumeClaimUpdate(renamed, named)), "spec: Forbidden")
}

func TestStorageClass(t *testing.T) {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local", ResourceVersion: "1"}, Provisioner: "logplane.io/local"}
	defaults.StorageClass(sc)
	wantErrs(t, "valid", strs(validation.StorageClass(sc)))
	bad := sc.DeepCopy()
	bad.Provisioner = ""
	bad.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimRecycle)
	bad.VolumeBindingMode = ptr.To(storagev1.VolumeBindingMode("Later"))
	wantErrs(t, "invalid", strs(validation.StorageClass(bad)), "provisioner: Required value",
		`reclaimPolicy: Unsupported value: "Recycle": supported values: "Delete", "Retain"`,
		`volumeBindingMode: Unsupported value: "Later": supported values: "Immediate", "WaitForFirstConsumer"`)
	changed := sc.DeepCopy()
	changed.Provisioner = "example.com/other"
	changed.Parameters = map[string]string{"type": "ssd"}
	changed.AllowVolumeExpansion = ptr.To(true)
	wantErrs(t, "update", strs(validation.StorageClassUpdate(changed, sc)),
		"parameters: Forbidden: updates to parameters are forbidden.", "provisioner: Forbidden: updates to provisioner are forbidden.")
}
