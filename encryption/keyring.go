package encryption

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	kmsservice "k8s.io/kms/pkg/service"

	"github.com/logplane/logplane/durablefile"
)

// KeyRingFile is the name of the key ring in its directory.
const KeyRingFile = "kek.json"

// ErrNoKeyRing: the key ring file does not exist.
var ErrNoKeyRing = errors.New("encryption: no key-encryption key")

// KeyRing is the local key service: key-encryption keys (AES-256) in one file of the data
// directory, readable by its owner only, written durably. The newest key wraps new data keys;
// older ones stay to unwrap what they wrapped until a rotation has re-wrapped it all. It
// implements the KMS v2 service interface (k8s.io/kms/pkg/service), as an external key service's
// plug-in does, so the rest of the code cannot tell them apart.
type KeyRing struct {
	path string

	mu      sync.RWMutex
	keys    []ringKey // oldest first; the last is the primary
	aeads   map[string]cipher.AEAD
	modTime time.Time
}

var _ kmsservice.Service = (*KeyRing)(nil)

// ringFile is the key ring on disk.
type ringFile struct {
	Keys []ringKey `json:"keys"`
}

type ringKey struct {
	ID      string    `json:"id"`
	Key     []byte    `json:"key"`   // 32 bytes
	Check   string    `json:"check"` // HMAC-SHA256(key, id), base64: finds a damaged key
	Created time.Time `json:"created"`
}

func (k ringKey) check() string {
	m := hmac.New(sha256.New, k.Key)
	m.Write([]byte("logplane key-encryption key " + k.ID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// LoadKeyRing reads the key ring in dir. ErrNoKeyRing if there is none; any other error says
// how it is damaged.
func LoadKeyRing(dir string) (*KeyRing, error) {
	r := &KeyRing{path: filepath.Join(dir, KeyRingFile)}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// CreateKeyRing makes a key ring with one new key in dir (mode 0700), which must not hold one.
func CreateKeyRing(dir string, now time.Time) (*KeyRing, error) {
	path := filepath.Join(dir, KeyRingFile)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("encryption: %s exists", path)
	}
	if err := durablefile.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("encryption: %w", err)
	}
	r := &KeyRing{path: path}
	if err := r.add(now); err != nil {
		return nil, err
	}
	return r, nil
}

// Path is the key ring's file.
func (r *KeyRing) Path() string { return r.path }

// reload reads the file again.
func (r *KeyRing) reload() error {
	fi, err := os.Stat(r.path)
	if os.IsNotExist(err) {
		return fmt.Errorf("%w: %s does not exist", ErrNoKeyRing, r.path)
	}
	if err != nil {
		return fmt.Errorf("encryption: key ring: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("encryption: key ring %s is readable by others (mode %v): it must be 0600", r.path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("encryption: key ring: %w", err)
	}
	var f ringFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("encryption: key ring %s is damaged: %w", r.path, err)
	}
	if len(f.Keys) == 0 {
		return fmt.Errorf("encryption: key ring %s is damaged: it holds no key", r.path)
	}
	aeads := map[string]cipher.AEAD{}
	for _, k := range f.Keys {
		if len(k.Key) != 32 || k.ID == "" || !hmac.Equal([]byte(k.check()), []byte(k.Check)) {
			return fmt.Errorf("encryption: key ring %s is damaged: key %q does not match its check value", r.path, k.ID)
		}
		a, err := newAEAD(k.Key)
		if err != nil {
			return err
		}
		aeads[k.ID] = a
	}
	r.mu.Lock()
	r.keys, r.aeads, r.modTime = f.Keys, aeads, fi.ModTime()
	r.mu.Unlock()
	return nil
}

// Refresh reads the file again if it changed since it was read (a rotation by another process).
func (r *KeyRing) Refresh() error {
	fi, err := os.Stat(r.path)
	if err != nil {
		return fmt.Errorf("encryption: key ring: %w", err)
	}
	r.mu.RLock()
	same := fi.ModTime().Equal(r.modTime)
	r.mu.RUnlock()
	if same {
		return nil
	}
	return r.reload()
}

// Rotate adds a new key, which wraps every data key from now on, and returns its id.
func (r *KeyRing) Rotate(now time.Time) (string, error) {
	if err := r.add(now); err != nil {
		return "", err
	}
	return r.PrimaryID(), nil
}

// Retire removes every key but the primary. Call it only once nothing is wrapped by the others.
func (r *KeyRing) Retire() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := r.keys[len(r.keys)-1:]
	return r.writeLocked(keys)
}

func (r *KeyRing) add(now time.Time) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("encryption: %w", err)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("encryption: %w", err)
	}
	k := ringKey{ID: fmt.Sprintf("kek-%s-%x", now.UTC().Format("20060102T150405"), id), Key: key, Created: now.UTC()}
	k.Check = k.check()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writeLocked(append(slices.Clone(r.keys), k))
}

func (r *KeyRing) writeLocked(keys []ringKey) error {
	data, err := json.MarshalIndent(ringFile{Keys: keys}, "", "  ")
	if err != nil {
		return fmt.Errorf("encryption: %w", err)
	}
	if err := durablefile.Write(r.path, data, 0o600); err != nil {
		return fmt.Errorf("encryption: writing the key ring: %w", err)
	}
	aeads := map[string]cipher.AEAD{}
	for _, k := range keys {
		a, err := newAEAD(k.Key)
		if err != nil {
			return err
		}
		aeads[k.ID] = a
	}
	fi, err := os.Stat(r.path)
	if err != nil {
		return fmt.Errorf("encryption: key ring: %w", err)
	}
	r.keys, r.aeads, r.modTime = keys, aeads, fi.ModTime()
	return nil
}

// PrimaryID is the id of the key that wraps new data keys.
func (r *KeyRing) PrimaryID() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys[len(r.keys)-1].ID
}

// IDs returns the ids of every key in the ring, oldest first.
func (r *KeyRing) IDs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.ID
	}
	return ids
}

// Encrypt wraps data (a data key) with the primary key; uid names the request, as in KMS v2.
func (r *KeyRing) Encrypt(_ context.Context, _ string, data []byte) (*kmsservice.EncryptResponse, error) {
	r.mu.RLock()
	id := r.keys[len(r.keys)-1].ID
	a := r.aeads[id]
	r.mu.RUnlock()
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(data)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("encryption: %w", err)
	}
	return &kmsservice.EncryptResponse{Ciphertext: a.Seal(nonce, nonce, data, []byte(id)), KeyID: id}, nil
}

// Decrypt unwraps a data key wrapped by any key of the ring; a key the ring does not hold yet
// (another process rotated) makes it read its file again.
func (r *KeyRing) Decrypt(_ context.Context, _ string, req *kmsservice.DecryptRequest) ([]byte, error) {
	r.mu.RLock()
	a := r.aeads[req.KeyID]
	r.mu.RUnlock()
	if a == nil {
		if err := r.Refresh(); err != nil {
			return nil, err
		}
		r.mu.RLock()
		a = r.aeads[req.KeyID]
		r.mu.RUnlock()
		if a == nil {
			return nil, fmt.Errorf("%w: key-encryption key %q is not in %s", ErrKEKMissing, req.KeyID, r.path)
		}
	}
	if len(req.Ciphertext) < a.NonceSize() {
		return nil, fmt.Errorf("encryption: a wrapped data key of %d bytes", len(req.Ciphertext))
	}
	n := a.NonceSize()
	out, err := a.Open(nil, req.Ciphertext[:n], req.Ciphertext[n:], []byte(req.KeyID))
	if err != nil {
		return nil, fmt.Errorf("encryption: unwrapping a data key with %s: %w", req.KeyID, err)
	}
	return out, nil
}

// Status says the ring is healthy and names its primary key.
func (r *KeyRing) Status(context.Context) (*kmsservice.StatusResponse, error) {
	return &kmsservice.StatusResponse{Version: "v2", Healthz: "ok", KeyID: r.PrimaryID()}, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encryption: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("encryption: %w", err)
	}
	return a, nil
}
