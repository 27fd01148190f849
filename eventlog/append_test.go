package eventlog_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

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

// TestConcurrentIncrements: many goroutines increment one counter by read, compare-and-set and
// retry. The count ends exact, the history holds every revision in order, and the recorded
// reads and writes, with their real-time order, are linearizable (checked with porcupine against
// a model of a register with per-key compare-and-set).
func TestConcurrentIncrements(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Durable)
	ctx := t.Context()
	key := eventlog.Key{Resource: "configmaps", Namespace: "ns", Name: "counter"}
	first, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "ns", "counter", "0"))
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 24, 20
	start := time.Now()
	var mu sync.Mutex
	var ops []porcupine.Operation
	record := func(client int, in casInput, call time.Time, out casOutput) {
		mu.Lock()
		defer mu.Unlock()
		ops = append(ops, porcupine.Operation{ClientId: client, Input: in, Call: int64(call.Sub(start)), Output: out, Return: int64(time.Since(start))})
	}
	conflicts := 0
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				call := time.Now()
				cur, err := l.Get(ctx, key)
				if err != nil {
					t.Error(err)
					return
				}
				var n int
				fmt.Sscan(string(cur.Event.Object), &n)
				record(w, casInput{read: true}, call, casOutput{seq: cur.Seq, value: n})

				call = time.Now()
				seq, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, "ns", "counter", fmt.Sprint(n+1)), cur.Seq)
				if errors.Is(err, eventlog.ErrConflict) {
					record(w, casInput{expect: cur.Seq, value: n + 1}, call, casOutput{conflict: true})
					mu.Lock()
					conflicts++
					mu.Unlock()
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				record(w, casInput{expect: cur.Seq, value: n + 1}, call, casOutput{seq: seq})
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
		if i > 0 && r.Seq <= hist[i-1].Seq {
			t.Fatalf("revision %d at %d is not after revision %d at %d", i, r.Seq, i-1, hist[i-1].Seq)
		}
	}
	if conflicts == 0 {
		t.Fatal("no conflict in the whole run: the test did not exercise compare-and-set")
	}
	model := casModel(first)
	res, info := porcupine.CheckOperationsVerbose(model, ops, time.Minute)
	switch res {
	case porcupine.Illegal:
		path := filepath.Join(t.TempDir(), "linearizability.html")
		if err := porcupine.VisualizePath(model, info, path); err == nil {
			t.Logf("visualization in %s", path)
		}
		t.Fatalf("the history of %d operations is not linearizable", len(ops))
	case porcupine.Unknown:
		t.Logf("porcupine timed out on %d operations", len(ops))
	}
	t.Logf("%d operations, %d conflicts, linearizable", len(ops), conflicts)
}

// casInput is a read (read true) or a compare-and-set of value expecting revision expect.
type casInput struct {
	read   bool
	expect uint64
	value  int
}

// casOutput is what a read saw, or the outcome of a compare-and-set: its new revision, or a
// conflict.
type casOutput struct {
	seq      uint64
	value    int
	conflict bool
}

// casState is the register: its latest revision and value.
type casState struct {
	seq   uint64
	value int
}

// casModel is one key of the log: reads see the latest revision; a compare-and-set succeeds,
// with a revision after the latest, if and only if it expected the latest.
func casModel(first uint64) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return casState{seq: first} },
		Step: func(state, input, output any) (bool, any) {
			st, in, out := state.(casState), input.(casInput), output.(casOutput)
			switch {
			case in.read:
				return out.seq == st.seq && out.value == st.value, st
			case out.conflict:
				return in.expect != st.seq, st
			default:
				if in.expect != st.seq || out.seq <= st.seq {
					return false, st
				}
				return true, casState{seq: out.seq, value: in.value}
			}
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(casInput), output.(casOutput)
			switch {
			case in.read:
				return fmt.Sprintf("get -> %d@%d", out.value, out.seq)
			case out.conflict:
				return fmt.Sprintf("cas(%d, expect %d) -> conflict", in.value, in.expect)
			}
			return fmt.Sprintf("cas(%d, expect %d) -> %d", in.value, in.expect, out.seq)
		},
	}
}
