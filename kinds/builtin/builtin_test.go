package builtin_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/randfill"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

func TestBuiltinCatalog(t *testing.T) {
	c, err := kinds.NewCatalog(builtin.Kinds()...)
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
	k, _ := builtin.Catalog().ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "default", Labels: map[string]string{"app": "nginx"}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
	}
	for _, enc := range []eventv1.Encoding{eventv1.Encoding_ENCODING_PROTOBUF, eventv1.Encoding_ENCODING_JSON} {
		data, err := kinds.Encode(pod, enc)
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

// TestEventConversionRoundTrips: a core Event converted to events.k8s.io/v1 and back (and the
// other way) is unchanged, field by field, for events filled at random: no field is lost.
func TestEventConversionRoundTrips(t *testing.T) {
	c := builtin.Catalog()
	v1, ok := c.ByKind(schema.GroupVersionKind{Group: "events.k8s.io", Version: "v1", Kind: "Event"})
	if !ok || v1.Stored().GroupVersionKind != (schema.GroupVersionKind{Version: "v1", Kind: "Event"}) {
		t.Fatalf("events.k8s.io/v1 Events are not stored as core Events: %v", v1)
	}
	if _, ok := c.ByGroupResource(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}); ok {
		t.Error("events.events.k8s.io found as a stored resource")
	}
	f := randfill.NewWithSeed(1).NilChance(0.2)
	for i := 0; i < 200; i++ {
		var core corev1.Event
		f.Fill(&core)
		core.TypeMeta = metav1.TypeMeta{Kind: "Event", APIVersion: "v1"}
		back := v1.ToStored(v1.FromStored(core.DeepCopy()))
		if !apiequality.Semantic.DeepEqual(&core, back) {
			t.Fatalf("core → events.k8s.io → core changed the event:\n%+v\n%+v", &core, back)
		}
		var ev eventsv1.Event
		f.Fill(&ev)
		ev.TypeMeta = metav1.TypeMeta{Kind: "Event", APIVersion: "events.k8s.io/v1"}
		evBack := v1.FromStored(v1.ToStored(ev.DeepCopy()))
		if !apiequality.Semantic.DeepEqual(&ev, evBack) {
			t.Fatalf("events.k8s.io → core → events.k8s.io changed the event:\n%+v\n%+v", &ev, evBack)
		}
	}
	// Decoding stored bytes as the view converts them.
	data, err := kinds.Encode(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e"}, Message: "m", InvolvedObject: corev1.ObjectReference{Name: "p"}},
		eventv1.Encoding_ENCODING_PROTOBUF)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := v1.Decode(eventv1.Encoding_ENCODING_PROTOBUF, data)
	if e, ok := obj.(*eventsv1.Event); err != nil || !ok || e.Note != "m" || e.Regarding.Name != "p" || e.APIVersion != "events.k8s.io/v1" {
		t.Fatalf("decode as events.k8s.io: %v %#v", err, obj)
	}
	for label, want := range map[string]string{"regarding.name": "involvedObject.name", "reportingController": "reportingComponent", "metadata.name": "metadata.name"} {
		if got, ok := v1.SelectableField(label); !ok || got != want {
			t.Errorf("field %s selects %q %v, want %q", label, got, ok, want)
		}
	}
	if _, ok := v1.SelectableField("involvedObject.name"); ok {
		t.Error("events.k8s.io selects on involvedObject.name")
	}
}

// TestEveryKindHasItsStrategy: every built-in kind validates creates and updates (status
// updates too, with a status subresource), prints its own columns and is stored as protobuf.
// A kind added without validation would be served unchecked.
func TestEveryKindHasItsStrategy(t *testing.T) {
	for _, k := range builtin.Catalog().All() {
		st := k.Strategy
		if st.Validate == nil || st.ValidateUpdate == nil || st.Table == nil {
			t.Errorf("%v: Validate %v, ValidateUpdate %v, Table %v", k.GroupVersionKind, st.Validate != nil, st.ValidateUpdate != nil, st.Table != nil)
		}
		if k.HasSubresource("status") && st.ValidateStatusUpdate == nil {
			t.Errorf("%v has a status subresource but no ValidateStatusUpdate", k.GroupVersionKind)
		}
		if k.Unstructured || k.Encoding() != eventv1.Encoding_ENCODING_PROTOBUF {
			t.Errorf("%v is not stored as Kubernetes protobuf", k.GroupVersionKind)
		}
	}
}
