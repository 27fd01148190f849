// Package eventlogtest starts real logs for tests: an embedded nats-server with JetStream in a
// temporary directory, removed when the test ends. Only tests import it.
package eventlogtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logplane/logplane/eventlog"
)

// Open returns a Log on a fresh embedded server whose store lives in t.TempDir(). The durability
// is Lazy unless cfg says otherwise through opts; the log is closed when the test ends.
func Open(t testing.TB, opts ...func(*eventlog.Config)) *eventlog.Log {
	t.Helper()
	cfg := eventlog.Config{DataDir: t.TempDir(), Durability: eventlog.Lazy}
	for _, o := range opts {
		o(&cfg)
	}
	l, err := eventlog.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("eventlogtest: open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Durable makes the log use the default durability, group commit.
func Durable(c *eventlog.Config) { c.Durability = eventlog.GroupCommit }

// Listening makes the embedded server accept clients on a random loopback port, so that a test
// can reach it as another process would (see PublishRaw).
func Listening(c *eventlog.Config) { c.Listen = "127.0.0.1:0" }

// PublishRaw writes data as it is on subject into the log's stream, bypassing every check the
// Log makes, as a buggy or hostile client could; it returns the message's sequence. The log
// must have been opened Listening. Tests use it to put what no Log would write into the stream.
func PublishRaw(t testing.TB, l *eventlog.Log, subject string, data []byte) uint64 {
	t.Helper()
	nc := Connect(t, l, eventlog.Identity{Role: eventlog.RoleAdmin})
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ack, err := js.Publish(ctx, subject, data)
	if err != nil {
		t.Fatalf("eventlogtest: publish to %s: %v", subject, err)
	}
	return ack.Sequence
}

// Credentials returns a new credential of the log for id, as a NATS credentials file.
func Credentials(t testing.TB, l *eventlog.Log, id eventlog.Identity) []byte {
	t.Helper()
	creds, err := l.Credentials(id)
	if err != nil {
		t.Fatalf("eventlogtest: credentials for %v: %v", id, err)
	}
	return creds
}

// Connect returns a plain NATS connection to the log, which must have been opened Listening,
// holding a credential of id; it is closed when the test ends.
func Connect(t testing.TB, l *eventlog.Log, id eventlog.Identity, opts ...nats.Option) *nats.Conn {
	t.Helper()
	url := l.ClientURL()
	if url == "" {
		t.Fatal("eventlogtest: Connect needs a log opened with Listening")
	}
	copts, err := eventlog.CredentialOptions(Credentials(t, l, id))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append(copts, opts...)...)
	if err != nil {
		t.Fatalf("eventlogtest: connect %s as %v: %v", url, id, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestCA makes a CA and a server certificate it signs for host, in PEM.
func TestCA(t testing.TB, host string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "eventlogtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP(host)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// Violations collects the permission violations the server reports to a connection: pass
// Handler to nats.ErrorHandler.
type Violations struct {
	mu   sync.Mutex
	errs []string
}

// Handler records what the server reported.
func (v *Violations) Handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

// Saw waits up to 5 s until the server has reported a permissions violation that mentions
// what; it returns whether it did, and everything the server reported.
func (v *Violations) Saw(what string) (bool, []string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		v.mu.Lock()
		errs := slices.Clone(v.errs)
		v.mu.Unlock()
		for _, e := range errs {
			if strings.Contains(e, "Permissions Violation") && strings.Contains(e, what) {
				return true, errs
			}
		}
		if time.Now().After(deadline) {
			return false, errs
		}
		time.Sleep(10 * time.Millisecond)
	}
}
