// Package workloads assembles the workload reconcilers of one reconcile process: replicaset,
// replicationcontroller, deployment, the garbage collector, node lifecycle and the namespace
// lifecycle, over one projection, one registry and one informer index that they share, with
// their Kubernetes Event recorders. The process (cmd/logplane) registers Registrations on its
// engine beside the other reconcilers and runs Run beside the engine.
package workloads

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/deployment"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/garbagecollector"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/namespaces"
	"github.com/logplane/logplane/reconcilers/nodelifecycle"
	"github.com/logplane/logplane/reconcilers/replicaset"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// Config configures the workload reconcilers.
type Config struct {
	// Store is the projection they read; someone runs it. Required.
	Store *projections.Store
	// Registry writes. Required.
	Registry *registry.Registry
	// Only names the reconcilers to run (Names); empty: all of them.
	Only []string
	// Host names this process in the Events it records (source.host). Optional.
	Host string
	// BurstReplicas bounds the pods one replica set reconcile creates or deletes. Default 500.
	BurstReplicas int
	// Workers per reconciler. Default 4.
	Workers int
	// NodeGracePeriod a node may go without renewing its lease before it is NotReady. Default
	// 40s.
	NodeGracePeriod time.Duration
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Names of the reconcilers, as Config.Only takes them.
var Names = []string{replicaset.ReplicaSetName, replicaset.ReplicationControllerName, deployment.Name, garbagecollector.Name, nodelifecycle.Name, namespaces.Name}

// Set is the assembled reconcilers.
type Set struct {
	cfg       Config
	index     *informer.Index
	stopIndex func()
	recorders []*recorder.Recorder
	regs      []engine.Registration
	runs      []func(context.Context) error
}

// New assembles the reconcilers and starts their informer index on cfg.Store.
func New(cfg Config) (*Set, error) {
	if cfg.Store == nil || cfg.Registry == nil {
		return nil, errors.New("workloads: config needs a Store and a Registry")
	}
	for _, n := range cfg.Only {
		if !slices.Contains(Names, n) {
			return nil, fmt.Errorf("workloads: unknown reconciler %q (known: %v)", n, Names)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Set{cfg: cfg}
	keep := slices.Concat(replicaset.KeptResources, deployment.KeptResources, nodelifecycle.KeptResources)
	s.index = informer.New(cfg.Logger, dedupe(keep)...)

	on := func(name string) bool { return len(cfg.Only) == 0 || slices.Contains(cfg.Only, name) }
	if on(replicaset.ReplicaSetName) || on(replicaset.ReplicationControllerName) {
		rsEvents, err := s.recorder(replicaset.ReplicaSetName, "replicaset-controller")
		if err != nil {
			return nil, err
		}
		rcEvents, err := s.recorder(replicaset.ReplicationControllerName, "replication-controller")
		if err != nil {
			return nil, err
		}
		c, err := replicaset.New(replicaset.Config{
			Registry: cfg.Registry, Index: s.index,
			Events: rsEvents, ControllerEvents: rcEvents,
			BurstReplicas: cfg.BurstReplicas, Workers: cfg.Workers, Now: cfg.Now, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		for _, r := range c.Registrations() {
			if on(r.Name) {
				s.regs = append(s.regs, r)
			}
		}
	}
	if on(deployment.Name) {
		events, err := s.recorder(deployment.Name, "deployment-controller")
		if err != nil {
			return nil, err
		}
		d, err := deployment.New(deployment.Config{Store: cfg.Store, Registry: cfg.Registry, Index: s.index, Events: events,
			Workers: cfg.Workers, Now: cfg.Now, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		s.regs = append(s.regs, d.Registration())
	}
	if on(garbagecollector.Name) {
		gc, err := garbagecollector.New(garbagecollector.Config{Registry: cfg.Registry, Index: s.index, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		s.regs = append(s.regs, gc.Registrations()...)
	}
	if on(nodelifecycle.Name) {
		nodeEvents, err := s.recorder(nodelifecycle.Name, "node-controller")
		if err != nil {
			return nil, err
		}
		evictions, err := s.recorder(nodelifecycle.Name, "taint-eviction-controller")
		if err != nil {
			return nil, err
		}
		nl, err := nodelifecycle.New(nodelifecycle.Config{Store: cfg.Store, Registry: cfg.Registry, Index: s.index,
			GracePeriod: cfg.NodeGracePeriod, NodeEvents: nodeEvents, EvictionEvents: evictions,
			Workers: cfg.Workers, Now: cfg.Now, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		s.regs = append(s.regs, nl.Registration())
	}
	if on(namespaces.Name) {
		ns, err := namespaces.New(namespaces.Config{Store: cfg.Store, Registry: cfg.Registry, Now: cfg.Now, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		s.regs = append(s.regs, ns.Registration())
	}
	s.stopIndex = s.index.Start(cfg.Store)
	return s, nil
}

func (s *Set) recorder(actor, component string) (*recorder.Recorder, error) {
	r, err := recorder.New(recorder.Config{
		Registry: s.cfg.Registry, Actor: registry.Reconciler(actor),
		Source:     corev1.EventSource{Component: component, Host: s.cfg.Host},
		SpamFilter: true, Logger: s.cfg.Logger, Now: s.cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("workloads: %w", err)
	}
	s.recorders = append(s.recorders, r)
	return r, nil
}

func dedupe(grs []schema.GroupResource) []schema.GroupResource {
	slices.SortFunc(grs, func(a, b schema.GroupResource) int {
		if a.String() < b.String() {
			return -1
		}
		if a.String() > b.String() {
			return 1
		}
		return 0
	})
	return slices.Compact(grs)
}

// Registrations are the reconcilers to register on the engine.
func (s *Set) Registrations() []engine.Registration { return s.regs }

// Index is the informer index the reconcilers share.
func (s *Set) Index() *informer.Index { return s.index }

// Run runs the recorders and the reconcilers' own loops until ctx ends, then stops the index.
func (s *Set) Run(ctx context.Context) error {
	defer s.stopIndex()
	var wg sync.WaitGroup
	errs := make([]error, len(s.recorders)+len(s.runs))
	for i, r := range s.recorders {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = r.Run(ctx) }()
	}
	for i, run := range s.runs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[len(s.recorders)+i] = run(ctx) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}
