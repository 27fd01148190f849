// Package encryption is envelope encryption of objects in the log (Secrets): each object is
// sealed with AES-256-GCM under a data key of its own, and data keys are kept, wrapped by a
// key-encryption key, in the log's data-key store (eventlog.DataKeys). The key-encryption key is
// a key service with the KMS v2 plug-in interface (k8s.io/kms/pkg/service): the local KeyRing in
// the data directory by default, or an external key service. The Sealer seals on the write path
// (registry) and opens on the read path (projections, and the registry's reads of the log), so
// that the API and reconcilers see plain objects while the log, snapshots and the store's files
// hold only ciphertext. Destroying an object's data key after it was deleted (Sweeper) forgets
// every revision of it at once (crypto-shredding); rotating the key-encryption key re-wraps the
// data keys (Rewrap) and rewrites no object.
//
// It imports eventlog (the data-key store's errors) and proto; the registry, projections and
// cmd/logplane use it.
package encryption

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	kmsservice "k8s.io/kms/pkg/service"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/eventlog"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// ErrForgotten: the object was sealed with a data key that has been destroyed (the object was
// deleted and its grace has passed); its values can never be read again. It has a Forgotten
// method, so that readers that do not import this package can tell it from damage.
var ErrForgotten error = forgottenError{}

type forgottenError struct{}

func (forgottenError) Error() string {
	return "encryption: the values were forgotten: their data key was destroyed"
}

// Forgotten marks the error (projections.Forgotten).
func (forgottenError) Forgotten() bool { return true }

var (
	// ErrKEKMissing: a data key is wrapped by a key-encryption key the key service does not hold.
	ErrKEKMissing = errors.New("encryption: key-encryption key missing")
)

// keyStore is what the sealer needs of the data-key store.
type keyStore interface {
	Put(ctx context.Context, keys ...*eventv1.DataKey) error
	Get(ctx context.Context, id string) (*eventv1.DataKey, uint64, error)
	List(ctx context.Context) ([]string, error)
	Each(ctx context.Context, fn func(*eventv1.DataKey) error) error
	Erase(ctx context.Context, id string) error
	Rewrap(ctx context.Context, keys []*eventv1.DataKey, was []uint64) (int, error)
}

var _ keyStore = (*eventlog.DataKeys)(nil)

// Config configures a Sealer.
type Config struct {
	// KMS wraps and unwraps data keys: a KeyRing, or an external key service. Required.
	KMS kmsservice.Service
	// Keys is the data-key store. Required.
	Keys *eventlog.DataKeys
	// PoolSize is how many data keys are made and stored at a time, ahead of the objects that
	// will use them, so that a create never waits for a key to be stored. Default 64.
	PoolSize int
	// PoolMaxAge: a data key made ahead is used only this long after it was made; the Sweeper
	// leaves unused keys alone until twice this age. Default 5 minutes.
	PoolMaxAge time.Duration
	// Clock. Default the real one.
	Clock clock.PassiveClock
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Sealer seals and opens objects. It is safe for concurrent use.
type Sealer struct {
	kms    kmsservice.Service
	keys   keyStore
	size   int
	maxAge time.Duration
	clock  clock.PassiveClock
	log    *slog.Logger

	mu        sync.Mutex
	aeads     map[string]cipher.AEAD // data key id → its cipher
	forgotten map[string]bool        // data keys found destroyed
	byUID     map[string]string      // object uid → the data key it is sealed with
	used      map[string]bool        // data keys this process has seen sealing an object
	pool      []pooled
	refilling chan struct{} // closed when the refill under way ends; nil if none runs
	refillErr error
}

type pooled struct {
	id   string
	aead cipher.AEAD
	made time.Time
}

// NewSealer returns a sealer; it stores no key until the first Seal.
func NewSealer(cfg Config) (*Sealer, error) {
	if cfg.KMS == nil || cfg.Keys == nil {
		return nil, errors.New("encryption: a sealer needs a key service and a data-key store")
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 64
	}
	if cfg.PoolMaxAge <= 0 {
		cfg.PoolMaxAge = 5 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Sealer{
		kms: cfg.KMS, keys: cfg.Keys, size: cfg.PoolSize, maxAge: cfg.PoolMaxAge, clock: cfg.Clock, log: cfg.Logger,
		aeads: map[string]cipher.AEAD{}, forgotten: map[string]bool{}, byUID: map[string]string{}, used: map[string]bool{},
	}, nil
}

// Check makes sure the key service can unwrap every data key already stored: a
// key ring that is not the one that wrapped them, or a key service that has lost its key, is
// found here, before anything is served, rather than as unreadable Secrets.
func (s *Sealer) Check(ctx context.Context) error {
	st, err := s.kms.Status(ctx)
	if err != nil {
		return fmt.Errorf("encryption: key service status: %w", err)
	}
	if st.Healthz != "ok" {
		return fmt.Errorf("encryption: key service is not healthy: %s", st.Healthz)
	}
	// Every data key is unwrapped now, read from the store as one stream: a key service that
	// cannot unwrap one is found before anything is served, and opening the Secrets of a
	// snapshot then finds every key at hand.
	n := 0
	err = s.keys.Each(ctx, func(dk *eventv1.DataKey) error {
		key, err := s.kms.Decrypt(ctx, dk.GetId(), &kmsservice.DecryptRequest{Ciphertext: dk.GetWrapped(), KeyID: dk.GetKekId(), Annotations: dk.GetAnnotations()})
		if err != nil {
			return fmt.Errorf("encryption: the key service cannot unwrap data key %s (wrapped by %s): %w", dk.GetId(), dk.GetKekId(), err)
		}
		a, err := newAEAD(key)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.aeads[dk.GetId()] = a
		s.mu.Unlock()
		n++
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Debug("encryption: unwrapped the data keys", "keys", n)
	return nil
}

// StoredKeys says how many data keys the store holds.
func (s *Sealer) StoredKeys(ctx context.Context) (int, error) {
	ids, err := s.keys.List(ctx)
	return len(ids), err
}

// Seal encrypts ev's object in place under the data key of the object ev.Ref names (a new one
// for an object not seen before): ev then carries a SealedObject.
func (s *Sealer) Seal(ctx context.Context, ev *eventv1.ObjectChanged) error {
	if ev.GetEncoding() == eventv1.Encoding_ENCODING_SEALED {
		return nil
	}
	uid := ev.GetRef().GetUid()
	if uid == "" {
		return errors.New("encryption: sealing an object with no uid")
	}
	id, a, err := s.keyFor(ctx, uid)
	if err != nil {
		return err
	}
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("encryption: %w", err)
	}
	so := &eventv1.SealedObject{Encoding: ev.GetEncoding(), KeyId: id, Nonce: nonce,
		Ciphertext: a.Seal(nil, nonce, ev.GetObject(), additionalData(ev.GetRef()))}
	b, err := proto.Marshal(so)
	if err != nil {
		return fmt.Errorf("encryption: %w", err)
	}
	ev.Object, ev.Encoding = b, eventv1.Encoding_ENCODING_SEALED
	return nil
}

// Open returns ev with its object opened: ev itself if it is not sealed, else a copy (ev is not
// changed). ErrForgotten if its data key was destroyed; any other error means it cannot be read.
func (s *Sealer) Open(ctx context.Context, ev *eventv1.ObjectChanged) (*eventv1.ObjectChanged, error) {
	if ev.GetEncoding() != eventv1.Encoding_ENCODING_SEALED {
		return ev, nil
	}
	var so eventv1.SealedObject
	if err := proto.Unmarshal(ev.GetObject(), &so); err != nil {
		return nil, fmt.Errorf("encryption: a sealed object that does not decode: %w", err)
	}
	a, err := s.aead(ctx, so.GetKeyId())
	if err != nil {
		return nil, err
	}
	if len(so.GetNonce()) != a.NonceSize() {
		return nil, fmt.Errorf("encryption: a sealed object with a nonce of %d bytes", len(so.GetNonce()))
	}
	plain, err := a.Open(nil, so.GetNonce(), so.GetCiphertext(), additionalData(ev.GetRef()))
	if err != nil {
		return nil, fmt.Errorf("encryption: opening %s/%s with data key %s: %w", ev.GetRef().GetNamespace(), ev.GetRef().GetName(), so.GetKeyId(), err)
	}
	s.mu.Lock()
	s.used[so.GetKeyId()] = true
	if ev.GetType() != eventv1.ChangeType_CHANGE_TYPE_DELETED {
		s.byUID[ev.GetRef().GetUid()] = so.GetKeyId()
	}
	s.mu.Unlock()
	return &eventv1.ObjectChanged{
		Type: ev.Type, Reason: ev.Reason, Actor: ev.Actor, Cause: ev.Cause, Time: ev.Time, Ref: ev.Ref,
		Encoding: so.GetEncoding(), Object: plain, Labels: ev.Labels, Fields: ev.Fields, Annotations: ev.Annotations,
	}, nil
}

// KeyIDOf returns the id of the data key that sealed ev's object, "" if it is not sealed.
func KeyIDOf(ev *eventv1.ObjectChanged) string {
	if ev.GetEncoding() != eventv1.Encoding_ENCODING_SEALED {
		return ""
	}
	var so eventv1.SealedObject
	if err := proto.Unmarshal(ev.GetObject(), &so); err != nil {
		return ""
	}
	return so.GetKeyId()
}

// additionalData binds a sealed object to the object it is: it cannot be opened as another.
func additionalData(r *eventv1.ObjectRef) []byte {
	b := make([]byte, 0, 128)
	for _, s := range [...]string{r.GetGroup(), r.GetResource(), r.GetNamespace(), r.GetName(), r.GetUid()} {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

// keyFor returns the data key of the object with uid, taking a new one from the pool for an
// object not seen before.
func (s *Sealer) keyFor(ctx context.Context, uid string) (string, cipher.AEAD, error) {
	s.mu.Lock()
	if id, ok := s.byUID[uid]; ok {
		a := s.aeads[id]
		s.mu.Unlock()
		if a != nil {
			return id, a, nil
		}
		a, err := s.aead(ctx, id)
		return id, a, err
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		now := s.clock.Now()
		for len(s.pool) > 0 && now.Sub(s.pool[0].made) > s.maxAge {
			s.pool = s.pool[1:] // too old to use: the sweeper may soon take it for an orphan
		}
		if len(s.pool) > 0 {
			k := s.pool[0]
			s.pool = s.pool[1:]
			s.byUID[uid] = k.id
			s.used[k.id] = true
			if len(s.pool) < s.size/2 && s.refilling == nil {
				s.startRefillLocked(context.WithoutCancel(ctx))
			}
			s.mu.Unlock()
			return k.id, k.aead, nil
		}
		if s.refilling == nil {
			s.startRefillLocked(context.WithoutCancel(ctx))
		}
		wait := s.refilling
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return "", nil, fmt.Errorf("encryption: waiting for data keys: %w", ctx.Err())
		}
		s.mu.Lock()
		err := s.refillErr
		s.mu.Unlock()
		if err != nil {
			return "", nil, err
		}
	}
}

// startRefillLocked starts making and storing a batch of data keys. Called with mu held.
func (s *Sealer) startRefillLocked(ctx context.Context) {
	done := make(chan struct{})
	s.refilling = done
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		fresh, err := s.makeKeys(ctx, s.size)
		s.mu.Lock()
		s.pool = append(s.pool, fresh...)
		s.refillErr = err
		s.refilling = nil
		s.mu.Unlock()
		close(done)
		if err != nil {
			s.log.Error("encryption: making data keys", "err", err)
		}
	}()
}

// refresher is a key service that can pick up a rotation made by another process (KeyRing).
type refresher interface{ Refresh() error }

// makeKeys makes n data keys, wraps them with the key service and stores them, durably.
func (s *Sealer) makeKeys(ctx context.Context, n int) ([]pooled, error) {
	if r, ok := s.kms.(refresher); ok {
		if err := r.Refresh(); err != nil {
			return nil, err
		}
	}
	now := s.clock.Now()
	recs := make([]*eventv1.DataKey, 0, n)
	out := make([]pooled, 0, n)
	for range n {
		key := make([]byte, 32)
		idb := make([]byte, 16)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("encryption: %w", err)
		}
		if _, err := rand.Read(idb); err != nil {
			return nil, fmt.Errorf("encryption: %w", err)
		}
		id := "dek-" + hex.EncodeToString(idb)
		resp, err := s.kms.Encrypt(ctx, id, key)
		if err != nil {
			return nil, fmt.Errorf("encryption: wrapping a data key: %w", err)
		}
		a, err := newAEAD(key)
		if err != nil {
			return nil, err
		}
		recs = append(recs, &eventv1.DataKey{Id: id, KekId: resp.KeyID, Wrapped: resp.Ciphertext,
			Annotations: resp.Annotations, Created: timestamppb.New(now)})
		out = append(out, pooled{id: id, aead: a, made: now})
	}
	if err := s.keys.Put(ctx, recs...); err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, p := range out {
		s.aeads[p.id] = p.aead
	}
	s.mu.Unlock()
	return out, nil
}

// aead returns the cipher of data key id, unwrapping it if needed.
func (s *Sealer) aead(ctx context.Context, id string) (cipher.AEAD, error) {
	s.mu.Lock()
	a, gone := s.aeads[id], s.forgotten[id]
	s.mu.Unlock()
	if a != nil {
		return a, nil
	}
	if gone {
		return nil, fmt.Errorf("%w (%s)", ErrForgotten, id)
	}
	dk, _, err := s.keys.Get(ctx, id)
	if errors.Is(err, eventlog.ErrKeyNotFound) {
		s.mu.Lock()
		s.forgotten[id] = true
		s.mu.Unlock()
		return nil, fmt.Errorf("%w (%s)", ErrForgotten, id)
	}
	if err != nil {
		return nil, err
	}
	key, err := s.kms.Decrypt(ctx, id, &kmsservice.DecryptRequest{Ciphertext: dk.GetWrapped(), KeyID: dk.GetKekId(), Annotations: dk.GetAnnotations()})
	if err != nil {
		return nil, fmt.Errorf("encryption: unwrapping data key %s: %w", id, err)
	}
	a, err = newAEAD(key)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.aeads[id] = a
	s.mu.Unlock()
	return a, nil
}

// forget drops what the sealer holds of data key id, which has been destroyed.
func (s *Sealer) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.aeads, id)
	s.forgotten[id] = true
	for uid, k := range s.byUID {
		if k == id {
			delete(s.byUID, uid)
		}
	}
}
