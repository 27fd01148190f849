package eventlog_test

import (
	"context"
	"crypto/tls"
	"errors"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// TestUnauthenticatedClientIsRefused connects to the embedded server with a real nats.go client
// as any local process could: with no credentials, with a made-up user key, and with a
// credential signed by an account of its own. Each is refused; the log's own credential is not.
func TestUnauthenticatedClientIsRefused(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Listening)
	url := l.ClientURL()
	if _, err := nats.Connect(url); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("no credentials: connect = %v, want an authorization violation", err)
	}
	// A user signed by an account the server does not trust (a rogue operator's).
	rogueAcct, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	upub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Pub.Allow.Add(">")
	uc.Sub.Allow.Add(">")
	token, err := uc.Encode(rogueAcct)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	if _, err := nats.Connect(url, nats.UserJWTAndSeed(token, string(seed))); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("rogue credential: connect = %v, want an authorization violation", err)
	}
	// The same through the Log: a clear error, not one to retry.
	if _, err := eventlog.Open(t.Context(), eventlog.Config{URL: url}); !errors.Is(err, eventlog.ErrUnauthorized) {
		t.Fatalf("Open without credentials = %v, want ErrUnauthorized", err)
	}
	creds := eventlogtest.Credentials(t, l, eventlog.Identity{Role: eventlog.RoleAPIServer})
	c, err := eventlog.Open(t.Context(), eventlog.Config{URL: url, Creds: creds})
	if err != nil {
		t.Fatalf("Open with the API server's credential: %v", err)
	}
	c.Close()
}

// TestRoleCredentialsAreLimited holds each non-admin role's credential and tries what only the
// admin may do (list streams, purge, delete, change retention), and what only another role
// may: every attempt is refused by the server and changes nothing. A node's credential appends
// to nothing.
func TestRoleCredentialsAreLimited(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Listening)
	ctx := t.Context()
	if _, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", "a", `{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	roles := []eventlog.Identity{
		{Role: eventlog.RoleAPIServer},
		// Every lease bucket of logplane's sets: a JWT larger than NATS's default control line.
		{Role: eventlog.RoleReconciler, LeaseBuckets: []string{"reconcilers-scheduler", "reconcilers-workloads", "reconcilers-serviceaccounts", "reconcilers-more"}},
		{Role: eventlog.RoleScheduler, LeaseBuckets: []string{"scheduler"}},
		{Role: eventlog.RoleNode, Name: "n1"},
	}
	for _, id := range roles {
		t.Run(string(id.Role), func(t *testing.T) {
			var v eventlogtest.Violations
			nc := eventlogtest.Connect(t, l, id, nats.ErrorHandler(v.Handler))
			saw := func(what string) {
				t.Helper()
				if ok, errs := v.Saw(what); !ok {
					t.Fatalf("the server reported no permissions violation for %q (saw %v)", what, errs)
				}
			}
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 500*time.Millisecond) }
			c, cancel := short()
			names := js.StreamNames(c)
			for range names.Name() {
			}
			cancel()
			if names.Err() == nil {
				t.Error("listing streams succeeded")
			}
			saw("$JS.API.STREAM.NAMES")
			if id.Role == eventlog.RoleNode {
				// A node reads only its own feed (TestNodeCredentialReadsOnlyItsFeed).
				c, cancel = short()
				if _, err := js.Stream(c, "LOGPLANE"); err == nil {
					t.Error("a node read the stream's info")
				}
				cancel()
				saw("$JS.API.STREAM.INFO.LOGPLANE")
			} else if _, err := js.Stream(ctx, "LOGPLANE"); err != nil { // reading is allowed
				t.Fatalf("stream info: %v", err)
			}
			c, cancel = short()
			if _, err := nc.RequestWithContext(c, "$JS.API.STREAM.PURGE.LOGPLANE", nil); err == nil {
				t.Error("purge succeeded")
			}
			cancel()
			saw("$JS.API.STREAM.PURGE.LOGPLANE")
			c, cancel = short()
			if _, err := js.UpdateStream(c, jetstream.StreamConfig{Name: "LOGPLANE", Subjects: []string{"lp.obj.>"}, MaxAge: time.Second}); err == nil {
				t.Error("changing the stream's retention succeeded")
			}
			cancel()
			saw("$JS.API.STREAM.UPDATE.LOGPLANE")
			if id.Role == eventlog.RoleAPIServer || id.Role == eventlog.RoleReconciler {
				return // they append to any object (their rights end at the API's authorization)
			}
			// Scheduler and node: not a ConfigMap, not another node's Node.
			for _, subj := range []string{"lp.obj.core.configmaps.default.a", "lp.obj.core.nodes._.n2",
				"lp.obj.coordination%2Ek8s%2Eio.leases.kube-node-lease.n2"} {
				c, cancel = short()
				_, err := js.Publish(c, subj, []byte("x"))
				cancel()
				if err == nil {
					t.Errorf("publishing to %s succeeded", subj)
				}
				saw(subj)
			}
			if id.Role == eventlog.RoleNode {
				// A node never appends to the stream itself, not even to its own Node: its
				// writes are commands the control plane checks (TestNodeCommands).
				for _, subj := range []string{"lp.obj.core.nodes._.n1", "lp.obj.core.pods.default.p"} {
					c, cancel = short()
					_, err := js.Publish(c, subj, []byte("x"))
					cancel()
					if err == nil {
						t.Errorf("the node appended to %s", subj)
					}
					saw(subj)
				}
			}
		})
	}
	// Nothing was purged: the first event is still there.
	if _, err := l.Get(ctx, cmKey("default", "a")); err != nil {
		t.Fatalf("the ConfigMap after the attempts: %v", err)
	}
}

// TestReplyInboxesArePrivate: a node's credential cannot read the replies meant for others
// (the API server's direct gets carry every Secret), only those on its own inbox.
func TestReplyInboxesArePrivate(t *testing.T) {
	l := eventlogtest.Open(t, eventlogtest.Listening)
	var v eventlogtest.Violations
	nc := eventlogtest.Connect(t, l, eventlog.Identity{Role: eventlog.RoleNode, Name: "n1"}, nats.ErrorHandler(v.Handler))
	saw := func(what string) {
		t.Helper()
		if ok, errs := v.Saw(what); !ok {
			t.Fatalf("the server reported no permissions violation for %q (saw %v)", what, errs)
		}
	}
	if _, err := nc.Subscribe("_INBOX_APISERVER.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	saw("_INBOX_APISERVER.>")
}

// TestListeningBeyondLoopbackNeedsTLS: the embedded server does not listen on a network
// address without TLS; with it, a client that does not trust the CA is refused and one that
// does gets in.
func TestListeningBeyondLoopbackNeedsTLS(t *testing.T) {
	if _, err := eventlog.Open(t.Context(), eventlog.Config{DataDir: t.TempDir(), Listen: "0.0.0.0:0"}); err == nil ||
		!strings.Contains(err.Error(), "TLS") {
		t.Fatalf("Open listening on 0.0.0.0 without TLS = %v, want a refusal", err)
	}
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := eventlogtest.TestCA(t, "127.0.0.1")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Open(t.Context(), eventlog.Config{DataDir: dir, Listen: "0.0.0.0:0", Durability: eventlog.Lazy,
		ServerTLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := neturl.Parse(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://127.0.0.1:" + u.Port()
	creds := eventlogtest.Credentials(t, l, eventlog.Identity{Role: eventlog.RoleAPIServer})
	if _, err := eventlog.Open(t.Context(), eventlog.Config{URL: url, Creds: creds}); err == nil {
		t.Fatal("a client that does not trust the server's CA got in")
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := eventlog.Open(t.Context(), eventlog.Config{URL: url, Creds: creds, CAFile: caFile})
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	c.Close()
}

// TestStoreOfTheGlobalAccountIsAdopted: a store made before the server required
// authentication kept its streams under the global account ($G); the first start with
// authentication serves them under the logplane account, history whole.
func TestStoreOfTheGlobalAccountIsAdopted(t *testing.T) {
	dir := t.TempDir()
	cfg := eventlog.Config{DataDir: dir, Durability: eventlog.Lazy}
	l, err := eventlog.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := l.Create(t.Context(), event(eventv1.ChangeType_CHANGE_TYPE_ADDED, "default", "old", `{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	// Put the store back where a server without accounts kept it.
	js := filepath.Join(dir, "nats", "jetstream")
	ents, err := os.ReadDir(js)
	if err != nil {
		t.Fatal(err)
	}
	moved := false
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "A") {
			if err := os.Rename(filepath.Join(js, e.Name()), filepath.Join(js, "$G")); err != nil {
				t.Fatal(err)
			}
			moved = true
		}
	}
	if !moved {
		t.Fatalf("no account directory in %s: %v", js, ents)
	}
	l, err = eventlog.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec, err := l.Get(t.Context(), cmKey("default", "old"))
	if err != nil || rec.Seq != seq {
		t.Fatalf("the object written before: %+v, %v; want sequence %d", rec, err, seq)
	}
	if _, err := os.Stat(filepath.Join(js, "$G")); err == nil {
		t.Error("the global account's directory is still there")
	}
}
