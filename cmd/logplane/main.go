// Command logplane is the logplane daemon: one subcommand per role (apiserver, reconcile, agent)
// and `up`, which runs all of them in one process on the embedded log, for a laptop or a single
// machine; and `down`, which stops the containers a node agent left running and removes what
// logplane made on the machine. The roles find each other through the log: run `logplane
// apiserver` (which embeds the NATS server and listens for the others), then `logplane
// reconcile` and `logplane agent` with --nats pointing at it; stop and start any of them
// independently.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := rootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "logplane:", err)
		os.Exit(1)
	}
}

// rootCommand is the command tree of the logplane binary.
func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "logplane",
		Short:         "A Kubernetes-API container orchestrator whose control plane is an event log",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var verbose bool
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug messages")
	root.PersistentPreRun = func(*cobra.Command, []string) {
		level := slog.LevelInfo
		if verbose {
			level = slog.LevelDebug
		}
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	}
	root.AddCommand(upCommand(), apiserverCommand(), reconcileCommand(), agentCommand(), downCommand(), logCommand(), keysCommand(), tokenCommand())
	return root
}
