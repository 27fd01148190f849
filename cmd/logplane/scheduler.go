package main

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/scheduler"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// buildScheduler wires the scheduler: a singleton binding pending pods through the registry,
// its Scheduled and FailedScheduling events through a recorder of its own.
func buildScheduler(d reconcilerDeps) ([]engine.Registration, []func(context.Context) error, error) {
	w, err := scheduler.NewRegistryWriter(d.registry, "scheduler")
	if err != nil {
		return nil, nil, err
	}
	events, err := recorder.New(recorder.Config{
		Registry: d.registry,
		Actor:    registry.Reconciler("scheduler"),
		Source:   corev1.EventSource{Component: scheduler.DefaultName},
		Queue:    1 << 15, // a Scheduled event for each of a burst of bindings
		Workers:  8,
		Logger:   d.logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scheduler events: %w", err)
	}
	s, err := scheduler.New(scheduler.Config{Store: d.store, Writer: w, Events: events, Logger: d.logger})
	if err != nil {
		return nil, nil, err
	}
	return []engine.Registration{s.Registration()}, []func(context.Context) error{s.Run, events.Run}, nil
}
