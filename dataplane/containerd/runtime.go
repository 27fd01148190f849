// Package containerd is logplane's container runtime on containerd. It
// talks to a containerd daemon (Debian's 1.6, or any 1.6+) through the v1.7
// Go client, in a containerd namespace of its own: either the system daemon
// or one it starts itself (StartDaemon) with root, state and socket under a
// directory. Pod sandboxes are pinned network namespaces wired by
// dataplane/podnet; containers join the sandbox's namespace, write their
// stdout/stderr in the CRI log format (dataplane/crilog), and carry labels
// that let a new Runtime on the same daemon and data directory adopt them.
//
// Only the node agent (and tests, benchmarks) should import it.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	client "github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/logplane/logplane/dataplane/podnet"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// Defaults of Config.
const (
	DefaultAddress     = "/run/containerd/containerd.sock"
	DefaultNamespace   = "logplane"
	DefaultSnapshotter = "overlayfs"
	DefaultShim        = "io.containerd.runc.v2"
)

// Config configures a Runtime.
type Config struct {
	// Address is containerd's socket. Default: DefaultAddress (the system daemon).
	Address string
	// Namespace is the containerd namespace of everything the runtime
	// creates. Default: DefaultNamespace.
	Namespace string
	// DataDir holds sandboxes (emptyDir volumes, hosts files), container
	// logs and stdio FIFOs. Required; it must survive a restart of the node agent.
	DataDir string
	// Network attaches sandboxes to the pod network. Required.
	Network *podnet.Network
	// Snapshotter unpacks images. Default: DefaultSnapshotter.
	Snapshotter string
	// Shim is the containerd runtime (shim) name. Default: DefaultShim.
	Shim string
	// PlainHTTPRegistries are registry hosts ("host:port") pulled from over
	// plain HTTP. localhost, 127.0.0.1 and ::1 always are.
	PlainHTTPRegistries []string
	// DialTimeout bounds the connection to containerd. Default: 10s.
	DialTimeout time.Duration
	// RuncRoot is runc's state directory (runc --root), best on a tmpfs
	// (see StateDir). Default: the shim's, /run/containerd/runc.
	RuncRoot string
	// FIFODir holds the containers' stdio FIFOs, best on a tmpfs (see
	// StateDir); it must survive a restart of the node agent. Default: DataDir/fifo.
	FIFODir string
}

// Runtime runs pods on containerd. Its methods are safe for concurrent use.
type Runtime struct {
	cfg    Config
	client *client.Client
	net    *podnet.Network

	ctx    context.Context // lives until Close; exit watchers run under it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	watchers  map[string]*watcher // container ID -> the goroutine waiting for its exit
	attaching singleflight.Group  // container ID -> an attach to its task under way
	unpacked  map[string]bool     // image refs known to be unpacked
	// imageConfigs caches the config of each image by its digest.
	imageConfigs map[digest.Digest]ocispec.ImageConfig
}

// New connects to containerd and prepares the data directory.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("containerd: DataDir is required")
	}
	if cfg.Network == nil {
		return nil, errors.New("containerd: Network is required")
	}
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.Snapshotter == "" {
		cfg.Snapshotter = DefaultSnapshotter
	}
	if cfg.Shim == "" {
		cfg.Shim = DefaultShim
	}
	if cfg.FIFODir == "" {
		cfg.FIFODir = filepath.Join(cfg.DataDir, "fifo")
	}
	if err := os.MkdirAll(cfg.FIFODir, 0o700); err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	for _, d := range []string{"sandboxes", "logs", "fifo"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("containerd: %w", err)
		}
	}
	c, err := client.New(cfg.Address,
		client.WithDefaultNamespace(cfg.Namespace),
		client.WithTimeout(cfg.DialTimeout))
	if err != nil {
		return nil, fmt.Errorf("containerd: connect %s: %w", cfg.Address, err)
	}
	if _, err := c.Version(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("containerd: version from %s: %w", cfg.Address, err)
	}
	rctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), cfg.Namespace))
	return &Runtime{
		cfg:      cfg,
		client:   c,
		net:      cfg.Network,
		ctx:      rctx,
		cancel:   cancel,
		watchers: map[string]*watcher{},
		unpacked: map[string]bool{},

		imageConfigs: map[digest.Digest]ocispec.ImageConfig{},
	}, nil
}

// Close stops the runtime's goroutines and closes the connection. Containers
// keep running: a new Runtime adopts them.
func (r *Runtime) Close() error {
	r.cancel()
	r.wg.Wait()
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("containerd: close: %w", err)
	}
	return nil
}

// Namespace returns the containerd namespace in use.
func (r *Runtime) Namespace() string { return r.cfg.Namespace }

// Client returns the containerd client, for tests and tools.
func (r *Runtime) Client() *client.Client { return r.client }

// DeleteNamespace removes every container, image and the namespace itself
// from containerd, and the namespace's parent cgroups, leaving sandboxes on
// disk alone (use RemoveSandbox first).
// Tests call it in their cleanup.
func (r *Runtime) DeleteNamespace(ctx context.Context) error {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	var errs []error
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return fmt.Errorf("containerd: list containers: %w", err)
	}
	for _, c := range cs {
		errs = append(errs, r.RemoveContainer(ctx, c.ID()))
	}
	imgs, err := r.client.ImageService().List(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("containerd: list images: %w", err))
	}
	for _, img := range imgs {
		// Synchronous: collect the image's content and snapshots now, not
		// when the garbage collector's schedule allows.
		if err := r.client.ImageService().Delete(ctx, img.Name, images.SynchronousDelete()); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("containerd: delete image %s: %w", img.Name, err))
		}
	}
	// Leases (of an import cut short, say) keep content and snapshots from the
	// garbage collector: they go too.
	ls, err := r.client.LeasesService().List(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("containerd: list leases: %w", err))
	}
	for _, l := range ls {
		if err := r.client.LeasesService().Delete(ctx, l, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("containerd: delete lease %s: %w", l.ID, err))
		}
	}
	// Image deletion garbage-collects content and snapshots asynchronously;
	// the namespace can only go once they are gone. What the collector leaves
	// (nothing should reference it any more) is removed by hand after a while.
	deadline := time.Now().Add(10 * time.Second)
	for try := 0; ; try++ {
		err := r.client.NamespaceService().Delete(ctx, r.cfg.Namespace)
		if err == nil || errdefs.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("containerd: delete namespace %s: %w", r.cfg.Namespace, err))
			break
		}
		if try >= 20 {
			r.removeLeftovers(ctx)
		}
		time.Sleep(100 * time.Millisecond)
	}
	errs = append(errs, removeNamespaceCgroups(r.cfg.Namespace))
	return errors.Join(errs...)
}

// removeLeftovers removes the snapshots (leaves first: a parent goes in a later
// pass) and content blobs left in the namespace, best effort: DeleteNamespace
// reports what stays.
func (r *Runtime) removeLeftovers(ctx context.Context) {
	sn := r.client.SnapshotService(r.cfg.Snapshotter)
	var keys []string
	_ = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		keys = append(keys, info.Name)
		return nil
	})
	for _, k := range keys {
		_ = sn.Remove(ctx, k) // a parent fails until its children are gone
	}
	cs := r.client.ContentStore()
	var blobs []digest.Digest
	_ = cs.Walk(ctx, func(info content.Info) error {
		blobs = append(blobs, info.Digest)
		return nil
	})
	for _, d := range blobs {
		_ = cs.Delete(ctx, d)
	}
}

func notFound(what, id string, err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: %s %q: %w", what, id, runtimeapi.ErrNotFound)
	}
	return fmt.Errorf("containerd: %s %q: %w", what, id, err)
}
