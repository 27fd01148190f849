package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// TestAppendsAcrossRestarts restarts the embedded server (as the space watcher does once a full
// disk has room again) while writers in this process and in "another process" (a Log reaching
// the server by URL) append as fast as they can: creates and compare-and-set updates of keys
// of their own, and appends with AnyRevision. A restart closes every connection, and a publish
// written to one just before the client noticed is lost; JetStream's publish then waited for
// an acknowledgement that never came, until its deadline. Every append must return within a
// bound (well under its 30 s deadline), succeed or fail with ErrUnavailable, never conflict on
// a key only its writer changes, and each acknowledged append must be in the log exactly once,
// at the sequence it was acknowledged with (and no event twice, acknowledged or not).
func TestAppendsAcrossRestarts(t *testing.T) {
	ctx := t.Context()
	l, err := Open(ctx, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	creds, err := l.Credentials(Identity{Role: RoleAPIServer})
	if err != nil {
		t.Fatal(err)
	}
	remote, err := Open(ctx, Config{URL: l.ClientURL(), Creds: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()

	const (
		restarts = 4
		perRound = 200 // acknowledged appends between restarts
		bound    = 5 * time.Second
	)
	type result struct {
		body string
		seq  uint64
		err  error
		took time.Duration
	}
	var (
		mu      sync.Mutex
		results []result
		acked   atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writer := func(log *Log, name string) {
		defer wg.Done()
		var rev uint64 // the revision of the writer's own key
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := fmt.Sprintf("%s-%d", name, i)
			var ev *eventv1.ObjectChanged
			expect := AnyRevision
			switch i % 3 {
			case 0: // create a key of its own
				ev = restartEvent(eventv1.ChangeType_CHANGE_TYPE_ADDED, body, body)
				expect = NoRevision
			case 1: // update the writer's key, expecting the revision it last wrote
				ev = restartEvent(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, name, body)
				expect = rev
				if rev == 0 {
					ev.Type, expect = eventv1.ChangeType_CHANGE_TYPE_ADDED, NoRevision
				}
			case 2: // append to a key every writer appends to, without checking
				ev = restartEvent(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, "shared", body)
			}
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			start := time.Now()
			seq, err := log.Append(actx, ev, expect)
			took := time.Since(start)
			cancel()
			if err == nil {
				acked.Add(1)
				if i%3 == 1 {
					rev = seq
				}
			}
			mu.Lock()
			results = append(results, result{body: body, seq: seq, err: err, took: took})
			mu.Unlock()
			if err != nil && i%3 == 1 && !errors.Is(err, ErrConflict) {
				// Unknown whether it was written: read the key's revision again.
				if r, err := log.last(ctx, Key{Resource: "configmaps", Namespace: "ns", Name: name}); err == nil {
					rev = r.Seq
				}
			}
		}
	}
	for i := range 12 {
		wg.Add(2)
		go writer(l, fmt.Sprintf("local%d", i))
		go writer(remote, fmt.Sprintf("remote%d", i))
	}
	waitAcked := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for acked.Load() < n {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("only %d appends acknowledged, waiting for %d", acked.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for r := 1; r <= restarts; r++ {
		waitAcked(int64(r * perRound))
		if err := l.srv.restart(); err != nil {
			t.Fatal(err)
		}
	}
	waitAcked(int64((restarts + 1) * perRound))
	close(stop)
	wg.Wait()

	// What the log holds: every event of the test by its body.
	stored := map[string][]uint64{}
	if err := l.scan(ctx, l.cfg.Prefix+".obj.>", 1, 0, func(r Record) error {
		if r.Err != nil {
			return r.Err
		}
		stored[string(r.Event.Object)] = append(stored[string(r.Event.Object)], r.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var failed, slow int
	for _, res := range results {
		if res.took > bound {
			slow++
			if slow <= 5 {
				t.Errorf("append %s took %v (err %v), want at most %v", res.body, res.took.Round(time.Millisecond), res.err, bound)
			}
		}
		seqs := stored[res.body]
		switch {
		case res.err == nil && (len(seqs) != 1 || seqs[0] != res.seq):
			t.Errorf("append %s acknowledged at %d is in the log at %v, want exactly there once", res.body, res.seq, seqs)
		case res.err != nil && !errors.Is(res.err, ErrUnavailable):
			t.Errorf("append %s: %v, want success or ErrUnavailable", res.body, res.err)
		case res.err != nil && len(seqs) > 1:
			t.Errorf("append %s failed (%v) and is in the log %d times", res.body, res.err, len(seqs))
		}
		if res.err != nil {
			failed++
		}
	}
	lost := l.settles.Load() + remote.settles.Load()
	t.Logf("%d appends across %d restarts: %d lost their connection before their answer, %d failed, %d slower than %v",
		len(results), restarts, lost, failed, slow, bound)
	if lost == 0 {
		t.Error("no append was in flight at a restart: the test provoked nothing")
	}
}

func restartEvent(typ eventv1.ChangeType, name, body string) *eventv1.ObjectChanged {
	return &eventv1.ObjectChanged{
		Type:     typ,
		Reason:   "spec",
		Ref:      &eventv1.ObjectRef{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: "ns", Name: name},
		Encoding: eventv1.Encoding_ENCODING_JSON,
		Object:   []byte(body),
	}
}

// TestSettle gives settle, which finds out what became of an append whose connection was lost,
// each case it decides between: the append was stored (its answer was lost), it was not (it is
// appended again), or another writer's revision took its place (a conflict), with a revision
// expected and with AnyRevision. Every case must leave the event in the log once at most.
func TestSettle(t *testing.T) {
	ctx := t.Context()
	l, err := Open(ctx, Config{DataDir: t.TempDir(), Durability: Lazy})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	key := Key{Resource: "configmaps", Namespace: "ns", Name: "cm"}
	ev := func(body string) *eventv1.ObjectChanged {
		return restartEvent(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, key.Name, body)
	}
	appendNow := func(body string, expect uint64) uint64 {
		t.Helper()
		seq, err := l.Append(ctx, ev(body), expect)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	settle := func(body string, expect, floor uint64) (uint64, error) {
		e := ev(body)
		return l.settle(ctx, key, e, AppendEvent(nil, e), expect, floor)
	}
	count := func(body string) int {
		t.Helper()
		recs, err := l.History(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range recs {
			if string(r.Event.Object) == body {
				n++
			}
		}
		return n
	}
	check := func(name, body string, seq uint64, err error, wantSeq uint64, wantErr error, wantCount int) {
		t.Helper()
		if !errors.Is(err, wantErr) || (wantErr == nil && seq != wantSeq) {
			t.Errorf("%s: settle = %d, %v; want %d, %v", name, seq, err, wantSeq, wantErr)
		}
		if n := count(body); n != wantCount {
			t.Errorf("%s: %q is in the log %d times, want %d", name, body, n, wantCount)
		}
	}

	// Expecting a revision.
	s1 := appendNow("a", NoRevision)
	seq, err := settle("a", NoRevision, 0)
	check("stored, answer lost", "a", seq, err, s1, nil, 1)

	seq, err = settle("b", s1, 0)
	_, last, _ := l.Bounds(ctx)
	check("not stored", "b", seq, err, last, nil, 1)
	s2 := seq

	appendNow("c", s2) // another writer's revision after s2
	seq, err = settle("d", s2, 0)
	check("another revision after the expected one", "d", seq, err, 0, ErrConflict, 0)

	// AnyRevision: the append can be any revision after the floor, not only the latest.
	_, floor, _ := l.Bounds(ctx)
	sE := appendNow("e", AnyRevision)
	appendNow("f", AnyRevision)
	seq, err = settle("e", AnyRevision, floor)
	check("any revision, stored, others after it", "e", seq, err, sE, nil, 1)

	seq, err = settle("g", AnyRevision, floor)
	_, last, _ = l.Bounds(ctx)
	check("any revision, not stored", "g", seq, err, last, nil, 1)

	if got := l.settles.Load(); got != 5 {
		t.Errorf("settles = %d, want 5", got)
	}
}
