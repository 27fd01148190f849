package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// readRootCA reads a PEM certificate bundle, as kube-controller-manager reads --root-ca-file.
// A file the user did not name is the API server's, which a reconcile process started beside
// it may see before it is written: that one is waited for until ctx ends.
func readRootCA(ctx context.Context, path string, explicit bool, logger *slog.Logger) ([]byte, error) {
	wait, warned := 250*time.Millisecond, false
	for {
		ca, err := os.ReadFile(path)
		switch {
		case err == nil:
			_, err = certutil.ParseCertsPEM(ca)
			if err == nil {
				return ca, nil
			}
			if explicit {
				return nil, fmt.Errorf("--root-ca-file %s: %w", path, err)
			}
		case explicit || !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("root CA: %w", err)
		}
		// Missing, or being written (the API server writes it once, at its first start).
		if !warned {
			logger.Warn("logplane: waiting for the cluster CA that the API server writes (pass --root-ca-file, or run with the API server's --data-dir)", "file", path, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the cluster CA %s: %w", path, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
