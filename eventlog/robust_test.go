package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

func cmKey(ns, name string) eventlog.Key {
	return eventlog.Key{Resource: "configmaps", Namespace: ns, Name: name}
}

// TestUndecodableMessagesAreReportedAndSkipped writes into the stream what no Log would: bytes
// that are no event, and an event filed under another object's subject. Every reader reports
// each with its sequence and goes on; nothing crashes.
func TestUndecodableMessagesAreReportedAndSkipped(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Listening)
	ctx := t.Context()
	good1, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", "a", `{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	badKey := cmKey("default", "b")
	garbage := eventlogtest.PublishRaw(t, l, l.Subject(badKey), []byte("\xff\xfe this is not an event"))
	misfiled, _ := proto.Marshal(event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", "a", `{"v":"hijack"}`))
	elsewhere := eventlogtest.PublishRaw(t, l, l.Subject(badKey), misfiled)
	empty := eventlogtest.PublishRaw(t, l, l.Subject(cmKey("default", "c")), nil)
	good2, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", "d", `{"v":2}`))
	if err != nil {
		t.Fatal(err)
	}
	bad := []uint64{garbage, elsewhere, empty}

	check := func(name string, recs []eventlog.Record) {
		t.Helper()
		var okSeqs, badSeqs []uint64
		for _, r := range recs {
			if r.Err != nil {
				if r.Event != nil || !strings.Contains(r.Err.Error(), fmt.Sprintf("sequence %d", r.Seq)) {
					t.Fatalf("%s: bad record %d reported as %v", name, r.Seq, r.Err)
				}
				badSeqs = append(badSeqs, r.Seq)
				continue
			}
			okSeqs = append(okSeqs, r.Seq)
		}
		if fmt.Sprint(okSeqs) != fmt.Sprint([]uint64{good1, good2}) || fmt.Sprint(badSeqs) != fmt.Sprint(bad) {
			t.Fatalf("%s: read good %v and bad %v, want %v and %v", name, okSeqs, badSeqs, []uint64{good1, good2}, bad)
		}
	}

	var followed []eventlog.Record
	fctx, cancel := context.WithCancel(ctx)
	err = l.Follow(fctx, eventlog.Filter{}, 0, func(r eventlog.Record) error {
		followed = append(followed, r)
		if r.Seq == good2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("follow: %v", err)
	}
	check("follow", followed)

	var replayed []eventlog.Record
	if err := l.Replay(ctx, eventlog.Filter{}, 0, 0, func(r eventlog.Record) error { replayed = append(replayed, r); return nil }); err != nil {
		t.Fatal(err)
	}
	check("replay", replayed)

	hist, err := l.History(ctx, badKey)
	if err != nil || len(hist) != 2 || hist[0].Err == nil || hist[1].Err == nil {
		t.Fatalf("history of the bad key: %v %+v", err, hist)
	}
	if _, err := l.Get(ctx, badKey); err == nil || !strings.Contains(err.Error(), fmt.Sprint(elsewhere)) {
		t.Fatalf("get of the bad key: %v", err)
	}
	// The object the misfiled event names is untouched.
	if got, err := l.Get(ctx, cmKey("default", "a")); err != nil || string(got.Event.Object) != `{"v":1}` {
		t.Fatalf("get a: %v %+v", err, got)
	}
}

// TestLargeObjects: a ConfigMap holding the 1 MiB of data Kubernetes allows round-trips in both
// encodings; a bigger object is refused with ErrTooLarge and nothing is written.
func TestLargeObjects(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "default"},
		Data:       map[string]string{"blob": strings.Repeat("0123456789abcdef", 1<<16)}, // 1 MiB
	}
	for _, enc := range []eventv1.Encoding{eventv1.Encoding_ENCODING_PROTOBUF, eventv1.Encoding_ENCODING_JSON} {
		cm.Name = "big-" + strings.ToLower(enc.String())
		data, err := kinds.Encode(cm, enc)
		if err != nil {
			t.Fatal(err)
		}
		ev := event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", cm.Name, "")
		ev.Encoding, ev.Object = enc, data
		seq, err := l.Create(ctx, ev)
		if err != nil {
			t.Fatalf("%v: create a 1 MiB ConfigMap: %v", enc, err)
		}
		got, err := l.Get(ctx, cmKey("default", cm.Name))
		if err != nil || got.Seq != seq {
			t.Fatalf("%v: get: %v", enc, err)
		}
		k := builtin.Catalog().All()
		var cmKind *kinds.Kind
		for _, kk := range k {
			if kk.Kind == "ConfigMap" {
				cmKind = kk
			}
		}
		obj, err := cmKind.Decode(got.Event.Encoding, got.Event.Object)
		if err != nil || obj.(*corev1.ConfigMap).Data["blob"] != cm.Data["blob"] {
			t.Fatalf("%v: the ConfigMap did not round-trip: %v", enc, err)
		}
	}
	_, before, _ := l.Bounds(ctx)
	huge := event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", "huge", strings.Repeat("x", eventlog.DefaultMaxObjectBytes+1))
	if _, err := l.Create(ctx, huge); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("create of %d bytes: %v, want ErrTooLarge", len(huge.Object), err)
	}
	if _, after, _ := l.Bounds(ctx); after != before {
		t.Fatalf("a refused append moved the log from %d to %d", before, after)
	}
}

// TestWatchFromRevision: following one namespace of a resource from revision R delivers exactly
// the events of that namespace after R, in order, those already in the log and those appended
// while the watch runs.
func TestWatchFromRevision(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	appendSome := func(from, to int) {
		for i := from; i < to; i++ {
			ns := []string{"a", "b"}[i%2]
			if _, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, ns, fmt.Sprintf("cm-%d", i%7), fmt.Sprint(i)), eventlog.AnyRevision); err != nil {
				t.Fatal(err)
			}
			// Another resource in the same namespace, which the watch must not see.
			other := event(eventv1.ChangeType_CHANGE_TYPE_ADDED, ns, fmt.Sprintf("s-%d", i), "x")
			other.Ref.Resource, other.Ref.Kind = "secrets", "Secret"
			if _, err := l.Append(ctx, other, eventlog.AnyRevision); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendSome(0, 40)
	_, r, _ := l.Bounds(ctx)
	r -= 17 // a revision in the middle
	f := eventlog.Filter{Resource: "configmaps", Namespace: "a"}
	var got []uint64
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var mu sync.Mutex
	var stopAt uint64
	go func() {
		done <- l.Follow(wctx, f, r, func(rec eventlog.Record) error {
			if rec.Err != nil {
				return rec.Err
			}
			mu.Lock()
			defer mu.Unlock()
			got = append(got, rec.Seq)
			if stopAt != 0 && rec.Seq >= stopAt {
				cancel()
			}
			return nil
		})
	}()
	appendSome(40, 80)
	var want []uint64
	if err := l.Replay(ctx, eventlog.Filter{}, 0, 0, func(rec eventlog.Record) error {
		if rec.Seq > r && rec.Event.Ref.Resource == "configmaps" && rec.Event.Ref.Namespace == "a" {
			want = append(want, rec.Seq)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	stopAt = want[len(want)-1]
	if len(got) > 0 && got[len(got)-1] >= stopAt {
		cancel()
	}
	mu.Unlock()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("watch: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the watch did not deliver the last event")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("watch from %d delivered\n%v\nwant\n%v", r, got, want)
	}
}

// TestRetentionAndGone: with a size limit the oldest events go; reading from before what is
// kept answers ErrGone, reading from what is kept works, and by default nothing goes.
func TestRetentionAndGone(t *testing.T) {
	l := eventlogtest.Open(t, func(c *eventlog.Config) { c.MaxBytes = 64 << 10 })
	ctx := t.Context()
	body := strings.Repeat("y", 2000)
	for i := range 200 {
		if _, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "r", fmt.Sprintf("cm-%d", i%10), body), eventlog.AnyRevision); err != nil {
			t.Fatal(err)
		}
	}
	first, last, err := l.Bounds(ctx)
	if err != nil || first <= 2 || last != 200 {
		t.Fatalf("bounds %d..%d, %v: retention kept everything", first, last, err)
	}
	nop := func(eventlog.Record) error { return nil }
	if err := l.Follow(ctx, eventlog.Filter{}, 1, nop); !errors.Is(err, eventlog.ErrGone) {
		t.Fatalf("follow from 1: %v, want ErrGone", err)
	}
	if err := l.Replay(ctx, eventlog.Filter{}, first-2, 0, nop); !errors.Is(err, eventlog.ErrGone) {
		t.Fatalf("replay from %d: %v, want ErrGone", first-2, err)
	}
	if _, err := l.At(ctx, cmKey("r", "cm-1"), first-2); !errors.Is(err, eventlog.ErrGone) {
		t.Fatalf("at %d: %v, want ErrGone", first-2, err)
	}
	n := 0
	if err := l.Replay(ctx, eventlog.Filter{}, first-1, 0, func(eventlog.Record) error { n++; return nil }); err != nil || uint64(n) != last-first+1 {
		t.Fatalf("replay of what is kept: %d events, %v", n, err)
	}

	// The default keeps everything.
	d := eventlogtest.Open(t)
	for i := range 300 {
		if _, err := d.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, "r", "one", body), eventlog.AnyRevision); err != nil {
			t.Fatal(err)
		}
		_ = i
	}
	if hist, err := d.History(ctx, cmKey("r", "one")); err != nil || len(hist) != 300 {
		t.Fatalf("default retention kept %d revisions, %v", len(hist), err)
	}
}

// TestReadsLeaveNothingBehind: History, At, Replay and Follow, run many times and ended, leave no consumer on the
// server and no goroutine in the process.
func TestReadsLeaveNothingBehind(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	for i := range 30 {
		if _, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "x", fmt.Sprintf("cm-%d", i%3), fmt.Sprint(i)), eventlog.AnyRevision); err != nil {
			t.Fatal(err)
		}
	}
	read := func() {
		for i := range 3 {
			if h, err := l.History(ctx, cmKey("x", fmt.Sprintf("cm-%d", i))); err != nil || len(h) != 10 {
				t.Fatalf("history: %d, %v", len(h), err)
			}
			if r, err := l.At(ctx, cmKey("x", fmt.Sprintf("cm-%d", i)), 10); err != nil || r.Seq > 10 {
				t.Fatalf("at: %v", err)
			}
		}
		if err := l.Replay(ctx, eventlog.Filter{Resource: "configmaps"}, 5, 20, func(eventlog.Record) error { return nil }); err != nil {
			t.Fatal(err)
		}
		stop := errors.New("stop")
		if err := l.Follow(ctx, eventlog.Filter{}, 25, func(eventlog.Record) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("follow: %v", err)
		}
	}
	read()
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 100 {
		read()
	}
	time.Sleep(50 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+2 {
		buf := make([]byte, 1<<20)
		t.Logf("%s", buf[:runtime.Stack(buf, true)])
		t.Fatalf("goroutines grew from %d to %d over 100 rounds of reads", before, after)
	}
	if n, err := l.Consumers(ctx); err != nil || n != 0 {
		t.Fatalf("%d consumers left on the stream, %v", n, err)
	}
}

// TestRetentionByAge: events older than MaxAge go; what is left reads as usual.
func TestRetentionByAge(t *testing.T) {
	l := eventlogtest.Open(t, func(c *eventlog.Config) { c.MaxAge = time.Second })
	ctx := t.Context()
	for i := range 10 {
		if _, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "r", fmt.Sprintf("old-%d", i), "x"), eventlog.AnyRevision); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	seq, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "r", "new", "x"), eventlog.AnyRevision)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		first, _, err := l.Bounds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if first == seq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events older than a second still kept: first %d, newest %d", first, seq)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := l.Get(ctx, cmKey("r", "old-3")); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("an expired object: %v", err)
	}
	if r, err := l.Get(ctx, cmKey("r", "new")); err != nil || r.Seq != seq {
		t.Fatalf("the new object: %v", err)
	}
}

// TestAppendRefusesWhatReadersCannotRead: an event without a type, or with a string that is not
// UTF-8 (proto3 readers refuse it), is not written.
func TestAppendRefusesWhatReadersCannotRead(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	noType := event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "x", "a", "{}")
	noType.Type = eventv1.ChangeType_CHANGE_TYPE_UNSPECIFIED
	badName := event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "x", "bad-\xff", "{}")
	badLabel := event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "x", "b", "{}")
	badLabel.Labels = map[string]string{"app": "\xfe"}
	for _, ev := range []*eventv1.ObjectChanged{noType, badName, badLabel} {
		if _, err := l.Append(ctx, ev, eventlog.AnyRevision); !errors.Is(err, eventlog.ErrInvalid) {
			t.Fatalf("append of %v: %v, want ErrInvalid", ev.Ref, err)
		}
	}
	if _, last, _ := l.Bounds(ctx); last != 0 {
		t.Fatalf("%d events written", last)
	}
}

// TestFollowEnds: a follow ends with the error its callback returns, after which the callback
// is not called again, and with ErrClosed when the log is closed under it; it never hangs.
func TestFollowEnds(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	for i := range 50 {
		if _, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "a", fmt.Sprintf("cm-%d", i), "x"), eventlog.AnyRevision); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := l.Follow(ctx, eventlog.Filter{}, 0, func(r eventlog.Record) error {
		calls++
		if r.Seq == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 10 {
		t.Fatalf("follow ended with %v after %d calls, want %v after 10", err, calls, stop)
	}

	seen := make(chan uint64, 100)
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(ctx, eventlog.Filter{}, 0, func(r eventlog.Record) error { seen <- r.Seq; return nil })
	}()
	for s := range seen {
		if s == 50 {
			break
		}
	}
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, eventlog.ErrClosed) {
			t.Fatalf("follow ended with %v when the log closed, want ErrClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("follow did not end when the log closed")
	}
}
