package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apiserver/pkg/authentication/token/tokenfile"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/nodejoin"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/apiserver/serviceaccount"
	"github.com/logplane/logplane/eventlog"
)

type apiFlags struct {
	listen    string
	tokenFile string
	hosts     []string
	advertise string
}

func (f *apiFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:6443", "address of the Kubernetes API (HTTPS)")
	fs.StringVar(&f.tokenFile, "token-auth-file", "", "CSV file of bearer tokens (token,user,uid,\"group1,group2\"), as kube-apiserver's")
	fs.StringSliceVar(&f.hosts, "tls-san", nil, "extra names or addresses for the server certificate")
	fs.StringVar(&f.advertise, "advertise-address", "", "address at which pods reach the API, written as the endpoints of the kubernetes Service (default: the --listen address unless it is loopback or unspecified)")
}

func apiserverCommand() *cobra.Command {
	var lf logFlags
	var af apiFlags
	var pf processFlags
	cmd := &cobra.Command{
		Use:   "apiserver",
		Short: "Serve the Kubernetes API over the log (embedding the NATS server unless --nats is given)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			lf.role, lf.tlsSANs = eventlog.RoleAPIServer, af.hosts
			p, err := openProcess(cmd.Context(), &lf, &pf)
			if err != nil {
				return err
			}
			serve, err := startAPIServer(p, &lf, &af)
			if err != nil {
				p.log.Close()
				return err
			}
			p.g.Go(serve)
			return p.wait()
		},
	}
	lf.register(cmd.Flags(), true, "127.0.0.1:4222")
	af.register(cmd.Flags())
	pf.register(cmd.Flags(), true)
	return cmd
}

// startAPIServer makes the API server, its TLS material and the admin kubeconfig, and returns a
// function that serves until ctx ends. store may be shared with other roles in this process.
func startAPIServer(p *process, lf *logFlags, af *apiFlags) (func() error, error) {
	host, port, err := net.SplitHostPort(af.listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %w", af.listen, err)
	}
	mat, err := pki.Load(filepath.Join(lf.dataDir, "pki"), af.hosts...)
	if err != nil {
		return nil, err
	}
	for _, what := range mat.Remade {
		slog.Warn("logplane: a damaged TLS file was made again", "what", what)
	}
	cfg := apiserver.Config{Log: p.log, Store: p.store, Registry: p.reg, TLS: mat.TLS, Metrics: p.metrics}
	if cfg.AdvertiseAddress, err = af.advertiseAddress(); err != nil {
		return nil, err
	}
	// The service account token signing key, beside the CA (kubeadm's sa.key).
	if cfg.ServiceAccountKey, err = serviceaccount.LoadKey(filepath.Join(lf.dataDir, "pki")); err != nil {
		return nil, err
	}
	if cfg.ServiceAccountKey.Remade {
		slog.Warn("logplane: the service account signing key was damaged and was made again: tokens issued before no longer authenticate")
	}
	// The client certificate towards node agents' streaming endpoints (pods/log, exec, ...).
	kc, kk, err := mat.CA.Issue("logplane-apiserver-kubelet-client", []string{"system:masters"}, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	if cfg.KubeletTLS, err = apiserver.KubeletClientTLS(mat.CA.CertPEM, kc, kk); err != nil {
		return nil, err
	}
	// Nodes join with a bootstrap token: the handler signs their requests and credentials.
	natsPort := 0
	if u := p.log.ClientURL(); u != "" {
		if _, port, err := net.SplitHostPort(natsHostPort(u)); err == nil {
			natsPort, _ = strconv.Atoi(port) // a listening server's port is a number
		}
	}
	cfg.Join = &nodejoin.Handler{Log: p.log, CA: mat.CA, NATSPort: natsPort, Clock: clock.RealClock{}, Logger: slog.Default()}
	if af.tokenFile != "" {
		if cfg.Tokens, err = tokenfile.NewCSV(af.tokenFile); err != nil {
			return nil, fmt.Errorf("logplane: --token-auth-file: %w", err)
		}
	}
	srv, err := apiserver.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", af.listen)
	if err != nil {
		return nil, err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	_, port, _ = net.SplitHostPort(ln.Addr().String()) // the port chosen, if --listen asked for 0
	url := "https://" + net.JoinHostPort(host, port)
	kubeconfig := filepath.Join(lf.dataDir, "kubeconfig")
	if err := mat.WriteKubeconfig(kubeconfig, url); err != nil {
		ln.Close()
		return nil, err
	}
	serve := func() error {
		slog.Info("logplane: serving the Kubernetes API", "url", url, "kubeconfig", kubeconfig, "nats", p.log.ClientURL())
		return srv.Serve(p.ctx, ln)
	}
	return serve, nil
}

// advertiseAddress is --advertise-address with --listen's port, or --listen itself when its
// address is one pods can reach (neither loopback nor unspecified); else none.
func (f *apiFlags) advertiseAddress() (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(f.listen)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--listen %q: %w", f.listen, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--listen %q: %w", f.listen, err)
	}
	if f.advertise != "" {
		host = f.advertise
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		if f.advertise != "" {
			return netip.AddrPort{}, fmt.Errorf("--advertise-address %q: %w", f.advertise, err)
		}
		return netip.AddrPort{}, nil // a name: nothing to advertise
	}
	if a.IsLoopback() || a.IsUnspecified() {
		return netip.AddrPort{}, nil
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}
