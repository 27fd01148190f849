package projections_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

func podEvent(t *testing.T, typ eventv1.ChangeType, name, node string, lbls map[string]string) *eventv1.ObjectChanged {
	t.Helper()
	k, _ := builtin.Catalog().ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: lbls}, Spec: corev1.PodSpec{NodeName: node}}
	data, err := kinds.Encode(pod, eventv1.Encoding_ENCODING_PROTOBUF)
	if err != nil {
		t.Fatal(err)
	}
	return &eventv1.ObjectChanged{
		Type: typ, Reason: "spec", Encoding: eventv1.Encoding_ENCODING_PROTOBUF, Object: data,
		Ref:    &eventv1.ObjectRef{Version: "v1", Kind: "Pod", Resource: "pods", Namespace: "default", Name: name},
		Labels: lbls, Fields: k.Fields(pod),
	}
}

func TestFollowListWait(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	s := projections.New(builtin.Catalog(), nil)
	go s.Run(ctx, l)

	if _, err := l.Create(ctx, podEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, "a", "n1", map[string]string{"app": "web", "tier": "fe"})); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Create(ctx, podEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, "b", "n2", map[string]string{"app": "web"})); err != nil {
		t.Fatal(err)
	}
	seq, err := l.Create(ctx, podEvent(t, eventv1.ChangeType_CHANGE_TYPE_ADDED, "c", "n1", map[string]string{"app": "db"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFor(ctx, seq); err != nil {
		t.Fatal(err)
	}
	pods := schema.GroupResource{Resource: "pods"}
	sel, _ := labels.Parse("app in (web), tier!=fe")
	got, _ := s.List(projections.Query{Resource: pods, Labels: sel})
	if len(got) != 1 || got[0].Key.Name != "b" {
		t.Fatalf("set-based selector: %v", got)
	}
	got, _ = s.List(projections.Query{Resource: pods, Namespace: "default", Fields: fields.OneTermEqualSelector("spec.nodeName", "n1")})
	if len(got) != 2 || got[0].Key.Name != "a" || got[1].Key.Name != "c" {
		t.Fatalf("field selector: %v", got)
	}
	obj, err := got[1].Decode()
	if err != nil || obj.(*corev1.Pod).ResourceVersion == "" {
		t.Fatalf("decode: %v", err)
	}
	del, err := l.Append(ctx, podEvent(t, eventv1.ChangeType_CHANGE_TYPE_DELETED, "c", "n1", nil), got[1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFor(ctx, del); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(eventlog.Key{Resource: "pods", Namespace: "default", Name: "c"}); ok {
		t.Fatal("deleted pod still in the store")
	}
}
