package main

import (
	"context"

	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/workloads"
)

// buildWorkloads wires the workload reconcilers (replica sets, replication controllers,
// deployments, garbage collection, node lifecycle), which share one informer index.
func buildWorkloads(_ context.Context, d reconcilerDeps) ([]engine.Registration, []func(context.Context) error, error) {
	set, err := workloads.New(workloads.Config{Store: d.store, Registry: d.registry, Host: d.holder,
		NodeGracePeriod: d.nodeGrace, Logger: d.logger})
	if err != nil {
		return nil, nil, err
	}
	return set.Registrations(), []func(context.Context) error{set.Run}, nil
}
