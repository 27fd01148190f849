package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/sets"
)

type reconcileFlags struct {
	only       []string
	holder     string
	partitions int
	leaseTTL   time.Duration
	nodeGrace  time.Duration
	rootCAFile string
}

func (f *reconcileFlags) register(fs *pflag.FlagSet) {
	host, err := os.Hostname()
	if err != nil {
		host = "host" // only a default for the replica's name
	}
	fs.StringSliceVar(&f.only, "reconcilers", nil, "reconcilers to run (default all): "+strings.Join(sets.Names(), ", "))
	fs.StringVar(&f.holder, "replica-name", fmt.Sprintf("%s-%d", host, os.Getpid()), "name of this replica among the reconcile processes sharing the work")
	fs.IntVar(&f.partitions, "partitions", 64, "partitions the keys are spread over among replicas (the same in every replica)")
	fs.DurationVar(&f.leaseTTL, "lease-ttl", 5*time.Second, "how long a dead replica's partitions stay claimed before the others take them over")
	fs.DurationVar(&f.nodeGrace, "node-monitor-grace-period", 40*time.Second, "how long a node may go without renewing its lease before it is NotReady and its pods are marked")
	fs.StringVar(&f.rootCAFile, "root-ca-file", "", "PEM file of the cluster CA that verifies the API server, published in every namespace as the ConfigMap kube-root-ca.crt (default <data-dir>/pki/ca.crt, the API server's)")
}

func reconcileCommand() *cobra.Command {
	var lf logFlags
	var rf reconcileFlags
	var pf processFlags
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Run reconcilers (scheduler, controllers); any number of processes share the work",
		RunE: func(cmd *cobra.Command, _ []string) error {
			lf.role = eventlog.RoleReconciler
			if len(rf.only) == 1 && rf.only[0] == sets.Scheduler {
				lf.role = eventlog.RoleScheduler
			}
			p, err := openProcess(cmd.Context(), &lf, &pf)
			if err != nil {
				return err
			}
			p.g.Go(func() error { return runReconcilers(p, &rf, &lf) })
			return p.wait()
		},
	}
	lf.register(cmd.Flags(), false, "")
	rf.register(cmd.Flags())
	pf.register(cmd.Flags(), false)
	return cmd
}

// runReconcilers runs the chosen reconciler sets, once the store has caught up with the log. Each
// set runs on an engine of its own that shares the set's partitions with the other replicas
// running that set (leases in a bucket per set): a process running only the scheduler and another
// running only the workloads each handle every key of their set.
func runReconcilers(p *process, rf *reconcileFlags, lf *logFlags) error {
	ctx, l, store, reg := p.ctx, p.log, p.store, p.reg
	for _, n := range rf.only {
		if !slices.Contains(sets.Names(), n) {
			return fmt.Errorf("unknown reconciler %q (known: %s)", n, strings.Join(sets.Names(), ", "))
		}
	}
	if err := catchUp(ctx, l, store); err != nil {
		return err
	}
	rootCA := rf.rootCAFile
	if rootCA == "" {
		rootCA = filepath.Join(lf.dataDir, "pki", "ca.crt")
	}
	opts := sets.Options{NodeGracePeriod: rf.nodeGrace, Feeds: l, RootCA: func(ctx context.Context) ([]byte, error) {
		return readRootCA(ctx, rootCA, rf.rootCAFile != "", slog.Default())
	}}
	g, ctx := errgroup.WithContext(ctx)
	var names []string
	for _, set := range sets.Names() {
		if len(rf.only) > 0 && !slices.Contains(rf.only, set) {
			continue
		}
		leases, err := l.Leases(ctx, "reconcilers-"+set, rf.leaseTTL)
		if err != nil {
			return err
		}
		e := engine.New(store, engine.Options{Leases: leases, Holder: rf.holder, Partitions: rf.partitions,
			Logger: slog.Default().With("reconcilers", set), Registry: reg, Host: rf.holder,
			Metrics: prometheus.WrapRegistererWith(prometheus.Labels{"reconcilers": set}, p.metrics)})
		if err := sets.Setup(ctx, e, set, opts); err != nil {
			return err
		}
		g.Go(func() error { return e.Run(ctx) })
		names = append(names, set)
	}
	slog.Info("logplane: reconciling", "reconcilers", names, "replica", rf.holder)
	return g.Wait()
}

// catchUp waits until store has applied everything the log held when it was called.
func catchUp(ctx context.Context, l *eventlog.Log, store *projections.Store) error {
	_, last, err := l.Bounds(ctx)
	if err != nil {
		return err
	}
	return store.WaitFor(ctx, last)
}
