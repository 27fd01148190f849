package eventlog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// BenchmarkAppend appends 2 KB events, each a create on a key of its own (so each carries an
// expected-revision header), from 1 and 64 concurrent writers, with each durability side by
// side in the same run: the durable default (group commit), the server's sync_always, lazy
// fsync (not durable: the ceiling), and the alternative to group commit that the design
// suggested, sync_always with concurrent appends gathered into JetStream atomic batch publishes.
// Metrics: appends/s and p99-ms (latency of one append as its writer sees it).
func BenchmarkAppend(b *testing.B) {
	body := strings.Repeat("x", 2048)
	modes := []struct {
		name       string
		durability Durability
		batched    bool
	}{
		{"group-commit", GroupCommit, false},
		{"server-sync", ServerSync, false},
		{"lazy", Lazy, false},
		{"server-sync-atomic-batch", ServerSync, true},
	}
	for _, m := range modes {
		for _, writers := range []int{1, 64} {
			b.Run(fmt.Sprintf("durability=%s/writers=%d", m.name, writers), func(b *testing.B) {
				l, err := Open(b.Context(), Config{DataDir: b.TempDir(), Durability: m.durability})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				appendOne := func(ctx context.Context, ev *eventv1.ObjectChanged) error {
					_, err := l.Append(ctx, ev, NoRevision)
					return err
				}
				if m.batched {
					ab, err := newAtomicBatcher(b.Context(), l, 64)
					if err != nil {
						b.Fatal(err)
					}
					defer ab.stop()
					appendOne = func(ctx context.Context, ev *eventv1.ObjectChanged) error {
						_, err := ab.append(ctx, ev, NoRevision)
						return err
					}
				}
				var next atomic.Int64
				lat := make([][]time.Duration, writers)
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for w := 0; w < writers; w++ {
					wg.Go(func() {
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							ev := benchEvent(fmt.Sprintf("obj-%d", i), body)
							t0 := time.Now()
							if err := appendOne(b.Context(), ev); err != nil {
								b.Error(err)
								return
							}
							lat[w] = append(lat[w], time.Since(t0))
						}
					})
				}
				wg.Wait()
				el := time.Since(start)
				b.StopTimer()
				all := slices.Concat(lat...)
				slices.Sort(all)
				b.ReportMetric(float64(b.N)/el.Seconds(), "appends/s")
				if len(all) > 0 {
					b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
				}
			})
		}
	}
}

func benchEvent(name, body string) *eventv1.ObjectChanged {
	return &eventv1.ObjectChanged{
		Type:     eventv1.ChangeType_CHANGE_TYPE_ADDED,
		Reason:   "create",
		Ref:      &eventv1.ObjectRef{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: "bench", Name: name},
		Encoding: eventv1.Encoding_ENCODING_JSON,
		Object:   []byte(body),
	}
}

// atomicBatcher is the alternative design measured against group commit: appends that arrive
// together are published as one JetStream atomic batch (each message keeping its own
// expected-subject-sequence header) on a server running sync_always. One batch is in flight at a
// time; the next gathers meanwhile. Its flaw, besides speed: one conflicting append fails the
// whole batch, so every other append in it must be retried alone.
type atomicBatcher struct {
	l     *Log
	max   int
	reqs  chan *batchAppend
	done  chan struct{}
	close sync.Once
}

type batchAppend struct {
	msg  *nats.Msg
	seq  uint64
	err  error
	done chan struct{}
}

func newAtomicBatcher(ctx context.Context, l *Log, max int) (*atomicBatcher, error) {
	cfg := l.streamConfig()
	cfg.AllowAtomicPublish = true
	if _, err := l.js.UpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("allowing atomic publish: %w", err)
	}
	ab := &atomicBatcher{l: l, max: max, reqs: make(chan *batchAppend, 1024), done: make(chan struct{})}
	go ab.loop()
	return ab, nil
}

func (ab *atomicBatcher) stop() { ab.close.Do(func() { close(ab.done) }) }

func (ab *atomicBatcher) append(ctx context.Context, ev *eventv1.ObjectChanged, expect uint64) (uint64, error) {
	data, err := proto.Marshal(ev)
	if err != nil {
		return 0, err
	}
	msg := &nats.Msg{Subject: KeyOf(ev).subject(ab.l.cfg.Prefix), Data: data, Header: nats.Header{}}
	if expect != AnyRevision {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
	}
	req := &batchAppend{msg: msg, done: make(chan struct{})}
	select {
	case ab.reqs <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case <-req.done:
		return req.seq, req.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (ab *atomicBatcher) loop() {
	for {
		var batch []*batchAppend
		select {
		case r := <-ab.reqs:
			batch = append(batch, r)
		case <-ab.done:
			return
		}
	gather:
		for len(batch) < ab.max {
			select {
			case r := <-ab.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		seqs, err := ab.publish(batch)
		for i, r := range batch {
			if err != nil {
				r.err = err
			} else {
				r.seq = seqs[i]
			}
			close(r.done)
		}
	}
}

// publish sends one atomic batch: every message but the last without waiting, the last with
// the commit header as a request, whose answer acknowledges the whole batch.
func (ab *atomicBatcher) publish(batch []*batchAppend) ([]uint64, error) {
	id := nuid.Next()
	for i, r := range batch {
		r.msg.Header.Set("Nats-Batch-Id", id)
		r.msg.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(batch)-1 {
			if err := ab.l.nc.PublishMsg(r.msg); err != nil {
				return nil, err
			}
		}
	}
	last := batch[len(batch)-1].msg
	last.Header.Set("Nats-Batch-Commit", "1")
	resp, err := ab.l.nc.RequestMsg(last, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var ack struct {
		Seq   uint64 `json:"seq"`
		Count int    `json:"count"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return nil, err
	}
	if ack.Error != nil {
		return nil, fmt.Errorf("atomic batch: %s", ack.Error.Description)
	}
	if ack.Count != len(batch) {
		return nil, fmt.Errorf("atomic batch of %d acknowledged %d", len(batch), ack.Count)
	}
	seqs := make([]uint64, len(batch))
	for i := range batch {
		seqs[i] = ack.Seq - uint64(len(batch)-1-i)
	}
	return seqs, nil
}
