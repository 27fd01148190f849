package eventlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// DataKeys is the data-key store of envelope encryption: one wrapped data key per subject
// (<prefix>.dek.<id>) in a stream of its own beside the object stream, so that a key can be
// destroyed (crypto-shredding) while the object log itself is never rewritten. Destroying a key
// erases its messages in place (JetStream's secure delete overwrites them in the block files), so
// no copy of the disk holds it afterwards. The stream is not compressed, so that an erased
// message leaves nothing behind in a compressed block either.
//
// Writes are durable when Put or Erase return: the process that embeds the server fsyncs the
// stream's files; other processes ask it to (the commit barrier of the object log, on a subject
// of its own).
type DataKeys struct {
	l      *Log
	stream jetstream.Stream
	mu     sync.Mutex // serialises the fsyncs of the embedding process
}

// ErrKeyNotFound: the data-key store holds no key of that id (never made, or destroyed).
var ErrKeyNotFound = errors.New("eventlog: no such data key")

func (c *Config) keysStream() string        { return c.Stream + "_KEYS" }
func (c *Config) keysCommitSubject() string { return c.Prefix + ".sys.commit.keys" }
func (c *Config) keySubject(id string) string {
	return c.Prefix + ".dek." + id
}

// validKeyID checks that id is one subject token of letters, digits and dashes.
func validKeyID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w: data key id %q", ErrInvalid, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w: data key id %q", ErrInvalid, id)
		}
	}
	return nil
}

// DataKeys opens (creating if needed) the data-key store.
func (l *Log) DataKeys(ctx context.Context) (*DataKeys, error) {
	l.keysMu.Lock()
	defer l.keysMu.Unlock()
	if l.keys != nil {
		return l.keys, nil
	}
	// Bind to the stream where it exists: only the API server (and the admin) may create it,
	// every role reads it.
	s, err := l.js.Stream(ctx, l.cfg.keysStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = l.createKeysStream(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: data-key stream: %w", err)
	}
	k := &DataKeys{l: l, stream: s}
	if l.srv != nil && l.cfg.Durability == GroupCommit {
		sub, err := l.nc.Subscribe(l.cfg.keysCommitSubject(), func(m *nats.Msg) {
			var reply []byte
			if err := k.syncFiles(); err != nil {
				reply = []byte(err.Error())
			}
			if err := m.Respond(reply); err != nil {
				l.cfg.Logger.Warn("eventlog: answering a data-key commit barrier", "err", err)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("eventlog: serving data-key commit barriers: %w", err)
		}
		l.keysSub = sub
	}
	l.keys = k
	return k, nil
}

// Put stores keys (a new id, or a new wrapping of an existing one: the latest message of an id
// is its key) and returns once they are durable.
func (k *DataKeys) Put(ctx context.Context, keys ...*eventv1.DataKey) error {
	for _, dk := range keys {
		if err := validKeyID(dk.GetId()); err != nil {
			return err
		}
		data, err := proto.Marshal(dk)
		if err != nil {
			return fmt.Errorf("eventlog: data key %s: %w", dk.GetId(), err)
		}
		if _, err := k.l.js.Publish(ctx, k.l.cfg.keySubject(dk.GetId()), data); err != nil {
			return fmt.Errorf("eventlog: storing data key %s: %w", dk.GetId(), err)
		}
	}
	return k.commit(ctx)
}

// Get returns the data key with id and the sequence of its message. ErrKeyNotFound if there is
// none.
func (k *DataKeys) Get(ctx context.Context, id string) (*eventv1.DataKey, uint64, error) {
	if err := validKeyID(id); err != nil {
		return nil, 0, err
	}
	msg, err := k.stream.GetLastMsgForSubject(ctx, k.l.cfg.keySubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, fmt.Errorf("%w: %s", ErrKeyNotFound, id)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("eventlog: data key %s: %w", id, err)
	}
	var dk eventv1.DataKey
	if err := proto.Unmarshal(msg.Data, &dk); err != nil {
		return nil, 0, fmt.Errorf("eventlog: data key %s at %d: %w", id, msg.Sequence, err)
	}
	return &dk, msg.Sequence, nil
}

// List returns the ids of every data key in the store.
func (k *DataKeys) List(ctx context.Context) ([]string, error) {
	info, err := k.stream.Info(ctx, jetstream.WithSubjectFilter(k.l.cfg.Prefix+".dek.>"))
	if err != nil {
		return nil, fmt.Errorf("eventlog: listing data keys: %w", err)
	}
	ids := make([]string, 0, len(info.State.Subjects))
	prefix := k.l.cfg.Prefix + ".dek."
	for subj := range info.State.Subjects {
		tok, ok := strings.CutPrefix(subj, prefix)
		if !ok {
			continue
		}
		ids = append(ids, tok)
	}
	return ids, nil
}

// Erase destroys the data key with id: every message of it is overwritten in place and removed,
// and the change is durable when Erase returns. Erasing a key that is not there is not an error.
func (k *DataKeys) Erase(ctx context.Context, id string) error {
	for {
		_, seq, err := k.Get(ctx, id)
		if errors.Is(err, ErrKeyNotFound) {
			return k.commit(ctx)
		}
		if err != nil {
			return err
		}
		if err := k.stream.SecureDeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("eventlog: erasing data key %s: %w", id, err)
		}
	}
}

// commit makes what was stored or erased so far durable.
func (k *DataKeys) commit(ctx context.Context) error {
	if k.l.cfg.Durability != GroupCommit {
		return nil
	}
	if k.l.srv != nil {
		return k.syncFiles()
	}
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	reply, err := k.l.nc.RequestWithContext(ctx, k.l.cfg.keysCommitSubject(), nil)
	if err != nil {
		return fmt.Errorf("eventlog: data-key commit barrier: %w", err)
	}
	if len(reply.Data) > 0 {
		return fmt.Errorf("eventlog: data-key commit barrier: %s", reply.Data)
	}
	return nil
}

// syncFiles fsyncs every file of the data-key stream's messages and its directory. The stream
// is small (a message per Secret) and written rarely (in batches), so syncing it whole is cheap.
func (k *DataKeys) syncFiles() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	cfg := k.l.cfg
	cfg.Stream = cfg.keysStream()
	dir := streamMsgsDir(&cfg, cfg.Stream)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("eventlog: data-key commit: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			if os.IsNotExist(err) {
				continue // compacted away meanwhile
			}
			return fmt.Errorf("eventlog: data-key commit: %w", err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("eventlog: data-key commit: fsync %s: %w", f.Name(), err)
		}
	}
	return syncDir(dir)
}

// Rewrap stores keys, new wrappings of existing data keys, each only if the key's latest
// message is still the one at the matching sequence in was (a key destroyed meanwhile stays
// destroyed), then erases those older messages. It returns how many it replaced; the changes are
// durable when it returns.
func (k *DataKeys) Rewrap(ctx context.Context, keys []*eventv1.DataKey, was []uint64) (int, error) {
	if len(keys) != len(was) {
		return 0, fmt.Errorf("%w: %d keys and %d sequences", ErrInvalid, len(keys), len(was))
	}
	var replaced []uint64
	for i, dk := range keys {
		if err := validKeyID(dk.GetId()); err != nil {
			return 0, err
		}
		data, err := proto.Marshal(dk)
		if err != nil {
			return 0, fmt.Errorf("eventlog: data key %s: %w", dk.GetId(), err)
		}
		_, err = k.l.js.Publish(ctx, k.l.cfg.keySubject(dk.GetId()), data, jetstream.WithExpectLastSequencePerSubject(was[i]))
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			continue // destroyed or re-wrapped by another meanwhile
		}
		if err != nil {
			return 0, fmt.Errorf("eventlog: re-wrapping data key %s: %w", dk.GetId(), err)
		}
		replaced = append(replaced, was[i])
	}
	for _, seq := range replaced {
		if err := k.stream.SecureDeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, fmt.Errorf("eventlog: erasing data-key message %d: %w", seq, err)
		}
	}
	return len(replaced), k.commit(ctx)
}

// Each calls fn with every data key in the store, in the order they were stored (of two messages
// of one id, the later is its key), reading the whole store as one stream: what a start needs to
// have every key at hand at once, far faster than a Get per key.
func (k *DataKeys) Each(ctx context.Context, fn func(*eventv1.DataKey) error) error {
	info, err := k.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("eventlog: data keys: %w", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	cons, err := k.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("eventlog: reading data keys: %w", err)
	}
	for {
		batch, err := cons.Fetch(1024, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("eventlog: reading data keys: %w", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("eventlog: reading data keys: %w", err)
			}
			var dk eventv1.DataKey
			if err := proto.Unmarshal(msg.Data(), &dk); err != nil {
				return fmt.Errorf("eventlog: data key at %d: %w", meta.Sequence.Stream, err)
			}
			if err := fn(&dk); err != nil {
				return err
			}
			if meta.Sequence.Stream >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("eventlog: reading data keys: %w", err)
		}
		if got == 0 {
			return fmt.Errorf("eventlog: reading data keys: the stream ended before %d", last)
		}
	}
}

// createKeysStream creates the data-key stream.
func (l *Log) createKeysStream(ctx context.Context) (jetstream.Stream, error) {
	return l.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              l.cfg.keysStream(),
		Description:       "logplane data keys: one wrapped data key per subject; destroying one forgets what it sealed",
		Subjects:          []string{l.cfg.Prefix + ".dek.>"},
		Storage:           jetstream.FileStorage,
		Replicas:          l.cfg.Replicas,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		Compression:       jetstream.NoCompression,
		AllowDirect:       true,
		Duplicates:        100 * time.Millisecond,
	})
}
