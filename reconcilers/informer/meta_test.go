package informer

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// readMeta reads from either encoding what a full decode gives.
func TestReadMeta(t *testing.T) {
	yes := true
	now := metav1.NewTime(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u-1", Labels: map[string]string{"app": "x"},
			Annotations: map[string]string{"a": "b"}, DeletionTimestamp: &now, Finalizers: []string{"f1", "f2"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "u-0", Controller: &yes, BlockOwnerDeletion: &yes},
				{APIVersion: "v1", Kind: "ConfigMap", Name: "cm", UID: "u-2"}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1",
				FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{}}`)}}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
	for _, enc := range []eventv1.Encoding{eventv1.Encoding_ENCODING_PROTOBUF, eventv1.Encoding_ENCODING_JSON} {
		data, err := kinds.Encode(pod, enc)
		if err != nil {
			t.Fatal(err)
		}
		m, err := readMeta(enc, data)
		if err != nil {
			t.Fatalf("%v: %v", enc, err)
		}
		want := Meta{UID: "u-1", Owners: pod.OwnerReferences, Finalizers: pod.Finalizers, Deleting: true}
		if !apiequality.Semantic.DeepEqual(m, want) {
			t.Errorf("%v: got %+v, want %+v", enc, m, want)
		}
		if c := m.Controller(); c == nil || c.UID != "u-0" {
			t.Errorf("%v: controller %+v", enc, c)
		}
	}
	if _, err := readMeta(eventv1.Encoding_ENCODING_PROTOBUF, []byte{0x0a, 0xff}); err == nil {
		t.Error("a truncated message reads without error")
	}
}
