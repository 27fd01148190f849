package eventlog

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

func randomEvent(rng *rand.Rand) *eventv1.ObjectChanged {
	s := func() string {
		if rng.IntN(4) == 0 {
			return ""
		}
		return strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(12)) + "é"
	}
	ev := &eventv1.ObjectChanged{
		Type:     eventv1.ChangeType(rng.IntN(5) - 1),
		Reason:   s(),
		Cause:    rng.Uint64(),
		Encoding: eventv1.Encoding(rng.IntN(3)),
	}
	if rng.IntN(3) > 0 {
		ev.Actor = &eventv1.Actor{Kind: eventv1.ActorKind(rng.IntN(5)), Name: s()}
	}
	if rng.IntN(3) > 0 {
		ev.Time = &timestamppb.Timestamp{Seconds: rng.Int64() - rng.Int64(), Nanos: rng.Int32N(1e9) - 5e8}
	}
	if rng.IntN(5) > 0 {
		ev.Ref = &eventv1.ObjectRef{Group: s(), Version: s(), Kind: s(), Resource: s(), Namespace: s(), Name: s(), Uid: s()}
	}
	if rng.IntN(4) > 0 {
		ev.Object = []byte(strings.Repeat("\x00\xffk8s", rng.IntN(50)))
	}
	for range rng.IntN(6) {
		if ev.Labels == nil {
			ev.Labels = map[string]string{}
		}
		ev.Labels[s()] = s()
	}
	for range rng.IntN(12) {
		if ev.Fields == nil {
			ev.Fields = map[string]string{}
		}
		ev.Fields[s()] = s()
	}
	for range rng.IntN(3) {
		if ev.Annotations == nil {
			ev.Annotations = map[string]string{}
		}
		ev.Annotations[s()] = s()
	}
	return ev
}

// TestUnmarshalEventMatchesProto: the fast envelope decoder gives what proto.Unmarshal gives,
// error or message, for random events, for the same bytes damaged, cut short or extended with
// fields it does not know, and for plain garbage.
func TestUnmarshalEventMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for i := range 20000 {
		data, err := proto.Marshal(randomEvent(rng))
		if err != nil {
			t.Fatal(err)
		}
		switch i % 5 {
		case 1: // damage a byte
			if len(data) > 0 {
				data[rng.IntN(len(data))] ^= byte(1 + rng.IntN(255))
			}
		case 2: // cut short
			data = data[:rng.IntN(len(data)+1)]
		case 3: // an unknown field, as a newer binary could write
			data = append(data, 0xa8, 0x01, 0x05) // field 21, varint 5
		case 4: // garbage
			data = make([]byte, rng.IntN(64))
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		}
		want := &eventv1.ObjectChanged{}
		wantErr := proto.Unmarshal(data, want)
		got := &eventv1.ObjectChanged{}
		gotErr := unmarshalEvent(data, got)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("case %d: proto.Unmarshal says %v, unmarshalEvent %v (% x)", i, wantErr, gotErr, data)
		}
		if wantErr == nil && !proto.Equal(want, got) {
			t.Fatalf("case %d: decoded\n%v\nwant\n%v", i, got, want)
		}
		if fastUnmarshalEvent(data, &eventv1.ObjectChanged{}, nil) == nil {
			fast++
		}
	}
	if fast < 5000 {
		t.Fatalf("only %d of 20000 cases took the fast path", fast)
	}
}

func BenchmarkUnmarshalEvent(b *testing.B) {
	ev := &eventv1.ObjectChanged{
		Type: eventv1.ChangeType_CHANGE_TYPE_MODIFIED, Reason: "status", Cause: 12345,
		Actor:    &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_NODE, Name: "node-007"},
		Time:     timestamppb.Now(),
		Ref:      &eventv1.ObjectRef{Version: "v1", Kind: "Pod", Resource: "pods", Namespace: "team-4", Name: "app-4-6d8f9c-00004", Uid: "8c7f0e2a-1b3c-4d5e-9f00-112233445566"},
		Encoding: eventv1.Encoding_ENCODING_PROTOBUF,
		Object:   make([]byte, 2282),
		Labels:   map[string]string{"app": "app-4", "pod-template-hash": "6d8f9c12", "tier": "backend", "release": "stable"},
		Fields:   map[string]string{},
	}
	for _, f := range []string{"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"} {
		ev.Fields[f] = fmt.Sprintf("value-of-%s", f)
	}
	data, _ := proto.Marshal(ev)
	b.Run("decoder=proto", func(b *testing.B) {
		for b.Loop() {
			if err := proto.Unmarshal(data, &eventv1.ObjectChanged{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder=envelope", func(b *testing.B) {
		for b.Loop() {
			if _, err := newEvent(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestHasSubject(t *testing.T) {
	for _, k := range []Key{
		{Resource: "pods", Namespace: "default", Name: "web-1"},
		{Group: "apps", Resource: "deployments", Namespace: "ns", Name: "a.b.c"},
		{Resource: "nodes", Name: "node%1 *>"},
		{Group: "example.com", Resource: "widgets", Name: strings.Repeat("long-name-", 40)},
	} {
		if !k.hasSubject("lp", k.subject("lp")) {
			t.Errorf("%v does not have its own subject %s", k, k.subject("lp"))
		}
		other := k
		other.Name += "x"
		if k.hasSubject("lp", other.subject("lp")) {
			t.Errorf("%v has the subject of %v", k, other)
		}
	}
}

// TestAppendEventMatchesProto: what AppendEvent writes decodes, with proto.Unmarshal, to the
// event it was given, and has the size proto.Marshal gives.
func TestAppendEventMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 10000 {
		ev := randomEvent(rng)
		data := AppendEvent(nil, ev)
		back := &eventv1.ObjectChanged{}
		if err := proto.Unmarshal(data, back); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !proto.Equal(ev, back) {
			t.Fatalf("case %d: wrote\n%v\nread\n%v", i, ev, back)
		}
		if want := proto.Size(ev); len(data) != want {
			t.Fatalf("case %d: %d bytes, proto.Marshal writes %d", i, len(data), want)
		}
	}
}
