package serviceaccount

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/logplane/logplane/durablefile"
)

// Key is the service account signing key.
type Key struct {
	// Private signs tokens.
	Private *rsa.PrivateKey
	// ID is the key's "kid": the unpadded base64url SHA-256 of its public key's DER, as
	// Kubernetes derives it (keyIDFromPublicKey), so relying parties pick the right key.
	ID string
	// Remade is set when Load found the key file damaged and made a new key: tokens signed with
	// the old one no longer authenticate.
	Remade bool
}

// keyBits is the size of the RSA key (RS256), as kubeadm's sa.key.
const keyBits = 2048

// LoadKey reads the signing key from dir/sa.key, or makes one (and dir/sa.pub) if there is none
// or the file is damaged; both are written durably, the private key readable by its owner only.
func LoadKey(dir string) (*Key, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if priv, perr := parseKey(b); perr == nil {
			return newKey(priv, false)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("serviceaccount: reading the signing key: %w", err)
	}
	remade := err == nil // the file was there but is damaged
	priv, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return nil, fmt.Errorf("serviceaccount: making a signing key: %w", err)
	}
	if err := durablefile.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("serviceaccount: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("serviceaccount: encoding the signing key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("serviceaccount: encoding the public key: %w", err)
	}
	if err := durablefile.Write(filepath.Join(dir, PublicKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return nil, fmt.Errorf("serviceaccount: writing the public key: %w", err)
	}
	if err := durablefile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("serviceaccount: writing the signing key: %w", err)
	}
	return newKey(priv, remade)
}

// NewKey makes a key in memory (for tests and embedders that keep their own).
func NewKey() (*Key, error) {
	priv, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return nil, fmt.Errorf("serviceaccount: making a signing key: %w", err)
	}
	return newKey(priv, false)
}

func newKey(priv *rsa.PrivateKey, remade bool) (*Key, error) {
	id, err := keyID(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Key{Private: priv, ID: id, Remade: remade}, nil
}

// parseKey reads a PEM RSA key, PKCS#8 or PKCS#1 (as kubeadm writes it).
func parseKey(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("serviceaccount: the signing key is not PEM")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("serviceaccount: the signing key: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("serviceaccount: the signing key is a %T, want RSA", k)
	}
	return rk, rk.Validate()
}

// keyID is Kubernetes' keyIDFromPublicKey.
func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("serviceaccount: failed to serialize public key to DER format: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
