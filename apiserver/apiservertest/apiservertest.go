// Package apiservertest runs real logplane API servers for tests: an embedded log in a
// temporary directory, TLS with a generated CA, an admin kubeconfig, on 127.0.0.1. Only tests
// import it.
package apiservertest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/token/tokenfile"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/logplane/logplane/admission"
	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/apiserver/serviceaccount"
	"github.com/logplane/logplane/encryption"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
)

// Server is a running API server.
type Server struct {
	// URL is https://127.0.0.1:<port>.
	URL string
	// Kubeconfig is the path of an admin kubeconfig for it.
	Kubeconfig string
	// Config is the admin's client-go configuration.
	Config *rest.Config
	// DataDir holds the log and the TLS material.
	DataDir string
	Log     *eventlog.Log
	API     *apiserver.Server
	Addr    string
	// Sealer encrypts Secrets when Options.Encryption is set.
	Sealer *encryption.Sealer

	cancel context.CancelFunc
	done   chan error
}

// Options shape a test server.
type Options struct {
	// DataDir to use (to restart on the same data); default a new t.TempDir().
	DataDir string
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// Durability of the log; default eventlog.GroupCommit, the durable default of logplane.
	Durability eventlog.Durability
	// LogListen, when set, makes the embedded NATS server accept other processes (node agents,
	// reconcilers) on this host:port (e.g. "127.0.0.1:-1"); Log.ClientURL() tells where.
	LogListen string
	// Tokens is the bearer token file's content (token,user,uid[,groups] lines).
	Tokens string
	// Encryption seals Secrets in the log, as logplane does, with a key ring in DataDir/keys
	// (made on first use).
	Encryption bool
	// KeysAhead is how many data keys the sealer makes at a time (encryption.Config.PoolSize);
	// 0: its default.
	KeysAhead int
	// ServiceAccountTokens gives the server a service account signing key (DataDir/pki/sa.key):
	// the TokenRequest API and service account token authentication.
	ServiceAccountTokens bool
	// Admission runs logplane's admission chain (package admission: ServiceAccount, PodSecurity)
	// with this configuration, as the daemon does; nil: none. The harness then runs the
	// server's projection itself.
	Admission *admission.Config
	// Configure changes the server's configuration before it starts.
	Configure func(*apiserver.Config)
	// LogConfig changes the log's configuration before it opens (retention, ...).
	LogConfig func(*eventlog.Config)
}

// Start runs a server until the test ends (or Stop).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	lc := eventlog.Config{DataDir: filepath.Join(opts.DataDir, "log"), Durability: opts.Durability, Listen: opts.LogListen}
	if opts.LogConfig != nil {
		opts.LogConfig(&lc)
	}
	l, err := eventlog.Open(ctx, lc)
	if err != nil {
		cancel()
		t.Fatalf("apiservertest: opening the log: %v", err)
	}
	mat, err := pki.Load(filepath.Join(opts.DataDir, "pki"))
	if err != nil {
		cancel()
		l.Close()
		t.Fatalf("apiservertest: %v", err)
	}
	cfg := apiserver.Config{Log: l, TLS: mat.TLS}
	var sealer *encryption.Sealer
	if opts.Encryption {
		sealer, err = openSealer(ctx, l, filepath.Join(opts.DataDir, "keys"), opts.KeysAhead)
		if err != nil {
			cancel()
			l.Close()
			t.Fatalf("apiservertest: %v", err)
		}
		cfg.Sealer = sealer
	}
	if opts.Tokens != "" {
		path := filepath.Join(t.TempDir(), "tokens.csv")
		if err := os.WriteFile(path, []byte(opts.Tokens), 0o600); err != nil {
			t.Fatalf("apiservertest: tokens: %v", err)
		}
		tf, err := tokenfile.NewCSV(path)
		if err != nil {
			t.Fatalf("apiservertest: tokens: %v", err)
		}
		cfg.Tokens = tf
	}
	if opts.Admission != nil {
		var popts []projections.Option
		if sealer != nil {
			popts = append(popts, projections.WithOpener(sealer))
		}
		store := projections.New(builtin.Catalog(), slog.Default(), popts...)
		chain, err := admission.Chain(store, *opts.Admission)
		if err != nil {
			cancel()
			l.Close()
			t.Fatalf("apiservertest: %v", err)
		}
		cfg.Store, cfg.Admission = store, chain
		go func() {
			if err := store.Run(ctx, l); err != nil && ctx.Err() == nil {
				t.Errorf("apiservertest: projection: %v", err)
			}
		}()
	}
	if opts.ServiceAccountTokens {
		if cfg.ServiceAccountKey, err = serviceaccount.LoadKey(filepath.Join(opts.DataDir, "pki")); err != nil {
			cancel()
			l.Close()
			t.Fatalf("apiservertest: %v", err)
		}
	}
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	api, err := apiserver.New(cfg)
	if err != nil {
		cancel()
		l.Close()
		t.Fatalf("apiservertest: %v", err)
	}
	var ln net.Listener
	for i := 0; ; i++ {
		ln, err = net.Listen("tcp", opts.Addr)
		if err == nil || i > 50 {
			break
		}
		time.Sleep(100 * time.Millisecond) // the previous server's socket may linger a moment
	}
	if err != nil {
		cancel()
		l.Close()
		t.Fatalf("apiservertest: listen: %v", err)
	}
	s := &Server{URL: "https://" + ln.Addr().String(), DataDir: opts.DataDir, Log: l, API: api, Addr: ln.Addr().String(),
		Sealer: sealer, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- api.Serve(ctx, ln) }()
	if err := api.Start(ctx); err != nil {
		s.Stop()
		t.Fatalf("apiservertest: start: %v", err)
	}
	s.Kubeconfig = filepath.Join(opts.DataDir, "kubeconfig")
	if err := mat.WriteKubeconfig(s.Kubeconfig, s.URL); err != nil {
		s.Stop()
		t.Fatalf("apiservertest: %v", err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		s.Stop()
		t.Fatalf("apiservertest: %v", err)
	}
	rc.QPS, rc.Burst = -1, 0 // no client-side rate limit
	s.Config = rc
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server and closes its log. It may be called more than once.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.Log.Close()
	s.cancel = nil
}

// openSealer loads (or makes) the key ring in dir and returns a sealer over the log's data keys.
func openSealer(ctx context.Context, l *eventlog.Log, dir string, ahead int) (*encryption.Sealer, error) {
	ring, err := encryption.LoadKeyRing(dir)
	if errors.Is(err, encryption.ErrNoKeyRing) {
		ring, err = encryption.CreateKeyRing(dir, time.Now())
	}
	if err != nil {
		return nil, err
	}
	dks, err := l.DataKeys(ctx)
	if err != nil {
		return nil, err
	}
	s, err := encryption.NewSealer(encryption.Config{KMS: ring, Keys: dks, PoolSize: ahead})
	if err != nil {
		return nil, err
	}
	return s, s.Check(ctx)
}
