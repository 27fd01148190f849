// Command lpctl is logplane's CLI. It carries kubectl's own command tree (k8s.io/kubectl), so
// every kubectl verb works as it does with kubectl, plus logplane's verbs: history (every
// revision of an object, with who changed what and why), audit (who changed what, when), get --at
// (any list as it was at a resourceVersion or a time) and image load (an OCI archive into a node
// that reaches no registry). Installed as kubectl-lp on the PATH, it is also a kubectl plugin:
// `kubectl lp history deploy/web`.
package main

import (
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
	if err := cli.RunNoErrOutput(newRootCommand(os.Args)); err != nil {
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
	root := kubectlcmd.NewDefaultKubectlCommandWithArgs(kubectlcmd.KubectlOptions{
		PluginHandler: kubectlcmd.NewDefaultPluginHandler(plugin.ValidPluginFilenamePrefixes),
		Arguments:     args,
		ConfigFlags:   flags,
		IOStreams:     streams,
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
  lpctl image load image.tar      an OCI image archive into this node's containerd`)

	f := cmdutil.NewFactory(flags)
	for _, c := range root.Commands() {
		if c.Name() == "get" {
			c.Flags().StringVar(&at, "at", "", "read the state as it was at this resourceVersion or RFC 3339 time (logplane)")
		}
	}
	group := cobra.Group{ID: "logplane", Title: "logplane Commands:"}
	root.AddGroup(&group)
	for _, c := range []*cobra.Command{newHistoryCommand(f, streams), newAuditCommand(f, streams), newImageCommand(streams)} {
		c.GroupID = group.ID
		root.AddCommand(c)
	}
	return root
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
