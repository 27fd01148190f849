package encryption

import (
	"context"
	"errors"
	"fmt"
	"time"

	kmsservice "k8s.io/kms/pkg/service"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// Sweeper destroys the data keys of deleted objects once they have been unused for the grace
// (crypto-shredding): from then on no revision of those objects can be opened, by any reader of
// the log or of a copy of the disk.
type Sweeper struct {
	sealer *Sealer
	// Live returns the ids of the data keys that live objects are sealed with (from a projection
	// that is caught up with the log).
	live  func() map[string]bool
	grace time.Duration

	unused map[string]time.Time // data keys found unused, and since when
}

// NewSweeper returns a sweeper over the sealer's data-key store. live returns the data keys that
// live objects use; grace is how long a key stays after its object was found deleted.
func NewSweeper(s *Sealer, live func() map[string]bool, grace time.Duration) *Sweeper {
	return &Sweeper{sealer: s, live: live, grace: grace, unused: map[string]time.Time{}}
}

// Sweep looks at every data key once: a key that no live object uses is destroyed when it has
// been found unused for the grace. A key made ahead for objects not yet written, and never seen
// used by this process, is left alone until it is twice the sealer's pool age. It returns the
// keys it destroyed.
func (w *Sweeper) Sweep(ctx context.Context) ([]string, error) {
	s := w.sealer
	ids, err := s.keys.List(ctx)
	if err != nil {
		return nil, err
	}
	live := w.live()
	now := s.clock.Now()
	var destroyed []string
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
		if live[id] {
			delete(w.unused, id)
			continue
		}
		since, ok := w.unused[id]
		if !ok {
			s.mu.Lock()
			used := s.used[id]
			s.mu.Unlock()
			if !used {
				dk, _, err := s.keys.Get(ctx, id)
				if errors.Is(err, eventlog.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return destroyed, err
				}
				if now.Sub(dk.GetCreated().AsTime()) < 2*s.maxAge {
					continue // perhaps in a pool, for an object being written
				}
			}
			since = now
			w.unused[id] = now
		}
		if now.Sub(since) < w.grace {
			continue
		}
		if err := s.keys.Erase(ctx, id); err != nil {
			return destroyed, err
		}
		s.forget(id)
		delete(w.unused, id)
		destroyed = append(destroyed, id)
		s.log.Info("encryption: destroyed the data key of a deleted object", "key", id)
	}
	for id := range w.unused {
		if !seen[id] {
			delete(w.unused, id)
		}
	}
	return destroyed, nil
}

// Run sweeps every interval until ctx ends, then returns ctx.Err(). A failed sweep is logged
// and tried again at the next tick.
func (w *Sweeper) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := w.Sweep(ctx); err != nil && ctx.Err() == nil {
			w.sealer.log.Error("encryption: sweeping data keys", "err", err)
		}
	}
}

// Rewrap re-wraps every data key that the key service's current key did not wrap, in batches,
// while the log serves: objects are not rewritten, only their data keys (one small message per
// object), and a key destroyed meanwhile stays destroyed. It returns how many it re-wrapped.
func (s *Sealer) Rewrap(ctx context.Context) (int, error) {
	if r, ok := s.kms.(refresher); ok {
		if err := r.Refresh(); err != nil {
			return 0, err
		}
	}
	st, err := s.kms.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("encryption: key service status: %w", err)
	}
	ids, err := s.keys.List(ctx)
	if err != nil {
		return 0, err
	}
	const batch = 256
	var keys []*eventv1.DataKey
	var was []uint64
	total := 0
	flush := func() error {
		n, err := s.keys.Rewrap(ctx, keys, was)
		total += n
		keys, was = keys[:0], was[:0]
		return err
	}
	for _, id := range ids {
		dk, seq, err := s.keys.Get(ctx, id)
		if errors.Is(err, eventlog.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return total, err
		}
		if dk.GetKekId() == st.KeyID {
			continue
		}
		plain, err := s.kms.Decrypt(ctx, id, &kmsservice.DecryptRequest{Ciphertext: dk.GetWrapped(), KeyID: dk.GetKekId(), Annotations: dk.GetAnnotations()})
		if err != nil {
			return total, fmt.Errorf("encryption: unwrapping data key %s: %w", id, err)
		}
		resp, err := s.kms.Encrypt(ctx, id, plain)
		if err != nil {
			return total, fmt.Errorf("encryption: wrapping data key %s: %w", id, err)
		}
		keys = append(keys, &eventv1.DataKey{Id: id, KekId: resp.KeyID, Wrapped: resp.Ciphertext, Annotations: resp.Annotations, Created: dk.GetCreated()})
		was = append(was, seq)
		if len(keys) == batch {
			if err := flush(); err != nil {
				return total, err
			}
		}
	}
	if len(keys) > 0 {
		if err := flush(); err != nil {
			return total, err
		}
	}
	return total, nil
}

// WrappedBy counts the data keys by the key-encryption key that wraps them.
func (s *Sealer) WrappedBy(ctx context.Context) (map[string]int, error) {
	ids, err := s.keys.List(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, id := range ids {
		dk, _, err := s.keys.Get(ctx, id)
		if errors.Is(err, eventlog.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[dk.GetKekId()]++
	}
	return out, nil
}

// LiveKeys returns a function that lists the data keys the live objects of sealed kinds in store
// use: what a Sweeper must keep.
func LiveKeys(store *projections.Store) func() map[string]bool {
	return func() map[string]bool {
		live := map[string]bool{}
		for _, k := range store.Catalog().All() {
			if !k.Sealed() || k.View != nil {
				continue
			}
			objs, _ := store.List(projections.Query{Resource: k.GroupResource()})
			for _, o := range objs {
				if o.Stored != nil {
					live[KeyIDOf(o.Stored)] = true
				}
			}
		}
		return live
	}
}
