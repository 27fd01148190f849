package nodejoin_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/apiserver/nodejoin"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
)

type joinEnv struct {
	log   *eventlog.Log
	clock *testingclock.FakeClock
	url   string
	hash  string
	ca    *pki.CA
}

func newJoinEnv(t *testing.T) *joinEnv {
	t.Helper()
	l := eventlogtest.Open(t, eventlogtest.Listening)
	mat, err := pki.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := testingclock.NewFakeClock(time.Now())
	srv := httptest.NewUnstartedServer(&nodejoin.Handler{Log: l, CA: mat.CA, Clock: clk, Logger: slog.Default()})
	srv.TLS = mat.TLS
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hash, err := nodejoin.CAHash(mat.CA.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &joinEnv{log: l, clock: clk, url: srv.URL, hash: hash, ca: mat.CA}
}

func (e *joinEnv) token(t *testing.T, ttl time.Duration) string {
	t.Helper()
	tok, err := nodejoin.Create(t.Context(), e.log, e.clock, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

// join asks to join as node with token; it returns the response and the node's credential.
func (e *joinEnv) join(t *testing.T, node, token, hash string) (*nodejoin.Response, []byte, error) {
	t.Helper()
	seed, pub, err := eventlog.NewUserKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, _, err := pki.NewRequest("system:masters-please", []string{"127.0.0.1", node})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := nodejoin.Join(t.Context(), e.url, token, hash, node, csr, pub)
	if err != nil {
		return nil, nil, err
	}
	creds, err := eventlog.CredentialsFile(resp.NATSUserJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	return resp, creds, nil
}

// TestJoinGivesTheNodeItsOwnIdentity: a node with a token gets a certificate of
// system:node:<name> (whatever subject its request asked for) signed by the cluster CA, and a
// log credential that connects as that node, reads, and appends nothing itself. The token
// works once.
func TestJoinGivesTheNodeItsOwnIdentity(t *testing.T) {
	e := newJoinEnv(t)
	tok := e.token(t, time.Hour)
	resp, creds, err := e.join(t, "n1", tok, e.hash)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(resp.Certificate)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "system:node:n1" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "system:nodes" {
		t.Errorf("certificate subject %v, want system:node:n1 in system:nodes", cert.Subject)
	}
	if err := cert.CheckSignatureFrom(e.ca.Cert); err != nil {
		t.Errorf("the certificate is not the CA's: %v", err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("the certificate does not serve the requested address: %v", err)
	}
	opts, err := eventlog.CredentialOptions(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.log.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("the node's credential: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// It reads its own feed, not the stream (reconcilers/nodefeed): the server does not answer
	// the one, and answers the other (here, that the feed is not made yet).
	sctx, scancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	if _, err := js.Stream(sctx, "LOGPLANE"); err == nil {
		t.Error("the node read the stream")
	}
	scancel()
	if _, err := js.Stream(t.Context(), "LOGPLANE_FEED_n1"); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the node reading its own feed: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := js.Publish(ctx, "lp.obj.core.nodes._.n2", []byte("x")); err == nil {
		t.Error("the node appended to the stream")
	}
	// Once only.
	if _, _, err := e.join(t, "n1", tok, e.hash); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a second join with the same token = %v, want 401", err)
	}
}

// TestJoinRefusals: a rogue agent with no token, a made-up token, an expired token, a server
// whose CA is not the pinned one, and a bad request get nothing; the last two do not spend the
// token.
func TestJoinRefusals(t *testing.T) {
	e := newJoinEnv(t)
	if _, _, err := e.join(t, "rogue", "abcdef.0123456789abcdef", e.hash); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a made-up token = %v, want 401", err)
	}
	if _, _, err := e.join(t, "rogue", "", e.hash); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("no token = %v, want 401", err)
	}
	tok := e.token(t, time.Hour)
	// A server that is not the pinned cluster's (the pin is of another CA).
	other, err := pki.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherHash, _ := nodejoin.CAHash(other.CA.CertPEM)
	if _, _, err := e.join(t, "n1", tok, otherHash); err == nil || !strings.Contains(err.Error(), "refusing to trust") {
		t.Errorf("a CA that is not the pinned one = %v, want a refusal", err)
	}
	if _, _, err := e.join(t, "Not_A_Name", tok, e.hash); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("a bad node name = %v, want 400", err)
	}
	if _, _, err := e.join(t, "n1", tok, e.hash); err != nil {
		t.Errorf("the token after refusals that must not spend it: %v", err)
	}
	expiring := e.token(t, time.Minute)
	e.clock.Step(2 * time.Minute)
	if _, _, err := e.join(t, "n2", expiring, e.hash); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("an expired token = %v, want 401", err)
	}
}
