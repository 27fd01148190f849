package main

import (
	"github.com/spf13/cobra"

	"github.com/logplane/logplane/eventlog"
)

func upCommand() *cobra.Command {
	var lf logFlags
	var af apiFlags
	var rf reconcileFlags
	var pf processFlags
	var agf agentFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole single-machine cluster in one process: log, API server, reconcilers and this machine's node agent",
		RunE: func(cmd *cobra.Command, _ []string) error {
			agf.podCIDRSet = cmd.Flags().Changed("pod-cidr")
			lf.role, lf.tlsSANs = eventlog.RoleAdmin, af.hosts
			// The service range goes to this machine before the log opens and the API serves:
			// no Service can exist before it.
			if err := routeServiceRange(&agf); err != nil {
				return err
			}
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
			p.g.Go(func() error { return runReconcilers(p, &rf, &lf) })
			p.g.Go(func() error { return runAgents(p, &agf, &lf) })
			return p.wait()
		},
	}
	lf.register(cmd.Flags(), true, "127.0.0.1:4222")
	af.register(cmd.Flags())
	rf.register(cmd.Flags())
	agf.register(cmd.Flags())
	pf.register(cmd.Flags(), true)
	return cmd
}
