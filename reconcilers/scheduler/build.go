package scheduler

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// Build makes the scheduler of a logplane process, as `logplane reconcile` runs it: reading
// store, binding through reg (RegistryWriter), its events through a recorder of its own. It
// returns the registration to run on the engine and the loops to run beside it (the cache and
// the recorder), each until its context ends. Its metrics go to metrics, if not nil.
func Build(reg *registry.Registry, store *projections.Store, metrics prometheus.Registerer, logger *slog.Logger) ([]engine.Registration, []func(context.Context) error, error) {
	w, err := NewRegistryWriter(reg, "scheduler")
	if err != nil {
		return nil, nil, err
	}
	events, err := recorder.New(recorder.Config{
		Registry: reg,
		Actor:    registry.Reconciler("scheduler"),
		Source:   corev1.EventSource{Component: DefaultName},
		Queue:    1 << 15, // a Scheduled event for each of a burst of bindings
		Workers:  8,
		Logger:   logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scheduler: events: %w", err)
	}
	s, err := New(Config{Store: store, Writer: w, Events: events, Metrics: metrics, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return []engine.Registration{s.Registration()}, []func(context.Context) error{s.Run, events.Run}, nil
}
