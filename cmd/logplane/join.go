package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/apiserver/nodejoin"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/durablefile"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/nodeagent"
)

// tokenCommand is `logplane token create`: a bootstrap token for `logplane agent --join`, made
// on a control-plane machine with the admin's credential of the log.
func tokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Bootstrap tokens, with which new machines join as nodes"}
	var dataDir, natsURL string
	var ttl time.Duration
	var printJoin bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Make a one-time bootstrap token (run on a control-plane machine, as root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			tok, err := createToken(ctx, dataDir, natsURL, ttl)
			if err != nil {
				return err
			}
			if !printJoin {
				fmt.Fprintln(cmd.OutOrStdout(), tok)
				return nil
			}
			server, hash, err := joinTarget(dataDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logplane agent --join %s --token %s --ca-cert-hash %s\n", server, tok, hash)
			return nil
		},
	}
	create.Flags().StringVar(&dataDir, "data-dir", "/var/lib/logplane", "data directory of the control plane (its creds/admin.creds and pki/ca.crt)")
	create.Flags().StringVar(&natsURL, "nats", "nats://127.0.0.1:4222", "NATS URL of the log")
	create.Flags().DurationVar(&ttl, "ttl", nodejoin.DefaultTTL, "how long the token may be used (once)")
	create.Flags().BoolVar(&printJoin, "print-join-command", false, "print the whole `logplane agent --join` command, with the API server's address and the CA's hash")
	cmd.AddCommand(create)
	return cmd
}

// createToken records a new bootstrap token in the log, with the admin's credential.
func createToken(ctx context.Context, dataDir, natsURL string, ttl time.Duration) (nodejoin.Token, error) {
	cfg := eventlog.Config{URL: natsURL, CredsFile: credsPath(dataDir, eventlog.RoleAdmin)}
	if ca := filepath.Join(dataDir, "pki", "ca.crt"); fileExists(ca) {
		cfg.CAFile = ca
	}
	l, err := eventlog.Open(ctx, cfg)
	if err != nil {
		return nodejoin.Token{}, fmt.Errorf("opening the log with the admin's credential: %w", err)
	}
	defer l.Close()
	return nodejoin.Create(ctx, l, clock.RealClock{}, ttl)
}

// joinTarget is the API server's address (from the admin kubeconfig) and the CA's hash.
func joinTarget(dataDir string) (server, hash string, err error) {
	kc, err := clientcmd.LoadFromFile(filepath.Join(dataDir, "kubeconfig"))
	if err != nil {
		return "", "", fmt.Errorf("the API server's address: %w", err)
	}
	for _, c := range kc.Clusters {
		server = c.Server
	}
	if server == "" {
		return "", "", errors.New("the kubeconfig names no API server")
	}
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
	if err != nil {
		return "", "", fmt.Errorf("the cluster CA: %w", err)
	}
	hash, err = nodejoin.CAHash(caPEM)
	return server, hash, err
}

// identityDir holds what a node got by joining: its log credential, its certificate and key,
// the cluster CA, and the log's URL.
func identityDir(dataDir string) string { return filepath.Join(dataDir, "agent", "identity") }

// nodeIdentity gives this machine's node agent its own credential and certificate: those it
// got when it joined, or by joining now (with --join and a token, or, on a control-plane
// machine, with a token it makes with the admin's credential). It sets the log flags to use
// them, and returns the streaming endpoint's TLS. The agent never holds the CA's key.
func nodeIdentity(ctx context.Context, af *agentFlags, lf *logFlags, natsSet bool, ip string) (*tls.Config, error) {
	dir := identityDir(lf.dataDir)
	hosts := []string{ip, "127.0.0.1", af.nodeName}
	if !haveIdentity(dir, af.nodeName, hosts) {
		if err := join(ctx, af, lf, natsSet, dir, hosts); err != nil {
			return nil, err
		}
	}
	if lf.creds == "" {
		lf.creds = filepath.Join(dir, "node.creds")
	}
	if lf.natsCA == "" {
		lf.natsCA = filepath.Join(dir, "ca.crt")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "nats-url")); err == nil && !natsSet {
		lf.natsURL = strings.TrimSpace(string(b))
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	ca, err := read("ca.crt")
	if err != nil {
		return nil, err
	}
	cert, err := read("node.crt")
	if err != nil {
		return nil, err
	}
	key, err := read("node.key")
	if err != nil {
		return nil, err
	}
	return nodeagent.ServerTLS(ca, cert, key)
}

// haveIdentity reports whether dir holds a whole identity of node that serves hosts.
func haveIdentity(dir, node string, hosts []string) bool {
	for _, f := range []string{"node.creds", "ca.crt", "node.key"} {
		if !fileExists(filepath.Join(dir, f)) {
			return false
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "node.crt"))
	if err != nil {
		return false
	}
	tc, err := tls.X509KeyPair(b, mustRead(filepath.Join(dir, "node.key")))
	if err != nil || tc.Leaf == nil {
		return false
	}
	if tc.Leaf.Subject.CommonName != "system:node:"+node || time.Until(tc.Leaf.NotAfter) < 24*time.Hour {
		return false
	}
	for _, h := range hosts {
		if tc.Leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func mustRead(path string) []byte {
	b, _ := os.ReadFile(path) // a missing file makes the pair fail to parse, which says it
	return b
}

// join asks the API server for this node's identity and writes it into dir.
func join(ctx context.Context, af *agentFlags, lf *logFlags, natsSet bool, dir string, hosts []string) error {
	if af.join != "" {
		if af.token == "" || af.caCertHash == "" {
			return errors.New("--join needs --token and --ca-cert-hash (`logplane token create --print-join-command` on a control-plane machine prints them)")
		}
		if _, err := nodejoin.ParseToken(af.token); err != nil {
			return err
		}
		return joinWith(ctx, af, dir, hosts, af.join, af.token, af.caCertHash)
	}
	// On a control-plane machine (the API server's data directory, or its pki directory given),
	// root may make a token itself, as kubeadm init does for its own kubelet.
	cp := lf.dataDir
	if af.pkiDir != "" {
		cp = filepath.Dir(af.pkiDir)
	}
	admin := credsPath(cp, eventlog.RoleAdmin)
	if !fileExists(admin) && !fileExists(filepath.Join(cp, "pki", "ca.key")) {
		return fmt.Errorf("this node has no identity in %s: join the cluster with --join URL --token T --ca-cert-hash H "+
			"(`logplane token create --print-join-command` on a control-plane machine prints them)", dir)
	}
	wait := 250 * time.Millisecond
	for {
		err := func() error {
			if err := waitForFile(ctx, admin, "log credential"); err != nil {
				return err
			}
			if err := waitForFile(ctx, filepath.Join(cp, "kubeconfig"), "admin kubeconfig"); err != nil {
				return err
			}
			natsURL := lf.natsURL
			tok, err := createToken(ctx, cp, natsURL, 10*time.Minute)
			if err != nil {
				return err
			}
			server, hash, err := joinTarget(cp)
			if err != nil {
				return err
			}
			return joinWith(ctx, af, dir, hosts, server, tok.String(), hash)
		}()
		if err == nil || ctx.Err() != nil {
			return err
		}
		slog.Warn("logplane: joining this machine's node through the local control plane; retrying", "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// joinWith joins through the API server at server and writes the identity into dir.
func joinWith(ctx context.Context, af *agentFlags, dir string, hosts []string, server, token, hash string) error {
	seed, pub, err := eventlog.NewUserKey()
	if err != nil {
		return err
	}
	csr, key, err := pki.NewRequest("system:node:"+af.nodeName, hosts)
	if err != nil {
		return err
	}
	resp, err := nodejoin.Join(ctx, server, token, hash, af.nodeName, csr, pub)
	if err != nil {
		return err
	}
	creds, err := eventlog.CredentialsFile(resp.NATSUserJWT, seed)
	if err != nil {
		return err
	}
	if err := durablefile.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node identity: %w", err)
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{{"node.creds", creds, 0o600}, {"node.key", key, 0o600}, {"node.crt", resp.Certificate, 0o644}, {"ca.crt", resp.CA, 0o644}}
	if resp.NATSPort != 0 {
		u, err := url.Parse(server)
		if err != nil {
			return fmt.Errorf("--join %q: %w", server, err)
		}
		files = append(files, struct {
			name string
			data []byte
			perm os.FileMode
		}{"nats-url", []byte("nats://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(resp.NATSPort)) + "\n"), 0o644})
	}
	for _, f := range files {
		if err := durablefile.Write(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return fmt.Errorf("node identity: %w", err)
		}
	}
	slog.Info("logplane: this machine joined as a node", "node", af.nodeName, "server", server)
	return nil
}
