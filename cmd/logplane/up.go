package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
)

func upCommand() *cobra.Command {
	var lf logFlags
	var af apiFlags
	var rf reconcileFlags
	var agf agentFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole single-machine cluster in one process: log, API server, reconcilers and this machine's node agent",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			l, err := lf.open(ctx)
			if err != nil {
				return err
			}
			defer l.Close()
			store := projections.New(registryCatalog(), slog.Default())
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return store.Run(ctx, l) })
			srv, serve, err := startAPIServer(ctx, l, store, &lf, &af)
			if err != nil {
				return err
			}
			g.Go(serve)
			g.Go(func() error { return runReconcilers(ctx, l, store, srv.Registry(), &rf) })
			g.Go(func() error { return runAgents(ctx, store, srv.Registry(), &agf, &lf) })
			return ignoreCanceled(g.Wait())
		},
	}
	lf.register(cmd.Flags(), true, "127.0.0.1:4222")
	af.register(cmd.Flags())
	rf.register(cmd.Flags())
	agf.register(cmd.Flags())
	return cmd
}

func registryCatalog() *kinds.Catalog { return kinds.Builtin() }

// ignoreCanceled turns the end of a role by its context (SIGINT, SIGTERM) into a clean exit.
func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
