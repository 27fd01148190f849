package apiserver

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPartialMetadataKeepsMetadata: Table rows and metadata-only lists carry the object's
// metadata, which kubectl reads for -A (NAMESPACE), --show-labels and -L.
func TestPartialMetadataKeepsMetadata(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns", Labels: map[string]string{"app": "web"}}}
	p := partialMetadata(cm)
	if p.Name != "c" || p.Namespace != "ns" || p.Labels["app"] != "web" {
		t.Errorf("partial metadata %+v, want the config map's name, namespace and labels", p.ObjectMeta)
	}
	cm.Labels["app"] = "changed"
	if p.Labels["app"] != "web" {
		t.Error("partial metadata shares the object's labels map")
	}
}
