package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/apiserver/logplaneapi"
)

func newHistoryCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "history (TYPE NAME | TYPE/NAME)",
		Short: "Show every revision of an object: when, who, why, and what changed",
		Long: "Show every revision of an object still in the log, oldest first, deleted objects included: its " +
			"resourceVersion, time, actor, reason, the revision it was caused by, and what changed from the previous one.",
		Example: "  lpctl history deployment/web\n  lpctl history pod nginx -n default\n  lpctl history cm/settings -o yaml",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := objectPath(f, args)
			if err != nil {
				return err
			}
			var h logplaneapi.History
			if err := getJSON(cmd.Context(), f, logplaneapi.HistoryPath(path), nil, &h); err != nil {
				return err
			}
			switch output {
			case "json", "yaml":
				return printStructured(streams.Out, output, h)
			case "":
				return printHistory(streams.Out, h)
			}
			return fmt.Errorf("unknown output format %q (want json or yaml)", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "json or yaml for the whole history with the objects; default: a readable summary")
	return cmd
}

// objectPath resolves "TYPE/NAME" or "TYPE NAME" (short names included, as kubectl knows them)
// into the object's Kubernetes API path.
func objectPath(f cmdutil.Factory, args []string) (string, error) {
	typ, name, ok := strings.Cut(args[0], "/")
	if len(args) == 2 {
		if ok {
			return "", fmt.Errorf("give either TYPE/NAME or TYPE NAME, not both")
		}
		typ, name = args[0], args[1]
	} else if !ok || name == "" {
		return "", fmt.Errorf("name the object as TYPE/NAME or TYPE NAME")
	}
	mapper, err := f.ToRESTMapper()
	if err != nil {
		return "", err
	}
	gvr, err := mapper.ResourceFor(schema.ParseGroupResource(typ).WithVersion(""))
	if err != nil {
		return "", fmt.Errorf("the server doesn't have a resource type %q: %w", typ, err)
	}
	gvk, err := mapper.KindFor(gvr)
	if err != nil {
		return "", err
	}
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return "", err
	}
	prefix := "/apis/" + gvr.Group + "/" + gvr.Version
	if gvr.Group == "" {
		prefix = "/api/" + gvr.Version
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns, _, err := f.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			return "", err
		}
		return prefix + "/namespaces/" + ns + "/" + gvr.Resource + "/" + name, nil
	}
	return prefix + "/" + gvr.Resource + "/" + name, nil
}

// getJSON GETs a logplane endpoint and decodes its JSON answer; see callJSON.
func getJSON(ctx context.Context, f cmdutil.Factory, path string, query url.Values, into any) error {
	return callJSON(ctx, f, http.MethodGet, path, query, nil, "", into)
}

// callJSON calls a logplane endpoint with the user's credentials and decodes its JSON answer.
// A Kubernetes Status answer becomes a StatusError, which kubectl prints as it prints its own
// ("Error from server (NotFound): ...").
func callJSON(ctx context.Context, f cmdutil.Factory, method, path string, query url.Values, body io.Reader, contentType string, into any) error {
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	u := strings.TrimSuffix(cfg.Host, "/") + cfg.APIPath + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var st metav1.Status
		if json.Unmarshal(b, &st) == nil && st.Kind == "Status" && st.Message != "" {
			return &apierrors.StatusError{ErrStatus: st}
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, into)
}

func printStructured(w io.Writer, format string, v any) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// printHistory prints one line per revision, aligned like a table, each followed by what
// changed, indented.
func printHistory(w io.Writer, h logplaneapi.History) error {
	if len(h.Items) == 0 {
		_, err := fmt.Fprintf(w, "No history for %s %s.\n", h.Resource, h.Name)
		return err
	}
	header := []string{"REVISION", "TIME", "ACTOR", "REASON", "CAUSE"}
	widths := make([]int, len(header))
	for i, c := range header {
		widths[i] = len(c)
	}
	row := func(rv string, t time.Time, actor logplaneapi.Actor, reason, cause string) []string {
		if cause == "" {
			cause = "-"
		}
		cells := []string{rv, t.UTC().Format("2006-01-02T15:04:05Z"), actor.Kind + "/" + actor.Name, reason, cause}
		for j, c := range cells {
			widths[j] = max(widths[j], len(c))
		}
		return cells
	}
	// The changes to other objects that led to this one come first, oldest first, each with the
	// object it changed.
	causes := make([][]string, len(h.CausedBy))
	for i, e := range h.CausedBy {
		causes[len(causes)-1-i] = row(e.ResourceVersion, e.Time, e.Actor, e.Reason, e.Cause)
	}
	rows := make([][]string, len(h.Items))
	for i, rev := range h.Items {
		rows[i] = row(rev.ResourceVersion, rev.Time, rev.Actor, rev.Reason, rev.Cause)
	}
	line := func(cells []string) string {
		var b strings.Builder
		for j, c := range cells {
			if j == len(cells)-1 {
				b.WriteString(c)
				break
			}
			fmt.Fprintf(&b, "%-*s  ", widths[j], c)
		}
		return b.String()
	}
	var out strings.Builder
	out.WriteString(line(header) + "\n")
	for i := range causes {
		e := h.CausedBy[len(causes)-1-i]
		out.WriteString(line(causes[i]) + "\n")
		verb := map[string]string{"ADDED": "created", "DELETED": "deleted"}[e.Type]
		if verb == "" {
			verb = "changed"
		}
		out.WriteString("    " + verb + " " + auditObject(e) + "\n")
	}
	var prev json.RawMessage
	for i, rev := range h.Items {
		out.WriteString(line(rows[i]) + "\n")
		var changes []string
		switch rev.Type {
		case "ADDED":
			changes = []string{"created"}
			if i > 0 {
				changes = []string{"created again"}
			}
		case "DELETED":
			changes = []string{"deleted"}
		default:
			changes = diffObjects(prev, rev.Object)
			if len(changes) == 0 && len(secretChanges(rev.Secret)) == 0 {
				changes = []string{"no change to the object"}
			}
		}
		changes = append(changes, secretChanges(rev.Secret)...)
		for _, c := range changes {
			out.WriteString("    " + c + "\n")
		}
		prev = rev.Object
		if rev.Type == "DELETED" {
			prev = nil
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// secretChanges says what happened to a Secret's values in one revision: which keys changed and
// their sizes, or that the values were forgotten. History never carries the values themselves.
func secretChanges(s *logplaneapi.SecretValues) []string {
	if s == nil {
		return nil
	}
	if s.Forgotten {
		return []string{"values forgotten (the Secret was deleted and its data key destroyed)"}
	}
	var out []string
	for _, k := range s.Keys {
		switch k.Change {
		case "unchanged":
		case "removed":
			out = append(out, fmt.Sprintf("%s.%s: removed", k.Field, k.Key))
		default:
			out = append(out, fmt.Sprintf("%s.%s: %s (%d bytes)", k.Field, k.Key, k.Change, k.Bytes))
		}
	}
	return out
}
