// Package pki makes and loads the TLS material of a logplane API server in a data directory: a
// certificate authority, the server's certificate (for 127.0.0.1, ::1, localhost and the host
// name), an admin client certificate, and a kubeconfig that uses them.
//
// Files (PEM) in the directory: ca.crt, ca.key, server.crt, server.key, admin.crt, admin.key.
// Existing files are kept, so restarting on the same directory keeps the same identities.
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
}

// Load makes whatever is missing in dir (created 0700) and loads it. hosts are extra names or
// addresses for the server certificate, beside 127.0.0.1, ::1, localhost and the host name; if
// the existing server certificate lacks one of them, it is made again.
func Load(dir string, hosts ...string) (*Material, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	ca, err := loadOrMakeCA(dir)
	if err != nil {
		return nil, err
	}
	names := []string{"127.0.0.1", "::1", "localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	names = append(names, hosts...)
	if err := ensureLeaf(ca, dir, "server", "logplane-apiserver", nil, names, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if err := ensureLeaf(ca, dir, "admin", AdminUser, []string{AdminGroup}, nil, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &Material{CA: ca, Dir: dir, TLS: &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}}, nil
}

func loadOrMakeCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certPEM, err1 := os.ReadFile(certPath)
	keyPEM, err2 := os.ReadFile(keyPath)
	if err1 == nil && err2 == nil {
		cert, key, err := parsePair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", certPath, err)
		}
		return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
	}
	if !errors.Is(err1, os.ErrNotExist) && err1 != nil {
		return nil, fmt.Errorf("pki: %w", err1)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
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
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writePair(certPath, keyPath, certPEM, key); err != nil {
		return nil, err
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

// ensureLeaf makes dir/<name>.crt and .key unless they exist, are signed by ca, and cover hosts.
func ensureLeaf(ca *CA, dir, name, cn string, groups, hosts []string, usage x509.ExtKeyUsage) error {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if certPEM, err := os.ReadFile(certPath); err == nil {
		if keyPEM, err := os.ReadFile(keyPath); err == nil {
			if cert, _, err := parsePair(certPEM, keyPEM); err == nil && cert.CheckSignatureFrom(ca.Cert) == nil &&
				time.Until(cert.NotAfter) > 24*time.Hour && covers(cert, hosts) {
				return nil
			}
		}
	}
	certPEM, keyPEM, err := ca.Issue(cn, groups, hosts, usage)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
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
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func writePair(certPath, keyPath string, certPEM []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
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
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("pki: writing kubeconfig: %w", err)
	}
	return os.Chmod(path, 0o600)
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
