package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/durablefile"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/sets"
)

// The log's credentials on a control-plane machine: <data-dir>/creds/<role>.creds, written by
// the process that embeds the log at every start, readable by root only. Roles started on the
// same machine with the same --data-dir find theirs there; other machines get theirs otherwise
// (nodes by joining; the other roles by copying the file, or from an external cluster's
// operator, with --nats-creds).
func credsPath(dataDir string, role eventlog.Role) string {
	return filepath.Join(dataDir, "creds", string(role)+".creds")
}

// controlPlaneRoles are the credentials the embedding process writes.
func controlPlaneRoles() []eventlog.Identity {
	var buckets []string
	for _, set := range sets.Names() {
		buckets = append(buckets, "reconcilers-"+set)
	}
	return []eventlog.Identity{
		{Role: eventlog.RoleAdmin},
		{Role: eventlog.RoleAPIServer},
		{Role: eventlog.RoleReconciler, LeaseBuckets: buckets},
		{Role: eventlog.RoleScheduler, LeaseBuckets: []string{"reconcilers-" + sets.Scheduler}},
		{Role: eventlog.RoleSimulatedNodes},
	}
}

// writeCredentials writes every control-plane role's credential into the data directory.
func writeCredentials(l *eventlog.Log, dataDir string) error {
	if err := durablefile.MkdirAll(filepath.Join(dataDir, "creds"), 0o700); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	for _, id := range controlPlaneRoles() {
		creds, err := l.Credentials(id)
		if errors.Is(err, eventlog.ErrNoAuthority) {
			return nil // an external server's operator issues them
		}
		if err != nil {
			return err
		}
		if err := durablefile.Write(credsPath(dataDir, id.Role), creds, 0o600); err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
	}
	return nil
}

// waitForFile waits until path exists (the API server writes the credentials and the CA at its
// first start, which a role started beside it may not see yet), until ctx ends.
func waitForFile(ctx context.Context, path, what string) error {
	wait, warned := 250*time.Millisecond, false
	for {
		_, err := os.Stat(path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !warned {
			slog.Warn("logplane: waiting for the "+what+" that the API server writes (pass --nats-creds, or run with the API server's --data-dir)", "file", path)
			warned = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the %s %s: %w", what, path, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// natsServerTLS is the embedded server's certificate, signed by the cluster CA, for every
// address of this machine and the extra names given: the log's TLS when it listens beyond
// loopback.
func natsServerTLS(dataDir string, extra []string) (*tls.Config, error) {
	mat, err := pki.Load(filepath.Join(dataDir, "pki"), extra...)
	if err != nil {
		return nil, err
	}
	hosts := append([]string{"127.0.0.1", "::1", "localhost"}, extra...)
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				hosts = append(hosts, n.IP.String())
			}
		}
	}
	certPEM, keyPEM, err := mat.CA.Issue("logplane-nats", nil, hosts, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("log TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// listensBeyondLoopback reports whether addr's host is not a loopback address.
func listensBeyondLoopback(addr string) bool {
	if addr == "" {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true // eventlog says what is wrong with it
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// natsHostPort is the host and port part of a NATS URL.
func natsHostPort(url string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		url = url[i+3:]
	}
	return url
}
