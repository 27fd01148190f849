package main

import (
	"context"

	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/serviceaccounts"
)

func buildServiceAccounts(d reconcilerDeps) ([]engine.Registration, []func(context.Context) error, error) {
	r, err := serviceaccounts.New(d.store, d.registry)
	if err != nil {
		return nil, nil, err
	}
	return []engine.Registration{r.Registration()}, nil, nil
}
