package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/logplane/logplane/dataplane/containerd"
)

// loadImageDir imports every OCI image archive (*.tar) of dir into the runtime's containerd, so
// that a machine that reaches no registry starts with the images its pods need (ops/up.sh puts
// the demo images there). A missing directory is not an error.
func loadImageDir(ctx context.Context, rt *containerd.Runtime, dir string) error {
	archives, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return fmt.Errorf("image dir %s: %w", dir, err)
	}
	for _, path := range archives {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("image dir: %w", err)
		}
		names, err := rt.ImportArchive(ctx, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("loading %s: %w", path, err)
		}
		slog.Info("logplane: loaded images", "archive", path, "images", names)
	}
	return nil
}
