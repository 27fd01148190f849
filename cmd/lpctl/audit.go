package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/logplane/logplane/apiserver/logplaneapi"
)

func newAuditCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var since, actor, actorKind, resource, name, output string
	var allNamespaces bool
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show who changed what, when",
		Long:  "Show the changes in the log, oldest first: when, who (user, reconciler, node), what kind of change, to which object, and what caused it.",
		Example: "  lpctl audit --since 1h\n  lpctl audit --actor admin --resource deployments\n" +
			"  lpctl audit --actor-kind reconciler -A --since 2026-11-23T10:00:00Z",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			set := func(k, v string) {
				if v != "" {
					q.Set(k, v)
				}
			}
			set("since", since)
			set("actor", actor)
			set("actorKind", actorKind)
			set("resource", resource)
			set("name", name)
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			if !allNamespaces && cmd.Flags().Changed("namespace") {
				ns, _, err := f.ToRawKubeConfigLoader().Namespace()
				if err != nil {
					return err
				}
				q.Set("namespace", ns)
			}
			var a logplaneapi.Audit
			if err := getJSON(cmd.Context(), f, logplaneapi.AuditPath, q, &a); err != nil {
				return err
			}
			switch output {
			case "json", "yaml":
				return printStructured(streams.Out, output, a)
			case "":
				return printAudit(streams.Out, a)
			}
			return fmt.Errorf("unknown output format %q (want json or yaml)", output)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "only changes newer than this: a duration (1h, 30m) or an RFC 3339 time")
	fl.StringVar(&actor, "actor", "", "only changes by this user, reconciler or node")
	fl.StringVar(&actorKind, "actor-kind", "", "only changes by this kind of actor: user, reconciler, node or system")
	fl.StringVar(&resource, "resource", "", "only changes to this resource (plural, e.g. pods or deployments.apps)")
	fl.StringVar(&name, "name", "", "only changes to objects of this name")
	fl.BoolVarP(&allNamespaces, "all-namespaces", "A", false, "changes in every namespace (the default unless -n is given)")
	fl.IntVar(&limit, "limit", 0, "at most this many changes (the newest)")
	fl.StringVarP(&output, "output", "o", "", "json or yaml; default: a table")
	return cmd
}

// auditObject names the object of a change as resource.group/namespace/name.
func auditObject(e logplaneapi.AuditEntry) string {
	obj := e.Resource
	if e.Group != "" {
		obj += "." + e.Group
	}
	if e.Namespace != "" {
		obj += "/" + e.Namespace
	}
	return obj + "/" + e.Name
}

func printAudit(w io.Writer, a logplaneapi.Audit) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTOR\tCHANGE\tOBJECT\tREVISION\tCAUSE")
	for _, e := range a.Items {
		obj := auditObject(e)
		cause := e.Cause
		if cause == "" {
			cause = "-"
		}
		if e.Denied {
			// A refused request: what was asked, and no revision.
			if e.Subresource != "" {
				obj = strings.Replace(obj, "/"+e.Name, "/"+e.Name+"/"+e.Subresource, 1)
			}
			if e.Name == "" {
				obj = strings.TrimSuffix(obj, "/") // a list or create: no object named
			}
			if e.Resource == "" {
				obj = "-"
			}
			fmt.Fprintf(tw, "%s\t%s/%s\tDENIED %s\t%s\t-\t-\n", e.Time.UTC().Format("2006-01-02T15:04:05Z"),
				e.Actor.Kind, e.Actor.Name, e.Verb, obj)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02T15:04:05Z"),
			e.Actor.Kind, e.Actor.Name, e.Reason, obj, e.ResourceVersion, cause)
	}
	return tw.Flush()
}
