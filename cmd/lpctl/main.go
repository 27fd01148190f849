// Command lpctl is logplane's CLI. It carries kubectl's own command tree (k8s.io/kubectl), so
// every kubectl verb works as it does with kubectl, plus logplane's verbs: history (every
// revision of an object, with who changed what and why), audit (who changed what, when), get --at
// (any list as it was at a resourceVersion or a time) and image load (an OCI archive into the
// cluster's nodes, through the API server, for clusters that reach no registry). Like kubectl's
// verbs, they take kubectl's global flags before or after them. Installed as kubectl-lp on the
// PATH, it is also a kubectl plugin: `kubectl lp history deploy/web`.
package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/plugin"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/logplane/logplane/apiserver/logplaneapi"
)

func main() {
	root := newRootCommand(os.Args)
	if err := runPlugin(root, os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
	if err := cli.RunNoErrOutput(root); err != nil {
		// As kubectl does: print the error the way its commands do, and exit 1.
		cmdutil.CheckErr(err)
	}
}

func newRootCommand(args []string) *cobra.Command {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	flags := genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().WithDiscoveryBurst(300).WithDiscoveryQPS(50.0)

	// --at on `get`: every request of that command carries the At header, so that kubectl's own
	// get prints the past with its own printers.
	var at string
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		if at != "" {
			c.Wrap(func(rt http.RoundTripper) http.RoundTripper { return atRoundTripper{at: at, next: rt} })
		}
		return c
	}

	asPlugin := filepath.Base(args[0]) == "kubectl-lp"
	// kubectl's tree without its plugin lookup: runPlugin does that once logplane's verbs are in
	// the tree, so that `lpctl --kubeconfig F history ...` finds history as kubectl finds get.
	root := kubectlcmd.NewKubectlCommand(kubectlcmd.KubectlOptions{
		Arguments:   args,
		ConfigFlags: flags,
		IOStreams:   streams,
	})
	root.Use = "lpctl"
	if asPlugin {
		root.Use = "kubectl lp"
	}
	root.Short = "lpctl controls a logplane cluster: every kubectl command, plus history, audit and time travel"
	root.Long = root.Short + ".\n\n" + strings.TrimSpace(`
logplane keeps every change to every object in its log. Beside kubectl's commands:
  lpctl history deploy/web        every revision of an object, with actor, reason and diff
  lpctl audit --since 1h          who changed what, when
  lpctl get pods --at 1234        any list as it was at a resourceVersion or an RFC 3339 time
  lpctl image load image.tar      an OCI image archive into every node, through the API server`)

	f := cmdutil.NewFactory(flags)
	for _, c := range root.Commands() {
		if c.Name() == "get" {
			c.Flags().StringVar(&at, "at", "", "read the state as it was at this resourceVersion or RFC 3339 time (logplane)")
		}
	}
	group := cobra.Group{ID: "logplane", Title: "logplane Commands:"}
	root.AddGroup(&group)
	for _, c := range []*cobra.Command{newHistoryCommand(f, streams), newAuditCommand(f, streams), newImageCommand(f, streams)} {
		c.GroupID = group.ID
		root.AddCommand(c)
	}
	return root
}

// runPlugin runs a kubectl plugin (kubectl-NAME on the PATH) when args name no command of root,
// as kubectl's NewDefaultKubectlCommandWithArgs does; it only returns if there is none to run, or
// with the error of a plugin that could not be run. It looks at root with every command in it
// (logplane's verbs included), so global flags may come before any of them, as with kubectl's.
func runPlugin(root *cobra.Command, args []string) error {
	if len(args) <= 1 {
		return nil
	}
	handler := kubectlcmd.NewDefaultPluginHandler(plugin.ValidPluginFilenamePrefixes)
	pieces := args[1:]
	found, foundArgs, err := root.Find(pieces)
	if err != nil {
		// Cobra adds help and completion at Execute: no plugin for those either.
		name := ""
		for _, a := range pieces {
			if !strings.HasPrefix(a, "-") {
				name = a
				break
			}
		}
		switch name {
		case "help", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
			return nil
		}
		return kubectlcmd.HandlePluginCommand(handler, pieces, 1)
	}
	// `create NAME` where NAME is no subcommand of create: a kubectl-create-NAME plugin.
	if kubectlcmd.IsSubcommandPluginAllowed(found.Name()) && len(foundArgs) >= 1 && !strings.HasPrefix(foundArgs[0], "-") {
		for _, sub := range found.Commands() {
			if sub.Name() == foundArgs[0] {
				return nil
			}
		}
		return kubectlcmd.HandlePluginCommand(handler, pieces, len(pieces)-len(foundArgs)+1)
	}
	return nil
}

type atRoundTripper struct {
	at   string
	next http.RoundTripper
}

func (a atRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(logplaneapi.AtHeader, a.at)
	return a.next.RoundTrip(r)
}
