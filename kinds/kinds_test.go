package kinds

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

func TestBuiltinCatalog(t *testing.T) {
	c, err := NewCatalog(builtinKinds()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range c.All() {
		if k.New() == nil || k.NewList() == nil {
			t.Errorf("%v: no object or list", k.GroupVersionKind)
		}
	}
	if _, ok := c.ByResource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}); !ok {
		t.Error("deployments.apps not found")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	k, _ := Builtin().ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "default", Labels: map[string]string{"app": "nginx"}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
	}
	for _, enc := range []eventv1.Encoding{eventv1.Encoding_ENCODING_PROTOBUF, eventv1.Encoding_ENCODING_JSON} {
		data, err := Encode(pod, enc)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := k.Decode(enc, data)
		if err != nil {
			t.Fatal(err)
		}
		got := obj.(*corev1.Pod)
		if got.Name != "nginx" || got.Spec.Containers[0].Image != "nginx:1.27" || got.Kind != "Pod" || got.APIVersion != "v1" {
			t.Errorf("%v: round trip gave %+v", enc, got)
		}
		if f := k.Fields(got); f["spec.nodeName"] != "n1" || f["metadata.namespace"] != "default" {
			t.Errorf("fields %v", f)
		}
	}
}
