package ingressproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// certTable is an immutable map from server names to certificates, built
// with the routing table and read by every TLS handshake.
type certTable struct {
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // by the suffix after "*."
}

// lookup finds the certificate for a handshake's server name (SNI): an
// exact name, else a wildcard covering its first label; nil when none.
func (ct *certTable) lookup(serverName string) *tls.Certificate {
	name := requestHost(serverName)
	if c := ct.exact[name]; c != nil {
		return c
	}
	if s := wildcardSuffix(name); s != "" {
		return ct.wildcard[s]
	}
	return nil
}

// tlsSecret is what the proxy keeps of a Secret: its key pair, or why it
// cannot be used.
type tlsSecret struct {
	cert *tls.Certificate
	err  error
}

// parseTLSSecret reads the key pair of a kubernetes.io/tls Secret (any
// Secret with tls.crt and tls.key, as ingress-nginx accepts).
func parseTLSSecret(s *corev1.Secret) *tlsSecret {
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		return &tlsSecret{err: fmt.Errorf("it has no %s and %s (type %q)", corev1.TLSCertKey, corev1.TLSPrivateKeyKey, s.Type)}
	}
	c, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return &tlsSecret{err: err}
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return &tlsSecret{err: err}
		}
	}
	return &tlsSecret{cert: &c}
}

// buildCerts builds the certificate table of ings (in precedence order)
// from the Secrets known. For each host of a TLS section, the first
// Ingress whose Secret holds a certificate valid for that host wins. A TLS
// section without hosts applies to the hosts of its Ingress's rules that
// its certificate covers (as ingress-nginx does). A missing Secret, one
// whose key pair cannot be read, or a certificate not valid for a host
// leaves that host to the default certificate, with a Warning.
func buildCerts(ings []*networkingv1.Ingress, secrets map[types.NamespacedName]*tlsSecret, warn func(Warning)) *certTable {
	ct := &certTable{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for _, ing := range ings {
		nn := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		for _, t := range ing.Spec.TLS {
			if t.SecretName == "" {
				continue // the default certificate, by the user's choice
			}
			sk := types.NamespacedName{Namespace: ing.Namespace, Name: t.SecretName}
			s := secrets[sk]
			if s == nil {
				warn(Warning{Ingress: nn, Reason: ReasonTLSSecretNotFound, Message: fmt.Sprintf("TLS Secret %q not found: serving the default certificate", clip(t.SecretName))})
				continue
			}
			if s.err != nil {
				warn(Warning{Ingress: nn, Reason: ReasonTLSSecretInvalid, Message: fmt.Sprintf("TLS Secret %q cannot be used (%s): serving the default certificate", clip(t.SecretName), clip(s.err.Error()))})
				continue
			}
			hosts := t.Hosts
			implicit := len(hosts) == 0
			if implicit {
				for _, r := range ing.Spec.Rules {
					if r.Host != "" {
						hosts = append(hosts, r.Host)
					}
				}
			}
			for _, h := range hosts {
				kind, key := ruleHost(h)
				var m map[string]*tls.Certificate
				switch kind {
				case hostExact:
					m = ct.exact
				case hostWildcard:
					m = ct.wildcard
				default:
					if !implicit {
						warn(Warning{Ingress: nn, Reason: ReasonInvalidRule, Message: fmt.Sprintf("TLS host %q is not a valid host name or wildcard: ignored", clip(h))})
					}
					continue
				}
				if m[key] != nil {
					continue
				}
				name := key
				if kind == hostWildcard {
					name = "*." + key
				}
				if err := s.cert.Leaf.VerifyHostname(name); err != nil {
					if !implicit {
						warn(Warning{Ingress: nn, Reason: ReasonTLSCertificateMismatch, Message: fmt.Sprintf("the certificate of TLS Secret %q is not valid for %q: serving the default certificate", clip(t.SecretName), clip(name))})
					}
					continue
				}
				m[key] = s.cert
			}
		}
	}
	return ct
}

// selfSigned makes the default certificate: a self-signed ECDSA P-256
// certificate, as ingress-nginx's "Kubernetes Ingress Controller Fake
// Certificate", valid for a year from now.
func selfSigned(now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ingressproxy: default certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("ingressproxy: default certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"logplane"}, CommonName: "logplane Ingress Controller Fake Certificate"},
		DNSNames:              []string{"ingress.local"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ingressproxy: default certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ingressproxy: default certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
