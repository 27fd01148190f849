package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func agentCommand() *cobra.Command {
	var lf logFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent of this machine (or simulated nodes)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("the node agent is not wired yet")
		},
	}
	lf.register(cmd.Flags(), false, "")
	return cmd
}
