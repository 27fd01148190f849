package reconcilerstest

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/localvolume"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/nodeagent"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// NodeOptions shape the simulated nodes.
type NodeOptions struct {
	// RenewInterval is how often a node renews its lease. Default 1s.
	RenewInterval time.Duration
	// MaxPods a node takes. Default 250.
	MaxPods int
	// Exit says how containers behave (sim.Config.Exit): by default they run until stopped.
	Exit func(runtimeapi.ContainerConfig) (after time.Duration, code int32, ok bool)
	// Clock times the containers' exits and their start and finish times (sim.Config.Clock).
	// Default: the real clock.
	Clock clock.WithTicker
	// Quiet nodes record only their pods' Warning Events, as kwok's (nodeagent.Config.QuietPods).
	Quiet bool
}

// Nodes are simulated nodes: logplane's node agent on the simulated runtime, one per node
// (node-1, node-2, ...), as `logplane agent --runtime sim` runs them. An image whose name
// contains "doesnotexist" fails to pull, as it would on a real node. A stopped node's agent is
// gone (no lease renewals, its pods left as they are); a restarted one adopts its pods again.
type Nodes struct {
	ctx   context.Context
	store *projections.Store
	reg   *registry.Registry
	log   *slog.Logger
	opts  NodeOptions
	dir   string

	mu       sync.Mutex
	nodes    map[string]*simNode
	order    []string
	renewals map[string]time.Time
	wg       sync.WaitGroup
}

type simNode struct {
	cfg    nodeagent.Config
	cancel context.CancelFunc
	done   chan struct{}
}

func newNodes(ctx context.Context, store *projections.Store, reg *registry.Registry, log *slog.Logger, dir string, opts NodeOptions) *Nodes {
	if opts.RenewInterval <= 0 {
		opts.RenewInterval = time.Second
	}
	if opts.MaxPods <= 0 {
		opts.MaxPods = 250
	}
	n := &Nodes{ctx: ctx, store: store, reg: reg, log: log, opts: opts, dir: dir, nodes: map[string]*simNode{}, renewals: map[string]time.Time{}}
	store.Subscribe(func(c projections.Change) {
		if c.New != nil && c.New.Key.Resource == "leases" && c.New.Key.Namespace == corev1.NamespaceNodeLease {
			n.mu.Lock()
			n.renewals[c.New.Key.Name] = time.Now()
			n.mu.Unlock()
		}
	})
	return n
}

func pullError(ref string) error {
	if strings.Contains(ref, "doesnotexist") {
		return fmt.Errorf("failed to resolve reference %q: not found", ref)
	}
	return nil
}

// Add starts count more nodes and waits until they are registered.
func (n *Nodes) Add(ctx context.Context, count int) error {
	for range count {
		n.mu.Lock()
		i := len(n.order) + 1
		name := fmt.Sprintf("node-%d", i)
		n.order = append(n.order, name)
		n.mu.Unlock()
		rt, err := sim.New(sim.Config{Subnet: nodeagent.SimSubnet(i), PullError: pullError, Exit: n.opts.Exit, Clock: n.opts.Clock})
		if err != nil {
			return err
		}
		capacity := nodeagent.SimCapacity()
		capacity[corev1.ResourcePods] = *resource.NewQuantity(int64(n.opts.MaxPods), resource.DecimalSI)
		// The node's local provisioner, on plain directories: claims of the class `local`
		// are provisioned and bound on simulated nodes too.
		vols, err := localvolume.New(ctx, localvolume.Config{Dir: filepath.Join(n.dir, name, "localvolumes"), Backend: localvolume.Dir})
		if err != nil {
			return err
		}
		sn := &simNode{cfg: nodeagent.Config{
			LocalVolumes: vols,
			NodeName:     name, NodeIP: "127.0.0.1", PodCIDR: nodeagent.SimSubnet(i), Runtime: rt,
			RuntimeName: "sim", RuntimeVersion: "sim://0.1.0", VolumeDir: filepath.Join(n.dir, name),
			Capacity: capacity, Labels: map[string]string{"type": "sim"},
			Registry: n.reg, Store: n.store, RenewInterval: n.opts.RenewInterval, Logger: n.log,
			QuietPods: n.opts.Quiet,
		}}
		if err := n.start(sn); err != nil {
			return err
		}
		n.mu.Lock()
		n.nodes[name] = sn
		n.mu.Unlock()
	}
	return nil
}

func (n *Nodes) start(sn *simNode) error {
	a, err := nodeagent.New(sn.cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(n.ctx)
	sn.cancel, sn.done = cancel, make(chan struct{})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(sn.done)
		if err := a.Run(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("reconcilerstest: node agent stopped", "node", sn.cfg.NodeName, "err", err)
		}
	}()
	select {
	case <-a.Ready():
		return nil
	case <-sn.done:
		return fmt.Errorf("reconcilerstest: node agent %s stopped before it was ready", sn.cfg.NodeName)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("reconcilerstest: node agent %s not ready after 30s", sn.cfg.NodeName)
	}
}

// Stop stops a node's agent, as if it died: no more lease renewals, its pods left as they are.
func (n *Nodes) Stop(name string) {
	n.mu.Lock()
	sn := n.nodes[name]
	n.mu.Unlock()
	if sn == nil || sn.cancel == nil {
		return
	}
	sn.cancel()
	<-sn.done
	sn.cancel = nil
}

// LastRenewal returns when the projection last saw a node's lease renewed.
func (n *Nodes) LastRenewal(name string) time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.renewals[name]
}

// Restart starts a stopped node's agent again, on the same runtime: it registers the node
// (Ready), adopts the pods still running and finishes the deletions that waited for it.
func (n *Nodes) Restart(_ context.Context, name string) error {
	n.mu.Lock()
	sn := n.nodes[name]
	n.mu.Unlock()
	if sn == nil {
		return fmt.Errorf("reconcilerstest: no node %s", name)
	}
	if sn.cancel != nil {
		return fmt.Errorf("reconcilerstest: node %s is running", name)
	}
	return n.start(sn)
}

// AddContainerd starts one more node whose agent runs pods for real, on the containerd, CNI
// bridge and image registry of env (dataplanetest), and waits until it is registered.
func (n *Nodes) AddContainerd(env *dataplanetest.Env) (string, error) {
	return n.AddContainerdWith(env, nil)
}

// AddContainerdWith is AddContainerd with the agent's configuration changed by configure
// first (its local volumes, say).
func (n *Nodes) AddContainerdWith(env *dataplanetest.Env, configure func(*nodeagent.Config)) (string, error) {
	n.mu.Lock()
	i := len(n.order) + 1
	name := fmt.Sprintf("node-%d", i)
	n.order = append(n.order, name)
	n.mu.Unlock()
	sn := &simNode{cfg: nodeagent.Config{
		NodeName: name, NodeIP: "127.0.0.1", PodCIDR: env.Subnet, Runtime: env.Runtime,
		RuntimeName: "containerd", RuntimeVersion: "containerd://test", VolumeDir: filepath.Join(env.Dir, "volumes"),
		Registry: n.reg, Store: n.store, RenewInterval: n.opts.RenewInterval, BackOff: time.Second, Logger: n.log,
	}}
	if configure != nil {
		configure(&sn.cfg)
	}
	if err := n.start(sn); err != nil {
		return "", err
	}
	n.mu.Lock()
	n.nodes[name] = sn
	n.mu.Unlock()
	return name, nil
}

// Names returns the nodes' names, in the order they were added.
func (n *Nodes) Names() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string{}, n.order...)
}

// wait waits for every agent to stop (once the cluster's context ended).
func (n *Nodes) wait() { n.wg.Wait() }
