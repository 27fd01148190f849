// Package reconcilerstest runs a logplane control plane for the tests of the reconcilers: the
// log, the API server with an admin kubeconfig for the real kubectl, the workload reconcilers
// on an engine (in-process, or as separate processes sharing the work), a scheduler, and
// simulated nodes that register, renew their leases and run the pods bound to them. Only tests
// import it.
package reconcilerstest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/sets"
	"github.com/logplane/logplane/registry"
)

// Options shape a test cluster.
type Options struct {
	// Nodes is how many simulated nodes run (named node-1, node-2, ...). Default 0.
	Nodes int
	// NoReconcilers leaves the workload reconcilers out (a test runs them itself).
	NoReconcilers bool
	// NoScheduler leaves pods unbound.
	NoScheduler bool
	// Listen makes the log reachable by other processes (Cluster.LogURL).
	Listen bool
	// Durability of the log. Default eventlog.GroupCommit, logplane's default.
	Durability eventlog.Durability
	// Reconcilers changes the reconcilers' settings before they start.
	Reconcilers func(*sets.Options)
	// NodeOptions shape the simulated nodes.
	NodeOptions NodeOptions
	// Clock is the reconcilers' clock (engine.Options.Clock). Default: the real clock.
	Clock clock.WithTicker
	// Logger for the components. Default: warnings and errors to the test log.
	Logger *slog.Logger
}

// Cluster is a running control plane.
type Cluster struct {
	t testing.TB
	// Kubeconfig is an admin kubeconfig for the API server.
	Kubeconfig string
	// Config is the admin's client-go configuration, and Client a clientset on it.
	Config *rest.Config
	Client kubernetes.Interface
	// CA is the cluster CA certificate (PEM) that verifies the API server.
	CA       []byte
	Log      *eventlog.Log
	API      *apiserver.Server
	Store    *projections.Store
	Registry *registry.Registry
	// Engine runs the in-process reconcilers, the workloads set and the scheduler (nil with
	// NoReconcilers and NoScheduler).
	Engine *engine.Engine
	Nodes  *Nodes
	Logger *slog.Logger
	dir    string
}

// Start runs a cluster until the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	dir := t.TempDir()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	lcfg := eventlog.Config{DataDir: filepath.Join(dir, "log"), Durability: opts.Durability, Logger: logger}
	if opts.Listen {
		lcfg.Listen = "127.0.0.1:0"
	}
	l, err := eventlog.Open(ctx, lcfg)
	if err != nil {
		cancel()
		t.Fatalf("reconcilerstest: opening the log: %v", err)
	}
	var stops []func()
	t.Cleanup(func() {
		cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		l.Close()
	})
	mat, err := pki.Load(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatalf("reconcilerstest: %v", err)
	}
	api, err := apiserver.New(apiserver.Config{Log: l, TLS: mat.TLS, Logger: logger})
	if err != nil {
		t.Fatalf("reconcilerstest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reconcilerstest: listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- api.Serve(ctx, ln) }()
	stops = append(stops, func() { <-served })
	if err := api.Start(ctx); err != nil {
		t.Fatalf("reconcilerstest: starting the API server: %v", err)
	}
	c := &Cluster{t: t, Log: l, API: api, Store: api.Store(), Registry: api.Registry(), Logger: logger, dir: dir, CA: mat.CA.CertPEM}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := mat.WriteKubeconfig(c.Kubeconfig, "https://"+ln.Addr().String()); err != nil {
		t.Fatalf("reconcilerstest: %v", err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatalf("reconcilerstest: %v", err)
	}
	rc.QPS, rc.Burst = -1, 0
	c.Config = rc
	c.Client = kubernetes.NewForConfigOrDie(rc)

	if !opts.NoReconcilers || !opts.NoScheduler {
		var so sets.Options
		if opts.Reconcilers != nil {
			opts.Reconcilers(&so)
		}
		e := engine.New(c.Store, engine.Options{Logger: logger, Registry: c.Registry, Host: "test", Clock: opts.Clock})
		var run []string
		if !opts.NoReconcilers {
			run = append(run, sets.Workloads)
		}
		if !opts.NoScheduler {
			run = append(run, sets.Scheduler)
		}
		for _, set := range run {
			if err := sets.Setup(ctx, e, set, so); err != nil {
				t.Fatalf("reconcilerstest: %v", err)
			}
		}
		c.Engine = e
		done := make(chan struct{})
		go func() { _ = e.Run(ctx); close(done) }() // it returns nil once ctx ends
		stops = append(stops, func() { <-done })
	}
	c.Nodes = newNodes(ctx, c.Store, c.Registry, logger, filepath.Join(dir, "nodes"), opts.NodeOptions)
	stops = append(stops, c.Nodes.wait)
	if opts.Nodes > 0 {
		if err := c.Nodes.Add(ctx, opts.Nodes); err != nil {
			t.Fatalf("reconcilerstest: %v", err)
		}
	}
	return c
}

// SchedulerEngine returns an engine running the scheduler as `logplane reconcile` does, on
// store and reg; the caller runs it.
func SchedulerEngine(reg *registry.Registry, store *projections.Store, logger *slog.Logger) (*engine.Engine, error) {
	e := engine.New(store, engine.Options{Logger: logger, Registry: reg})
	if err := sets.Setup(context.Background(), e, sets.Scheduler, sets.Options{}); err != nil {
		return nil, err
	}
	return e, nil
}

// WaitReconciled waits until the in-process reconcilers have reconciled everything that the
// changes up to the store's applied sequence asked for, failing the test if they have not within
// a minute, and returns that sequence. A test calls it before it asserts that the reconcilers
// did nothing more.
func (c *Cluster) WaitReconciled() uint64 {
	c.t.Helper()
	seq := c.Store.Applied()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Engine.WaitReconciled(ctx, seq); err != nil {
		c.t.Fatalf("reconcilerstest: %v", err)
	}
	return seq
}

// LogURL is the URL at which other processes reach the log (Options.Listen).
func (c *Cluster) LogURL() string { return c.Log.ClientURL() }

// ReconcilerCredentials is a reconcile process's credential of the log, with the lease buckets
// of every reconciler set and of the "delay" role.
func (c *Cluster) ReconcilerCredentials(t testing.TB) []byte {
	t.Helper()
	buckets := []string{"reconcilers-delay"}
	for _, set := range sets.Names() {
		buckets = append(buckets, "reconcilers-"+set)
	}
	creds, err := c.Log.Credentials(eventlog.Identity{Role: eventlog.RoleReconciler, LeaseBuckets: buckets})
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// Kubectl runs the real kubectl (/usr/bin/kubectl, or $KUBECTL) against the cluster and returns
// its standard output, and its standard error in the error if it fails.
func (c *Cluster) Kubectl(args ...string) (string, error) { return c.KubectlIn("", args...) }

// KubectlIn is Kubectl with a manifest on standard input (for apply -f - and create -f -).
func (c *Cluster) KubectlIn(stdin string, args ...string) (string, error) {
	bin := os.Getenv("KUBECTL")
	if bin == "" {
		bin = "/usr/bin/kubectl"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// MustKubectl is Kubectl failing the test on error.
func (c *Cluster) MustKubectl(args ...string) string {
	c.t.Helper()
	out, err := c.Kubectl(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// MustApply pipes a manifest to kubectl apply -f -.
func (c *Cluster) MustApply(manifest string) string {
	c.t.Helper()
	out, err := c.KubectlIn(manifest, "apply", "-f", "-")
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// Pods lists the pods of namespace ns that match a label selector, failing the test if it cannot.
func (c *Cluster) Pods(ns, selector string) []corev1.Pod {
	c.t.Helper()
	l, err := c.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		c.t.Fatal(err)
	}
	return l.Items
}

// LivePods lists the pods of the default namespace that match a label selector and are not being
// deleted.
func (c *Cluster) LivePods(selector string) []corev1.Pod {
	c.t.Helper()
	var out []corev1.Pod
	for _, p := range c.Pods("default", selector) {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// Eventually calls cond until it returns true, failing the test with cond's last message after
// timeout.
func (c *Cluster) Eventually(timeout time.Duration, cond func() (bool, string)) {
	c.t.Helper()
	Eventually(c.t, timeout, cond)
}

// Eventually calls cond until it returns true, failing t with cond's last message after timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
