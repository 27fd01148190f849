package printers_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// TestStorageCells checks the rows of `kubectl get pv`, `pvc` and `sc` against what Kubernetes
// 1.32 prints.
func TestStorageCells(t *testing.T) {
	created := ago(5 * time.Minute)
	fs := corev1.PersistentVolumeFilesystem
	gi := resource.MustParse("1Gi")
	tests := []struct {
		name, group, kind string
		obj               runtime.Object
		want              []any
	}{
		{"bound pv", "", "PersistentVolume", &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "pvc-1234", CreationTimestamp: created},
			Spec: corev1.PersistentVolumeSpec{Capacity: corev1.ResourceList{corev1.ResourceStorage: gi},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany, corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete, StorageClassName: "local", VolumeMode: &fs,
				ClaimRef: &corev1.ObjectReference{Namespace: "default", Name: "data"}},
			Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound}},
			[]any{"pvc-1234", "1Gi", "RWO,RWX", "Delete", "Bound", "default/data", "local", "<unset>", "", "5m", "Filesystem"}},
		{"pending pvc", "", "PersistentVolumeClaim", &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default", CreationTimestamp: created},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("local"), VolumeMode: &fs,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: gi}}},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}},
			[]any{"data", "Pending", "", "", "", "local", "<unset>", "5m", "Filesystem"}},
		{"bound pvc", "", "PersistentVolumeClaim", &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default", CreationTimestamp: created},
			Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: "pvc-1234"},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Capacity: corev1.ResourceList{corev1.ResourceStorage: gi}}},
			[]any{"data", "Bound", "pvc-1234", "1Gi", "RWO", "", "<unset>", "5m", "<unset>"}},
		{"default class", "storage.k8s.io", "StorageClass", &storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{Name: "local", CreationTimestamp: created,
				Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
			Provisioner: "logplane.io/local", ReclaimPolicy: ptr.To(corev1.PersistentVolumeReclaimDelete),
			VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer), AllowVolumeExpansion: ptr.To(true)},
			[]any{"local (default)", "logplane.io/local", "Delete", "WaitForFirstConsumer", true, "5m"}},
		{"bare class", "storage.k8s.io", "StorageClass", &storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{Name: "slow", CreationTimestamp: created}, Provisioner: "example.com/nfs"},
			[]any{"slow", "example.com/nfs", "Delete", "Immediate", false, "5m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, cellsOf(t, tt.group, tt.kind, tt.obj)); diff != "" {
				t.Errorf("cells (-want +got):\n%s", diff)
			}
		})
	}
}
