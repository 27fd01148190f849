package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/logplane/logplane/encryption"
	"github.com/logplane/logplane/eventlog"
)

// minSecretKeyGrace bounds --secret-key-grace from below: a Secret's data key is taken from the
// pool before its first revision is appended and applied, and a sweep must not find it unused
// in between.
const minSecretKeyGrace = time.Minute

// keyFlags say where the key-encryption key is and how long a deleted Secret's data key stays.
type keyFlags struct {
	keysDir string
	grace   time.Duration
}

func (f *keyFlags) register(fs *pflag.FlagSet, sweeps bool) {
	fs.StringVar(&f.keysDir, "keys-dir", "", "directory of the key-encryption key (kek.json) that wraps the data keys of Secrets (default <data-dir>/keys, the API server's)")
	if sweeps {
		fs.DurationVar(&f.grace, "secret-key-grace", 10*time.Minute, "how long a deleted Secret's data key is kept before it is destroyed, after which no revision of that Secret can be read again (crypto-shredding)")
	}
}

func (f *keyFlags) dir(lf *logFlags) string {
	if f.keysDir != "" {
		return f.keysDir
	}
	return filepath.Join(lf.dataDir, "keys")
}

// openSealer loads the key ring and checks it against the data keys in the log. The API server
// makes the key ring on a first start (mayCreate); every role refuses to start when the key
// ring is missing while data keys exist, or is damaged, or does not unwrap them: serving
// Secrets it cannot read, or writing new ones in clear, are both worse than not starting.
func openSealer(ctx context.Context, l *eventlog.Log, dir string, mayCreate bool) (*encryption.Sealer, error) {
	dks, err := l.DataKeys(ctx)
	if err != nil {
		return nil, err
	}
	ring, err := encryption.LoadKeyRing(dir)
	if errors.Is(err, encryption.ErrNoKeyRing) {
		ids, lerr := dks.List(ctx)
		if lerr != nil {
			return nil, lerr
		}
		switch {
		case len(ids) > 0:
			return nil, fmt.Errorf("refusing to start: the key-encryption key %s is missing, and the log holds %d data keys that only it unwraps: "+
				"no Secret could be read. Restore %s from a backup (see docs/security.md)", filepath.Join(dir, encryption.KeyRingFile), len(ids), encryption.KeyRingFile)
		case !mayCreate:
			return nil, fmt.Errorf("refusing to start: no key-encryption key in %s: run with the API server's --data-dir, or copy its keys/%s and pass --keys-dir",
				dir, encryption.KeyRingFile)
		}
		ring, err = encryption.CreateKeyRing(dir, time.Now())
		if err != nil {
			return nil, err
		}
		slog.Info("logplane: made the key-encryption key for Secrets", "path", ring.Path())
	}
	if err != nil {
		return nil, fmt.Errorf("refusing to start: %w", err)
	}
	sealer, err := encryption.NewSealer(encryption.Config{KMS: ring, Keys: dks})
	if err != nil {
		return nil, err
	}
	if err := sealer.Check(ctx); err != nil {
		return nil, fmt.Errorf("refusing to start: %s does not unwrap the data keys in the log: %w", ring.Path(), err)
	}
	return sealer, nil
}

// runSweeper destroys deleted Secrets' data keys after the grace, once the projection has
// caught up with the log as it was at start (so that every live Secret is known).
func runSweeper(ctx context.Context, p *process, grace time.Duration) error {
	_, last, err := p.log.Bounds(ctx)
	if err != nil {
		return err
	}
	if err := p.store.WaitFor(ctx, last); err != nil {
		return err
	}
	interval := min(max(grace/2, time.Second), time.Minute)
	return encryption.NewSweeper(p.sealer, encryption.LiveKeys(p.store), grace).Run(ctx, interval)
}

func keysCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the keys that encrypt Secrets in the log",
	}
	var lf logFlags
	var kf keyFlags
	var retire bool
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Add a new key-encryption key and re-wrap every data key with it, while logplane runs",
		Long: `Add a new key-encryption key to the key ring and re-wrap every Secret's data key with it.
Secrets themselves are not rewritten: only their data keys (one small message each), in the
background of a running logplane, which picks up the new key ring as it goes. The old key stays
in the key ring (so that nothing wrapped by it is ever unreadable) unless --retire is given and
no data key is wrapped by it any more.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dir := kf.dir(&lf)
			ring, err := encryption.LoadKeyRing(dir)
			if err != nil {
				return err
			}
			l, err := lf.open(ctx, nil)
			if err != nil {
				return err
			}
			defer l.Close()
			dks, err := l.DataKeys(ctx)
			if err != nil {
				return err
			}
			sealer, err := encryption.NewSealer(encryption.Config{KMS: ring, Keys: dks})
			if err != nil {
				return err
			}
			if err := sealer.Check(ctx); err != nil {
				return fmt.Errorf("%s does not unwrap the data keys in the log: %w", ring.Path(), err)
			}
			id, err := ring.Rotate(time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new key-encryption key %s in %s\n", id, ring.Path())
			total := 0
			for pass := 0; pass < 3; pass++ { // a data key made by a process that had not yet seen the new key is caught by the next pass
				n, err := sealer.Rewrap(ctx)
				total += n
				if err != nil {
					return fmt.Errorf("re-wrapped %d data keys, then: %w", total, err)
				}
				if n == 0 {
					break
				}
			}
			by, err := sealer.WrappedBy(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "re-wrapped %d data keys; data keys by key-encryption key: %v\n", total, by)
			if retire {
				if len(by) > 1 || (len(by) == 1 && by[id] == 0) {
					return fmt.Errorf("not retiring the old keys: some data keys are still wrapped by them (%v); run rotate again", by)
				}
				if err := ring.Retire(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "retired every key-encryption key but %s\n", id)
			}
			return nil
		},
	}
	lf.register(rotate.Flags(), false, "")
	kf.register(rotate.Flags(), false)
	rotate.Flags().BoolVar(&retire, "retire", false, "remove the old key-encryption keys from the key ring once no data key is wrapped by them")
	cmd.AddCommand(rotate)
	return cmd
}
