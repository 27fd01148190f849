package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/logplane/logplane/admission"
	"github.com/logplane/logplane/admission/podsecurity"
	"github.com/logplane/logplane/encryption"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// process is what every role runs on: the log, a projection of every object (restored from the
// newest snapshot, then following the log), the registry over both, and the role's goroutines.
type process struct {
	ctx     context.Context // ends when any goroutine of the group fails, or on SIGINT/SIGTERM
	log     *eventlog.Log
	store   *projections.Store
	reg     *registry.Registry
	sealer  *encryption.Sealer
	metrics *prometheus.Registry
	g       *errgroup.Group
}

// processFlags are the flags every role shares beside the log's.
type processFlags struct {
	metricsListen    string
	snapshotEvery    time.Duration
	snapshotMinEvent uint64
	keys             keyFlags
	sweepKeys        bool // this role destroys deleted Secrets' data keys
	podSecurity      string
}

func (f *processFlags) register(fs *pflag.FlagSet, writesSnapshots bool) {
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "address to serve this process's Prometheus metrics on /metrics (empty: none; the API server also serves its own on its /metrics)")
	fs.StringVar(&f.podSecurity, "pod-security-config", "", "a PodSecurityConfiguration file (pod-security.admission.config.k8s.io/v1), as kube-apiserver's admission configuration gives the PodSecurity plug-in: the levels of namespaces that set none, and the exempt users, namespaces and runtime classes (default: privileged, no exemptions)")
	if writesSnapshots {
		fs.DurationVar(&f.snapshotEvery, "snapshot-interval", 5*time.Minute, "how often to consider saving a snapshot of the projection, so that restarts replay only the tail of the log")
		fs.Uint64Var(&f.snapshotMinEvent, "snapshot-min-events", 10_000, "events that must have been applied since the last snapshot for a new one")
	}
	// The roles that write snapshots are the ones that embed the log: they also keep its keys.
	f.sweepKeys = writesSnapshots
	f.keys.register(fs, writesSnapshots)
}

func openProcess(ctx context.Context, lf *logFlags, pf *processFlags) (*process, error) {
	spaceEvents := make(chan eventlog.SpaceEvent, 16)
	l, err := lf.open(ctx, func(e eventlog.SpaceEvent) {
		select {
		case spaceEvents <- e:
		default: // a burst of changes: the metric and the log still say it
		}
	})
	if err != nil {
		return nil, err
	}
	if pf.sweepKeys && pf.keys.grace < minSecretKeyGrace {
		l.Close()
		return nil, fmt.Errorf("--secret-key-grace %v: it must be at least %v, so that a Secret being written is live before its key could be taken for a deleted one's", pf.keys.grace, minSecretKeyGrace)
	}
	var (
		sealer *encryption.Sealer
		store  *projections.Store
	)
	if l.IsNodeFeed() {
		// A node's credential reads only its feed (reconcilers/nodefeed): its projection is
		// built from that, and the control plane opens the Secrets in it. It holds no key.
		store = projections.New(builtin.Catalog(), slog.Default(), projections.WithOpener(l.NodeOpener()))
	} else {
		// The API server (up, apiserver) makes the key ring on a first start, also on an
		// external NATS cluster; so does any process that embeds the log (tests).
		if sealer, err = openSealer(ctx, l, pf.keys.dir(lf), lf.natsURL == "" || pf.sweepKeys); err != nil {
			l.Close()
			return nil, err
		}
		store = projections.New(builtin.Catalog(), slog.Default(), projections.WithOpener(sealer))
		if _, err := store.Restore(ctx, l); err != nil { // it logs what it restored
			l.Close()
			return nil, err
		}
	}
	// Every writer of this process (API clients, reconcilers, node agents) goes through the
	// admission chain, as every client of kube-apiserver does.
	acfg := admission.Config{}
	if pf.podSecurity != "" {
		data, err := os.ReadFile(pf.podSecurity)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("--pod-security-config: %w", err)
		}
		if acfg.PodSecurity, err = podsecurity.LoadConfiguration(data); err != nil {
			l.Close()
			return nil, fmt.Errorf("--pod-security-config: %w", err)
		}
	}
	chain, err := admission.Chain(store, acfg)
	if err != nil {
		l.Close()
		return nil, err
	}
	rcfg := registry.Config{Log: l, Store: store, Admission: chain}
	if sealer != nil {
		rcfg.Sealer = sealer
	}
	reg, err := registry.New(rcfg)
	if err != nil {
		l.Close()
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	p := &process{ctx: gctx, log: l, store: store, reg: reg, sealer: sealer, g: g, metrics: prometheus.NewRegistry()}
	p.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerSpaceMetrics(p.metrics, l)
	g.Go(func() error { return reportSpace(gctx, reg, spaceEvents) })
	if l.IsNodeFeed() {
		g.Go(func() error { return store.RunFeed(gctx, l) })
	} else {
		g.Go(func() error { return store.Run(gctx, l) })
	}
	if pf.sweepKeys && pf.keys.grace >= 0 {
		g.Go(func() error { return runSweeper(gctx, p, pf.keys.grace) })
	}
	if pf.snapshotEvery > 0 {
		policy := projections.SnapshotPolicy{Every: pf.snapshotEvery, MinEvents: pf.snapshotMinEvent}
		g.Go(func() error { return store.RunSnapshots(gctx, l, policy) })
	}
	if pf.metricsListen != "" {
		if err := p.serveMetrics(pf.metricsListen); err != nil {
			l.Close()
			return nil, err
		}
	}
	return p, nil
}

// serveMetrics serves the process's metrics registry until the process ends.
func (p *process) serveMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(p.metrics, promhttp.HandlerOpts{Registry: p.metrics}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	p.g.Go(func() error {
		go func() {
			<-p.ctx.Done()
			srv.Close() // the process is ending; nothing to drain
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	slog.Info("logplane: serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// wait returns when the role ends, closing the log. An end by signal is a clean exit.
func (p *process) wait() error {
	err := p.g.Wait()
	p.log.Close()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
