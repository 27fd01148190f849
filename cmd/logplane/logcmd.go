package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/logcheck"
)

// checkGCPercent is the garbage collector's target during a check (GOGC overrides it).
const checkGCPercent = 400

// errFindings makes `log check` exit 1 when it found something, after printing it.
var errFindings = errors.New("the log has problems (see above); `logplane log repair` appends what they need")

type logCheckFlags struct {
	dataDir  string
	natsURL  string
	noObject bool
	jsonOut  bool
}

func (f *logCheckFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "/var/lib/logplane", "data directory of a stopped logplane (offline: its embedded log is opened here)")
	fs.StringVar(&f.natsURL, "nats", "", "NATS URL of a running log (online), e.g. nats://127.0.0.1:4222; empty: offline on --data-dir")
	fs.BoolVar(&f.noObject, "envelopes-only", false, "check only that envelopes decode, not the objects they carry")
	fs.BoolVar(&f.jsonOut, "json", false, "print the report as JSON")
}

func (f *logCheckFlags) open(ctx context.Context) (*eventlog.Log, error) {
	// A check allocates a decoded object per event and keeps little: the collector's default
	// (a cycle every time the heap doubles) made it a quarter of the CPU a check costs.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(checkGCPercent)
	}
	cfg := eventlog.Config{URL: f.natsURL}
	if f.natsURL != "" {
		// Online: the admin's credential, which only root on a control-plane machine reads.
		cfg.CredsFile = credsPath(f.dataDir, eventlog.RoleAdmin)
		if ca := filepath.Join(f.dataDir, "pki", "ca.crt"); fileExists(ca) {
			cfg.CAFile = ca
		}
	}
	if f.natsURL == "" {
		cfg.DataDir = filepath.Join(f.dataDir, "log")
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "nats")); err != nil {
			return nil, fmt.Errorf("no log in %s: %w", f.dataDir, err)
		}
	}
	l, err := eventlog.Open(ctx, cfg)
	if errors.Is(err, eventlog.ErrLocked) {
		return nil, fmt.Errorf("%w: a running logplane holds it; check it online with --nats (its --nats-listen address)", err)
	}
	return l, err
}

func (f *logCheckFlags) options() logcheck.Options {
	o := logcheck.Options{}
	if !f.noObject {
		o.Catalog = builtin.Catalog()
	}
	return o
}

func logCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Check and repair the object log",
	}
	var cf logCheckFlags
	check := &cobra.Command{
		Use:   "check",
		Short: "Read the whole log: every event decodes, every object's chain of revisions holds, every snapshot equals a replay (exit 1 if not)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := cf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			rep, err := logcheck.Check(cmd.Context(), l, cf.options())
			if err != nil {
				return err
			}
			if err := printReport(cmd.OutOrStdout(), rep, cf.jsonOut); err != nil {
				return err
			}
			if !rep.OK() {
				return errFindings
			}
			return nil
		},
	}
	cf.register(check.Flags())

	var rf logCheckFlags
	var dryRun bool
	var purged string
	repair := &cobra.Command{
		Use:   "repair",
		Short: "Check the log, then append what its problems need (never rewriting anything): the last readable revision again after an unreadable one, a tombstone, or a purged object's last known revision",
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := rf.options()
			switch purged {
			case "restore":
			case "delete":
				opts.PurgedAsDeleted = true
			default:
				return fmt.Errorf("--purged %q: want restore or delete", purged)
			}
			l, err := rf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			rep, err := logcheck.Check(cmd.Context(), l, opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if err := printReport(out, rep, rf.jsonOut); err != nil {
				return err
			}
			done, err := logcheck.Repair(cmd.Context(), l, rep, opts, dryRun)
			for _, r := range done {
				switch {
				case dryRun:
					fmt.Fprintf(out, "would %s for %s (seq %d)\n", r.Finding.Repair, r.Finding.Key, r.Finding.Seq)
				case r.Err != nil:
					fmt.Fprintf(out, "skipped %s: %v\n", r.Finding.Key, r.Err)
				default:
					fmt.Fprintf(out, "repaired %s: %s, appended at %d by system/%s\n", r.Finding.Key, r.Finding.Repair, r.Seq, logcheck.RepairActor.GetName())
				}
			}
			if err != nil {
				return err
			}
			if len(done) == 0 {
				fmt.Fprintln(out, "nothing to append")
			}
			return nil
		},
	}
	rf.register(repair.Flags())
	repair.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be appended, append nothing")
	repair.Flags().StringVar(&purged, "purged", "restore", "for an object the newest snapshot holds and the log lost (purged): restore (append its last known revision) or delete (append a tombstone)")
	cmd.AddCommand(check, repair)
	return cmd
}

func printReport(w io.Writer, rep *logcheck.Report, asJSON bool) error {
	if asJSON {
		type finding struct {
			Problem string `json:"problem"`
			Seq     uint64 `json:"seq,omitempty"`
			Key     string `json:"key,omitempty"`
			Detail  string `json:"detail"`
			Repair  string `json:"repair,omitempty"`
		}
		out := struct {
			First, Last, Events, Objects uint64
			Keys, Live, Snapshots        int
			Seconds                      float64
			Findings                     []finding
		}{rep.First, rep.Last, rep.Events, rep.Objects, rep.Keys, rep.Live, rep.Snapshots, rep.Took.Seconds(), []finding{}}
		for _, f := range rep.Findings {
			k := ""
			if f.Key.Resource != "" {
				k = f.Key.String()
			}
			out.Findings = append(out.Findings, finding{string(f.Problem), f.Seq, k, f.Detail, f.Repair})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(w, "log: sequences %d to %d, %d events, %d objects decoded, %d subjects, %d live objects, %d snapshots compared, in %s\n",
		rep.First, rep.Last, rep.Events, rep.Objects, rep.Keys, rep.Live, rep.Snapshots, rep.Took.Round(1e6))
	for _, f := range rep.Findings {
		key := "-"
		if f.Key.Resource != "" {
			key = f.Key.String()
		}
		fmt.Fprintf(w, "seq %d\t%s\t%s\t%s", f.Seq, f.Problem, key, f.Detail)
		if f.Repair != "" {
			fmt.Fprintf(w, "\trepair: %s", f.Repair)
		}
		fmt.Fprintln(w)
	}
	if rep.OK() {
		fmt.Fprintln(w, "no problems found")
	} else {
		fmt.Fprintf(w, "%d problems found\n", len(rep.Findings))
	}
	return nil
}
