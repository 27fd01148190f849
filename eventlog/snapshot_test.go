package eventlog_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
)

func TestSnapshotStore(t *testing.T) {
	// Durable: PutSnapshot also fsyncs the snapshot store's files.
	l := eventlogtest.Open(t, eventlogtest.Durable, func(c *eventlog.Config) { c.SnapshotsKept = 2 })
	ctx := t.Context()
	if _, err := l.Snapshots(ctx, "bad/name"); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("a projection name with a slash: %v", err)
	}
	if snaps, err := l.Snapshots(ctx, "objects"); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots of a new log: %v %v", snaps, err)
	}
	data := map[uint64][]byte{}
	for _, seq := range []uint64{10, 30, 20} {
		data[seq] = bytes.Repeat([]byte{byte(seq)}, 3<<20+int(seq)) // several chunks
		if _, err := l.PutSnapshot(ctx, "objects", seq, bytes.NewReader(data[seq])); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.PutSnapshot(ctx, "other", 99, bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	snaps, err := l.Snapshots(ctx, "objects")
	if err != nil || len(snaps) != 2 || snaps[0].Seq != 30 || snaps[1].Seq != 20 {
		t.Fatalf("kept %+v, %v; want the two newest, 30 and 20, newest first", snaps, err)
	}
	for _, info := range snaps {
		r, err := l.OpenSnapshot(ctx, info)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data[info.Seq]) || info.Size != uint64(len(got)) {
			t.Fatalf("snapshot %d read back %d bytes, %v", info.Seq, len(got), err)
		}
	}
}

// BenchmarkSnapshotStore puts and gets a 32 MB snapshot. Metric: MB/s.
func BenchmarkSnapshotStore(b *testing.B) {
	l := eventlogtest.Open(b)
	data := make([]byte, 32<<20)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	info, err := l.PutSnapshot(b.Context(), "bench", 1, bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("op=put", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := l.PutSnapshot(b.Context(), "bench", 2, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=get", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			r, err := l.OpenSnapshot(b.Context(), info)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, r); err != nil || n != int64(len(data)) {
				b.Fatal(n, err)
			}
			r.Close()
		}
	})
}
