// Package pki makes and loads the TLS material of a logplane API server in a data directory: a
// certificate authority, the server's certificate (for 127.0.0.1, ::1, localhost and the host
// name), an admin client certificate, and a kubeconfig that uses them.
//
// Files (PEM) in the directory: ca.crt, ca.key, server.crt, server.key, admin.crt, admin.key.
// Existing files are kept, so restarting on the same directory keeps the same identities. Every
// file is written durably (durablefile: temporary file, fsync, rename, fsync of the directory), so
// a power loss leaves each one whole. A damaged file found at start is made again when that keeps
// the cluster's identity (a leaf certificate or key; the CA certificate, from the CA key); a
// damaged or missing CA key is an error that says what to do.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/logplane/logplane/durablefile"
)

// AdminUser and AdminGroup are the identity of the admin client certificate.
const (
	AdminUser  = "admin"
	AdminGroup = "system:masters"
)

// validity of the certificates made here.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 2 * 365 * 24 * time.Hour
)

// CA is a certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// Material is what a server needs: its TLS configuration (server certificate, client CAs) and
// the PEM files' locations.
type Material struct {
	CA  *CA
	Dir string
	// TLS serves with the server certificate and verifies client certificates signed by the CA
	// when a client presents one.
	TLS *tls.Config
	// Remade says which files Load found damaged (empty, not PEM, not matching their key or
	// not signed by the CA) and made again, and why, for the caller to report.
	Remade []string
}

// Load makes whatever is missing in dir (created 0700) and loads it. hosts are extra names or
// addresses for the server certificate, beside 127.0.0.1, ::1, localhost and the host name; if
// the existing server certificate lacks one of them, it is made again.
func Load(dir string, hosts ...string) (*Material, error) {
	if err := durablefile.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var remade []string
	ca, err := loadOrMakeCA(dir, &remade)
	if err != nil {
		return nil, err
	}
	names := []string{"127.0.0.1", "::1", "localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	names = append(names, hosts...)
	if err := ensureLeaf(ca, dir, "server", "logplane-apiserver", nil, names, x509.ExtKeyUsageServerAuth, &remade); err != nil {
		return nil, err
	}
	if err := ensureLeaf(ca, dir, "admin", AdminUser, []string{AdminGroup}, nil, x509.ExtKeyUsageClientAuth, &remade); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &Material{CA: ca, Dir: dir, Remade: remade, TLS: &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}}, nil
}

// loadOrMakeCA loads the CA from dir, or makes one if dir has neither ca.crt nor ca.key. A CA
// certificate that is damaged (empty after a power loss, not PEM, not matching the key) is made
// again from the key with the same subject: the key is the cluster's identity, so certificates it
// signed stay valid and clients that trust the old ca.crt trust the new one's signatures. A missing
// or damaged key cannot be made again without a new identity: that is an error saying what to do.
func loadOrMakeCA(dir string, remade *[]string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
		return makeCA(certPath, keyPath, key, true)
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, fmt.Errorf("pki: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, fmt.Errorf("pki: %w", keyErr)
	}
	key, err := parseKey(keyPEM)
	if keyErr != nil || err != nil {
		why := "is missing"
		if keyErr == nil {
			why = fmt.Sprintf("is damaged (%v)", err)
		}
		return nil, fmt.Errorf("pki: %s %s: the cluster CA's private key cannot be made again without changing "+
			"the cluster's identity. Restore %s (and ca.crt) from a backup of %s; or, to start over with a new CA, "+
			"move %s aside and start again: every kubeconfig and node agent must then be given the new ca.crt",
			keyPath, why, keyPath, dir, dir)
	}
	cert, err := parseCert(certPEM)
	if certErr == nil && err == nil && publicKeyMatches(cert, key) {
		return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
	}
	why := "is missing"
	switch {
	case certErr != nil:
	case err != nil:
		why = fmt.Sprintf("is damaged (%v)", err)
	default:
		why = "does not match ca.key"
	}
	*remade = append(*remade, fmt.Sprintf("%s %s: made again from ca.key (same key and subject: the cluster's identity is kept)", certPath, why))
	return makeCA(certPath, keyPath, key, false)
}

// makeCA makes the CA's self-signed certificate for key and writes it (and the key, if new).
func makeCA(certPath, keyPath string, key *ecdsa.PrivateKey, newKey bool) (*CA, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "logplane-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if newKey {
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
		// The key first: a certificate without its key could not be made again, a key without
		// its certificate can.
		if err := durablefile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
	}
	if err := durablefile.Write(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// Issue makes a certificate signed by the CA: a client certificate for user cn in groups
// (node agents: cn "system:node:<name>", group "system:nodes"), or a server certificate when
// hosts are given.
func (ca *CA) Issue(cn string, groups, hosts []string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: groups},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// ensureLeaf makes dir/<name>.crt and .key unless they exist, match, are signed by ca, and
// cover hosts. A pair that exists but is damaged is reported in remade.
func ensureLeaf(ca *CA, dir, name, cn string, groups, hosts []string, usage x509.ExtKeyUsage, remade *[]string) error {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	if certErr == nil && keyErr == nil {
		cert, key, err := parsePair(certPEM, keyPEM)
		switch {
		case err != nil:
			*remade = append(*remade, fmt.Sprintf("%s or %s is damaged (%v): made again", certPath, keyPath, err))
		case !publicKeyMatches(cert, key):
			*remade = append(*remade, fmt.Sprintf("%s does not match %s: made again", certPath, keyPath))
		case cert.CheckSignatureFrom(ca.Cert) == nil && time.Until(cert.NotAfter) > 24*time.Hour && covers(cert, hosts):
			return nil
		}
	} else if certErr == nil || keyErr == nil {
		*remade = append(*remade, fmt.Sprintf("%s and %s: one of the pair is missing: made again", certPath, keyPath))
	}
	certPEM, keyPEM, err := ca.Issue(cn, groups, hosts, usage)
	if err != nil {
		return err
	}
	if err := durablefile.Write(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := durablefile.Write(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func covers(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(cert.DNSNames, h) {
			return false
		}
	}
	return true
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	if len(certPEM) == 0 {
		return nil, errors.New("empty file")
	}
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, errors.New("not PEM")
	}
	return x509.ParseCertificate(b.Bytes)
}

func parseKey(keyPEM []byte) (*ecdsa.PrivateKey, error) {
	if len(keyPEM) == 0 {
		return nil, errors.New("empty file")
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, errors.New("not PEM")
	}
	return x509.ParseECPrivateKey(b.Bytes)
}

func publicKeyMatches(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(&key.PublicKey)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// WriteKubeconfig writes a kubeconfig for the admin to path (0600): cluster "logplane" at
// server (https://127.0.0.1:6443), user "admin" with the admin client certificate, context
// "logplane" in namespace default, all embedded.
func (m *Material) WriteKubeconfig(path, server string) error {
	cfg, err := m.Kubeconfig(server)
	if err != nil {
		return err
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("pki: encoding kubeconfig: %w", err)
	}
	if err := durablefile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("pki: writing kubeconfig: %w", err)
	}
	return nil
}

// Kubeconfig is the admin kubeconfig WriteKubeconfig writes.
func (m *Material) Kubeconfig(server string) (*clientcmdapi.Config, error) {
	certPEM, err := os.ReadFile(filepath.Join(m.Dir, "admin.crt"))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(m.Dir, "admin.key"))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["logplane"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: m.CA.CertPEM}
	cfg.AuthInfos[AdminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["logplane"] = &clientcmdapi.Context{Cluster: "logplane", AuthInfo: AdminUser, Namespace: "default"}
	cfg.CurrentContext = "logplane"
	return cfg, nil
}

// SignRequest signs the public key of a certificate signing request (PEM) as a certificate for
// user cn in groups, with the request's DNS names and IP addresses: the holder of the request's
// key gets a certificate without the CA's key leaving this process. The subject is the
// caller's to decide, never the request's.
func (ca *CA) SignRequest(csrPEM []byte, cn string, groups []string, usages ...x509.ExtKeyUsage) ([]byte, error) {
	csr, err := ParseRequest(csrPEM)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: groups},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
		DNSNames:     csr.DNSNames,
		IPAddresses:  csr.IPAddresses,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// ParseRequest reads a PEM certificate signing request and checks its signature.
func ParseRequest(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("pki: the signing request is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: signing request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: signing request: %w", err)
	}
	return csr, nil
}

// NewRequest makes a key and a certificate signing request (both PEM) for the names and
// addresses in hosts.
func NewRequest(cn string, hosts []string) (csrPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}
