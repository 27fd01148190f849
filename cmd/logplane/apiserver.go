package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

type apiFlags struct {
	listen    string
	tokenFile string
	hosts     []string
}

func (f *apiFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:6443", "address of the Kubernetes API (HTTPS)")
	fs.StringVar(&f.tokenFile, "token-auth-file", "", "CSV file of bearer tokens (token,user,uid,\"group1,group2\"), as kube-apiserver's")
	fs.StringSliceVar(&f.hosts, "tls-san", nil, "extra names or addresses for the server certificate")
}

func apiserverCommand() *cobra.Command {
	var lf logFlags
	var af apiFlags
	cmd := &cobra.Command{
		Use:   "apiserver",
		Short: "Serve the Kubernetes API over the log (embedding the NATS server unless --nats is given)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			l, err := lf.open(ctx)
			if err != nil {
				return err
			}
			defer l.Close()
			srv, serve, err := startAPIServer(ctx, l, nil, &lf, &af)
			if err != nil {
				return err
			}
			_ = srv
			return serve()
		},
	}
	lf.register(cmd.Flags(), true, "127.0.0.1:4222")
	af.register(cmd.Flags())
	return cmd
}

// startAPIServer makes the API server, its TLS material and the admin kubeconfig, and returns a
// function that serves until ctx ends. store may be shared with other roles in this process.
func startAPIServer(ctx context.Context, l *eventlog.Log, store *projections.Store, lf *logFlags, af *apiFlags) (*apiserver.Server, func() error, error) {
	host, port, err := net.SplitHostPort(af.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("--listen %q: %w", af.listen, err)
	}
	mat, err := pki.Load(filepath.Join(lf.dataDir, "pki"), af.hosts...)
	if err != nil {
		return nil, nil, err
	}
	cfg := apiserver.Config{Log: l, Store: store, TLS: mat.TLS}
	// The client certificate towards node agents' streaming endpoints (pods/log, exec, ...).
	kc, kk, err := mat.CA.Issue("logplane-apiserver-kubelet-client", []string{"system:masters"}, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, nil, err
	}
	if cfg.KubeletTLS, err = apiserver.KubeletClientTLS(mat.CA.CertPEM, kc, kk); err != nil {
		return nil, nil, err
	}
	if af.tokenFile != "" {
		if cfg.Tokens, err = apiserver.ReadTokenFile(af.tokenFile); err != nil {
			return nil, nil, err
		}
	}
	srv, err := apiserver.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", af.listen)
	if err != nil {
		return nil, nil, err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	url := "https://" + net.JoinHostPort(host, port)
	kubeconfig := filepath.Join(lf.dataDir, "kubeconfig")
	if err := mat.WriteKubeconfig(kubeconfig, url); err != nil {
		ln.Close()
		return nil, nil, err
	}
	serve := func() error {
		slog.Info("logplane: serving the Kubernetes API", "url", url, "kubeconfig", kubeconfig, "nats", l.ClientURL())
		return srv.Serve(ctx, ln)
	}
	return srv, serve, nil
}
