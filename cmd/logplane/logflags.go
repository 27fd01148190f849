package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/logplane/logplane/eventlog"
)

// logFlags say where the object log is: embedded in this process (with its store in the data
// directory, listening for the other roles) or at a NATS URL.
type logFlags struct {
	dataDir    string
	natsURL    string
	natsListen string
	durability string
	replicas   int
	maxAge     time.Duration
	maxBytes   int64
	embed      bool // whether this role embeds the server when no URL is given
	creds      string
	natsCA     string
	// role is whose credential this process uses by default (<data-dir>/creds/<role>.creds).
	role eventlog.Role
	// tlsSANs are extra names for the embedded server's certificate.
	tlsSANs []string
}

func (f *logFlags) register(fs *pflag.FlagSet, embed bool, defaultListen string) {
	f.embed = embed
	fs.StringVar(&f.dataDir, "data-dir", "/var/lib/logplane", "directory for the log's store, TLS material, kubeconfig and node state")
	if embed {
		fs.StringVar(&f.natsURL, "nats", "", "NATS URL of an external server or cluster; empty: embed a server with its store in --data-dir")
		fs.StringVar(&f.natsListen, "nats-listen", defaultListen, "address on which the embedded NATS server accepts the other roles (empty: this process only)")
	} else {
		fs.StringVar(&f.natsURL, "nats", "nats://127.0.0.1:4222", "NATS URL of the log (the embedded server of `logplane apiserver`, or a cluster)")
	}
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials file of this process for --nats (default <data-dir>/creds/<role>.creds, which the API server writes on its machine)")
	fs.StringVar(&f.natsCA, "nats-ca", "", "PEM file of the CA that verifies the log's TLS certificate (default <data-dir>/pki/ca.crt if it exists)")
	fs.StringVar(&f.durability, "durability", eventlog.GroupCommit.String(),
		"how acknowledged writes are made durable: group-commit (fsync per group of writes, the default), server-sync (the server's own sync_always or replication; needed for a plain external NATS cluster) or lazy (tests only)")
	fs.IntVar(&f.replicas, "replicas", 1, "stream replicas on a NATS cluster (3 for production)")
	fs.DurationVar(&f.maxAge, "retention-age", 0, "drop history older than this (0: keep it all)")
	fs.Int64Var(&f.maxBytes, "retention-bytes", 0, "cap the log's size, dropping the oldest history (0: no cap)")
}

// open opens the log; onSpace is told when the embedded server's disk fills and has room again.
func (f *logFlags) open(ctx context.Context, onSpace func(eventlog.SpaceEvent)) (*eventlog.Log, error) {
	d, err := eventlog.ParseDurability(f.durability)
	if err != nil {
		return nil, err
	}
	cfg := eventlog.Config{
		URL:        f.natsURL,
		DataDir:    filepath.Join(f.dataDir, "log"),
		Durability: d,
		Replicas:   f.replicas,
		MaxAge:     f.maxAge,
		MaxBytes:   f.maxBytes,
		OnSpace:    onSpace,
	}
	if cfg.URL == "" {
		cfg.Listen = f.natsListen
		if listensBeyondLoopback(cfg.Listen) {
			if cfg.ServerTLS, err = natsServerTLS(f.dataDir, f.tlsSANs); err != nil {
				return nil, err
			}
		}
		l, err := eventlog.Open(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("opening the log: %w", err)
		}
		if err := writeCredentials(l, f.dataDir); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	}
	cfg.CredsFile = f.creds
	if cfg.CredsFile == "" {
		role := f.role
		if role == "" {
			role = eventlog.RoleAdmin // the operator's commands (keys rotate, log check online)
		}
		cfg.CredsFile = credsPath(f.dataDir, role)
		if err := waitForFile(ctx, cfg.CredsFile, "log credential"); err != nil {
			return nil, err
		}
	}
	cfg.CAFile = f.natsCA
	if ca := filepath.Join(f.dataDir, "pki", "ca.crt"); cfg.CAFile == "" && fileExists(ca) {
		cfg.CAFile = ca
	}
	// The server may not be up yet (roles start in any order, and the API server that embeds it
	// may be restarting): keep trying, as Kubernetes components do, until it answers or ctx ends.
	wait := 250 * time.Millisecond
	for {
		l, err := eventlog.Open(ctx, cfg)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, eventlog.ErrUnreachable) || ctx.Err() != nil {
			return nil, fmt.Errorf("opening the log at %s: %w", cfg.URL, err)
		}
		slog.Warn("logplane: the log is not reachable yet; retrying", "nats", cfg.URL, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("opening the log at %s: %w", cfg.URL, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
