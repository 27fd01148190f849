package statefulset

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testSet(replicas int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "set-uid"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: "svc",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}},
					Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}, {Name: "tmp"}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}},
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](2)}},
		},
	}
}

// A pod gets its ordinal's name, identity, and the claims of the templates in place of the
// template's volumes of the same name.
func TestNewStatefulSetPod(t *testing.T) {
	set := testSet(3)
	pod := newStatefulSetPod(set, 1)
	if pod.Name != "web-1" || pod.Namespace != "ns" || pod.Spec.Hostname != "web-1" || pod.Spec.Subdomain != "svc" ||
		pod.Labels[appsv1.StatefulSetPodNameLabel] != "web-1" || pod.Labels[appsv1.PodIndexLabel] != "1" || pod.Labels["app"] != "web" {
		t.Fatalf("pod %+v", pod.ObjectMeta)
	}
	if len(pod.Spec.Volumes) != 2 || pod.Spec.Volumes[0].PersistentVolumeClaim == nil ||
		pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "data-web-1" || pod.Spec.Volumes[1].Name != "tmp" {
		t.Fatalf("volumes %+v", pod.Spec.Volumes)
	}
	if !identityMatches(set, pod) || !storageMatches(set, pod) {
		t.Fatal("a new pod does not match its set")
	}
	claims := getPersistentVolumeClaims(set, pod)
	if c := claims["data"]; c.Name != "data-web-1" || c.Namespace != "ns" || c.Labels["app"] != "web" {
		t.Fatalf("claim %+v", c.ObjectMeta)
	}
	if set.Spec.VolumeClaimTemplates[0].Labels != nil {
		t.Fatal("the set's template was changed")
	}
}

// Below the partition a new pod is made at the current revision, at or above it at the update
// revision.
func TestNewVersionedPodPartition(t *testing.T) {
	cur, upd := testSet(3), testSet(3)
	upd.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	for ord, want := range map[int]string{0: "nginx:1", 1: "nginx:1", 2: "nginx:2"} {
		p := newVersionedStatefulSetPod(cur, upd, "web-a", "web-b", ord)
		if p.Spec.Containers[0].Image != want {
			t.Errorf("ordinal %d: %s, want %s", ord, p.Spec.Containers[0].Image, want)
		}
	}
}

// The revision's data is the template as kubectl computes it, and applying it restores it.
func TestRevisionRoundTrip(t *testing.T) {
	set := testSet(3)
	rev, err := newRevision(set, 1, ptr.To[int32](0))
	if err != nil {
		t.Fatal(err)
	}
	other := testSet(3)
	other.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	restored, err := ApplyRevision(other, rev)
	if err != nil {
		t.Fatal(err)
	}
	if restored.Spec.Template.Spec.Containers[0].Image != "nginx:1" || len(restored.Spec.Template.Spec.Volumes) != 2 {
		t.Fatalf("restored %+v", restored.Spec.Template.Spec)
	}
	again, _ := newRevision(testSet(3), 2, ptr.To[int32](0))
	if again.Name != rev.Name {
		t.Fatalf("the same template hashed to %s and %s", rev.Name, again.Name)
	}
}

// The retention policy's owners: the set while the ordinal is kept (WhenDeleted=Delete), the
// pod once it is scaled away (WhenScaled=Delete).
func TestClaimOwners(t *testing.T) {
	R, D := appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	for _, tc := range []struct {
		deleted, scaled     appsv1.PersistentVolumeClaimRetentionPolicyType
		ordinal             int
		wantSet, wantPodRef bool
	}{
		{R, R, 0, false, false}, {R, R, 5, false, false},
		{D, R, 0, true, false}, {D, R, 5, true, false},
		{R, D, 0, false, false}, {R, D, 5, false, true},
		{D, D, 0, true, false}, {D, D, 5, false, true},
	} {
		set := testSet(3)
		set.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: tc.deleted, WhenScaled: tc.scaled}
		gotSet, gotPod := claimOwners(set, newStatefulSetPod(set, tc.ordinal))
		if gotSet != tc.wantSet || gotPod != tc.wantPodRef {
			t.Errorf("whenDeleted %s whenScaled %s ordinal %d: set %v pod %v", tc.deleted, tc.scaled, tc.ordinal, gotSet, gotPod)
		}
	}
}
