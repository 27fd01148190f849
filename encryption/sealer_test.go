package encryption_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/logplane/logplane/encryption"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

func newSealer(t testing.TB) *encryption.Sealer {
	t.Helper()
	l := eventlogtest.Open(t, eventlogtest.Durable)
	ring, err := encryption.CreateKeyRing(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dks, err := l.DataKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s, err := encryption.NewSealer(encryption.Config{KMS: ring, Keys: dks})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func secretEvent(uid string, object []byte) *eventv1.ObjectChanged {
	return &eventv1.ObjectChanged{Type: eventv1.ChangeType_CHANGE_TYPE_ADDED,
		Ref:      &eventv1.ObjectRef{Version: "v1", Kind: "Secret", Resource: "secrets", Namespace: "default", Name: "s-" + uid, Uid: uid},
		Encoding: eventv1.Encoding_ENCODING_PROTOBUF, Object: object}
}

// TestSealOpen: a sealed object opens to what it was, and only as the object it was sealed for.
func TestSealOpen(t *testing.T) {
	s := newSealer(t)
	ctx := t.Context()
	plain := []byte("k8s\x00 a Secret's bytes")
	ev := secretEvent("u1", bytes.Clone(plain))
	if err := s.Seal(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetEncoding() != eventv1.Encoding_ENCODING_SEALED || bytes.Contains(ev.GetObject(), plain) {
		t.Fatalf("not sealed: %v %q", ev.GetEncoding(), ev.GetObject())
	}
	opened, err := s.Open(ctx, ev)
	if err != nil || !bytes.Equal(opened.GetObject(), plain) || opened.GetEncoding() != eventv1.Encoding_ENCODING_PROTOBUF {
		t.Fatalf("open: %v %q %v", err, opened.GetObject(), opened.GetEncoding())
	}
	moved := secretEvent("u2", ev.GetObject())
	moved.Encoding = eventv1.Encoding_ENCODING_SEALED
	if _, err := s.Open(ctx, moved); err == nil || errors.Is(err, encryption.ErrForgotten) {
		t.Fatalf("a sealed object opened as another object: %v", err)
	}
}

// BenchmarkSealOpen is what encryption adds to a Secret's create in CPU: sealing it on the write
// path and opening it in the projection (a 1 KiB object, its data key at hand).
func BenchmarkSealOpen(b *testing.B) {
	s := newSealer(b)
	ctx := b.Context()
	plain := bytes.Repeat([]byte("x"), 1024)
	ev := secretEvent("u1", plain)
	if err := s.Seal(ctx, ev); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ev := secretEvent("u1", plain)
		if err := s.Seal(ctx, ev); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Open(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}
