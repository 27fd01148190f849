package eventlog_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

func event(typ eventv1.ChangeType, ns, name, body string) *eventv1.ObjectChanged {
	return &eventv1.ObjectChanged{
		Type:     typ,
		Reason:   "spec",
		Ref:      &eventv1.ObjectRef{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: ns, Name: name},
		Encoding: eventv1.Encoding_ENCODING_JSON,
		Object:   []byte(body),
	}
}

func TestCreateUpdateConflictDelete(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Durable)
	ctx := t.Context()
	key := eventlog.Key{Resource: "configmaps", Namespace: "default", Name: "kube-root-ca.crt"}

	s1, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", key.Name, `{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", key.Name, `{"v":1}`)); !errors.Is(err, eventlog.ErrExists) {
		t.Fatalf("second create: got %v, want ErrExists", err)
	}
	s2, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, "default", key.Name, `{"v":2}`), s1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, "default", key.Name, `{"v":3}`), s1); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("stale update: got %v, want ErrConflict", err)
	}
	got, err := l.Get(ctx, key)
	if err != nil || got.Seq != s2 || string(got.Event.Object) != `{"v":2}` {
		t.Fatalf("get: %v %+v", err, got)
	}
	s3, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_DELETED, "default", key.Name, `{"v":2}`), s2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, key); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	s4, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", key.Name, `{"v":"again"}`))
	if err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	hist, err := l.History(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range hist {
		seqs = append(seqs, r.Seq)
	}
	if fmt.Sprint(seqs) != fmt.Sprint([]uint64{s1, s2, s3, s4}) {
		t.Fatalf("history %v, want %v", seqs, []uint64{s1, s2, s3, s4})
	}
	at, err := l.At(ctx, key, s2)
	if err != nil || at.Seq != s2 {
		t.Fatalf("at %d: %v %+v", s2, err, at)
	}
	if _, err := l.At(ctx, key, s3); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("at tombstone: %v", err)
	}
}

func TestConcurrentIncrements(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Durable)
	ctx := t.Context()
	key := eventlog.Key{Resource: "configmaps", Namespace: "ns", Name: "counter"}
	if _, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "ns", "counter", "0")); err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 25
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				cur, err := l.Get(ctx, key)
				if err != nil {
					t.Error(err)
					return
				}
				var n int
				fmt.Sscan(string(cur.Event.Object), &n)
				_, err = l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, "ns", "counter", fmt.Sprint(n+1)), cur.Seq)
				if errors.Is(err, eventlog.ErrConflict) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				i++
			}
		}()
	}
	wg.Wait()
	hist, err := l.History(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != workers*each+1 {
		t.Fatalf("history has %d revisions, want %d", len(hist), workers*each+1)
	}
	for i, r := range hist {
		if string(r.Event.Object) != fmt.Sprint(i) {
			t.Fatalf("revision %d holds %s", i, r.Event.Object)
		}
	}
}
