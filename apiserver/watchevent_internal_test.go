package apiserver

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
)

// TestWatchEventFraming checks the one watch event encoder against apimachinery's streaming
// encoder with the framers Kubernetes' watch server uses: the same bytes, in JSON and protobuf.
func TestWatchEventFraming(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default", ResourceVersion: "7"}, Data: map[string]string{"a": "b\n"}}
	cm.Kind, cm.APIVersion = "ConfigMap", "v1"
	for _, proto := range []bool{false, true} {
		var obj bytes.Buffer
		var want bytes.Buffer
		var enc streaming.Encoder
		if proto {
			if err := protoSerializer.Encode(cm, &obj); err != nil {
				t.Fatal(err)
			}
			enc = streaming.NewEncoder(protobuf.LengthDelimitedFramer.NewFrameWriter(&want), protoRaw)
		} else {
			if err := jsonSerializer.Encode(cm, &obj); err != nil {
				t.Fatal(err)
			}
			enc = streaming.NewEncoder(json.Framer.NewFrameWriter(&want), jsonSerializer)
		}
		raw := obj.Bytes()
		if !proto {
			raw = bytes.TrimRight(raw, "\n")
		}
		if err := enc.Encode(&metav1.WatchEvent{Type: "MODIFIED", Object: runtime.RawExtension{Raw: raw}}); err != nil {
			t.Fatal(err)
		}
		got, err := watchEvent("MODIFIED", raw, proto)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("protobuf=%t:\n got  %q\n want %q", proto, got, want.Bytes())
		}
	}
}
