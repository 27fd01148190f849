// Package ociregistry runs an in-memory OCI registry (go-containerregistry's
// pkg/registry) on 127.0.0.1 and pushes images to it. Tests use it so that the
// runtime pulls images over HTTP as it would from any registry, on machines
// that reach none.
package ociregistry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is a running in-memory registry.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of image references.
	Host string
	srv  *http.Server
	errc chan error
}

// Start serves a new empty registry on an ephemeral port of 127.0.0.1 until
// Close is called.
func Start() (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ociregistry: listen: %w", err)
	}
	r := &Registry{
		Host: ln.Addr().String(),
		srv: &http.Server{
			Handler:           registry.New(registry.Logger(log.New(io.Discard, "", 0))),
			ReadHeaderTimeout: 10 * time.Second,
		},
		errc: make(chan error, 1),
	}
	go func() { r.errc <- r.srv.Serve(ln) }()
	return r, nil
}

// Ref returns the full reference of repository:tag in this registry.
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// Push uploads img as repoTag (e.g. "logplane/hello:1") and returns its full
// reference in this registry.
func (r *Registry) Push(ctx context.Context, repoTag string, img v1.Image) (string, error) {
	ref, err := name.ParseReference(r.Ref(repoTag), name.Insecure)
	if err != nil {
		return "", fmt.Errorf("ociregistry: %w", err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("ociregistry: push %s: %w", ref, err)
	}
	return ref.String(), nil
}

// Close stops the registry.
func (r *Registry) Close() error {
	// Shutdown closes a connection that never sent a request only once it is 5 s old (net/http):
	// wait longer than that.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("ociregistry: shutdown: %w", err)
	}
	if err := <-r.errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ociregistry: serve: %w", err)
	}
	return nil
}
