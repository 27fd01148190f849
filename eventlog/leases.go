package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors of leases.
var (
	// ErrHeld: another holder has the lease and it has not expired.
	ErrHeld = errors.New("eventlog: lease held by another holder")
	// ErrLost: the lease expired or was taken over since it was last renewed.
	ErrLost = errors.New("eventlog: lease lost")
)

// Leases are short-lived, exclusive claims on names, such as the partitions of a reconciler's
// keys or a singleton's leadership: at most one holder has a name at a time, and a claim that is
// not renewed within the TTL expires so that others can take it. They live in a JetStream
// key-value bucket of their own, in memory: they need not outlive the server. When the server
// restarts (the embedded one restarts with its process), the bucket is made again at its next use,
// empty: every holder finds its leases lost and acquires them again.
type Leases struct {
	js  jetstream.JetStream
	cfg jetstream.KeyValueConfig
	ttl time.Duration

	mu sync.Mutex
	kv jetstream.KeyValue
}

// Lease is one held claim. Renew and Release need the one Acquire or the last Renew returned.
type Lease struct {
	Name     string
	Holder   string
	revision uint64
}

// Leases opens (creating if needed) the lease bucket of the given name, whose leases expire ttl
// after they were last acquired or renewed.
func (l *Log) Leases(ctx context.Context, bucket string, ttl time.Duration) (*Leases, error) {
	if ttl < time.Second {
		return nil, fmt.Errorf("eventlog: lease ttl %v is under the server's one-second resolution", ttl)
	}
	ls := &Leases{js: l.js, ttl: ttl, cfg: jetstream.KeyValueConfig{
		Bucket:      l.cfg.Stream + "_LEASES_" + strings.ToUpper(bucket),
		Description: "logplane leases: " + bucket,
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.MemoryStorage,
		Replicas:    l.cfg.Replicas,
	}}
	if _, err := ls.bucket(ctx, nil); err != nil {
		return nil, err
	}
	return ls, nil
}

// bucket returns the key-value bucket, made (again) if there is none yet or if it is stale, the
// one that a call failed on with a sign that the server lost it.
func (ls *Leases) bucket(ctx context.Context, stale jetstream.KeyValue) (jetstream.KeyValue, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.kv != nil && ls.kv != stale {
		return ls.kv, nil
	}
	kv, err := ls.js.CreateOrUpdateKeyValue(ctx, ls.cfg)
	if err != nil {
		return nil, fmt.Errorf("eventlog: lease bucket %s: %w", ls.cfg.Bucket, err)
	}
	ls.kv = kv
	return kv, nil
}

// do runs op on the bucket; if the bucket's stream is gone (a restarted server has lost its
// memory streams), it makes the bucket again and runs op once more.
func (ls *Leases) do(ctx context.Context, op func(jetstream.KeyValue) error) error {
	kv, err := ls.bucket(ctx, nil)
	if err != nil {
		return err
	}
	err = op(kv)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, jetstream.ErrStreamNotFound) &&
		!errors.Is(err, jetstream.ErrBucketNotFound) {
		return err
	}
	if kv, err = ls.bucket(ctx, kv); err != nil {
		return err
	}
	return op(kv)
}

// TTL is how long a lease lasts without renewal.
func (ls *Leases) TTL() time.Duration { return ls.ttl }

// Acquire claims name for holder. If holder already has it (a restart with the same identity),
// Acquire renews it. If another holder has it, Acquire returns ErrHeld.
func (ls *Leases) Acquire(ctx context.Context, name, holder string) (Lease, error) {
	key := kvKey(name)
	var rev uint64
	err := ls.do(ctx, func(kv jetstream.KeyValue) (err error) {
		rev, err = kv.Create(ctx, key, []byte(holder))
		return err
	})
	if err == nil {
		return Lease{Name: name, Holder: holder, revision: rev}, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return Lease{}, fmt.Errorf("eventlog: acquiring lease %s: %w", name, err)
	}
	var cur jetstream.KeyValueEntry
	err = ls.do(ctx, func(kv jetstream.KeyValue) (err error) {
		cur, err = kv.Get(ctx, key)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Lease{}, fmt.Errorf("%w: %s changed hands while acquiring", ErrHeld, name)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("eventlog: acquiring lease %s: %w", name, err)
	}
	if string(cur.Value()) != holder {
		return Lease{}, fmt.Errorf("%w: %s by %s", ErrHeld, name, cur.Value())
	}
	return ls.Renew(ctx, Lease{Name: name, Holder: holder, revision: cur.Revision()})
}

// Renew extends a held lease by the TTL. If it expired or was taken meanwhile, ErrLost.
func (ls *Leases) Renew(ctx context.Context, l Lease) (Lease, error) {
	var rev uint64
	err := ls.do(ctx, func(kv jetstream.KeyValue) (err error) {
		rev, err = kv.Update(ctx, kvKey(l.Name), []byte(l.Holder), l.revision)
		return err
	})
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return Lease{}, fmt.Errorf("%w: %s", ErrLost, l.Name)
		}
		return Lease{}, fmt.Errorf("eventlog: renewing lease %s: %w", l.Name, err)
	}
	l.revision = rev
	return l, nil
}

// Release gives a held lease up at once. Releasing a lease already lost is not an error.
func (ls *Leases) Release(ctx context.Context, l Lease) error {
	err := ls.do(ctx, func(kv jetstream.KeyValue) error {
		return kv.Delete(ctx, kvKey(l.Name), jetstream.LastRevision(l.revision))
	})
	var apiErr *jetstream.APIError
	if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
		return fmt.Errorf("eventlog: releasing lease %s: %w", l.Name, err)
	}
	return nil
}

// Holders returns the holder of every live lease whose name starts with prefix.
func (ls *Leases) Holders(ctx context.Context, prefix string) (map[string]string, error) {
	var kv jetstream.KeyValue
	var lister jetstream.KeyLister
	err := ls.do(ctx, func(b jetstream.KeyValue) (err error) {
		kv = b
		lister, err = b.ListKeys(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("eventlog: listing leases: %w", err)
	}
	defer func() { _ = lister.Stop() }() // stopping a finished lister only reports that it finished
	out := map[string]string{}
	ep := kvKey(prefix)
	for key := range lister.Keys() {
		if !strings.HasPrefix(key, ep) {
			continue
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or released while listing
		}
		if err != nil {
			return nil, fmt.Errorf("eventlog: reading lease %s: %w", key, err)
		}
		out[fromKVKey(key)] = string(e.Value())
	}
	return out, nil
}

// kvKey makes name a valid key-value key: characters other than letters, digits and -/_. are
// written as =XX ('=' itself included).
func kvKey(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '/', c == '_', c == '.':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

func fromKVKey(key string) string {
	if !strings.Contains(key, "=") {
		return key
	}
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		if key[i] == '=' && i+2 < len(key) {
			if v, err := strconv.ParseUint(key[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(key[i])
	}
	return b.String()
}
