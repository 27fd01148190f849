package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
// key-value bucket of their own, in memory: they need not outlive the server.
type Leases struct {
	kv  jetstream.KeyValue
	ttl time.Duration
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
	kv, err := l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      l.cfg.Stream + "_LEASES_" + strings.ToUpper(bucket),
		Description: "logplane leases: " + bucket,
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.MemoryStorage,
		Replicas:    l.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("eventlog: lease bucket %s: %w", bucket, err)
	}
	return &Leases{kv: kv, ttl: ttl}, nil
}

// TTL is how long a lease lasts without renewal.
func (ls *Leases) TTL() time.Duration { return ls.ttl }

// Acquire claims name for holder. If holder already has it (a restart with the same identity),
// Acquire renews it. If another holder has it, Acquire returns ErrHeld.
func (ls *Leases) Acquire(ctx context.Context, name, holder string) (Lease, error) {
	key := kvKey(name)
	rev, err := ls.kv.Create(ctx, key, []byte(holder))
	if err == nil {
		return Lease{Name: name, Holder: holder, revision: rev}, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return Lease{}, fmt.Errorf("eventlog: acquiring lease %s: %w", name, err)
	}
	cur, err := ls.kv.Get(ctx, key)
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
	rev, err := ls.kv.Update(ctx, kvKey(l.Name), []byte(l.Holder), l.revision)
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
	err := ls.kv.Delete(ctx, kvKey(l.Name), jetstream.LastRevision(l.revision))
	var apiErr *jetstream.APIError
	if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
		return fmt.Errorf("eventlog: releasing lease %s: %w", l.Name, err)
	}
	return nil
}

// Holders returns the holder of every live lease whose name starts with prefix.
func (ls *Leases) Holders(ctx context.Context, prefix string) (map[string]string, error) {
	lister, err := ls.kv.ListKeys(ctx)
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
		e, err := ls.kv.Get(ctx, key)
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
