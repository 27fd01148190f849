package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/logplane/logplane/dataplane/sim"
)

// FleetConfig configures a Fleet of simulated nodes.
type FleetConfig struct {
	// Template is the configuration every node starts from: Registry and
	// Store (shared by all nodes) are required; NodeName, NodeIP, PodCIDR,
	// Runtime, RuntimeName, RuntimeVersion and VolumeDir are set per node.
	Template Config
	// Nodes is how many nodes to run.
	Nodes int
	// Prefix names the nodes Prefix-0, Prefix-1, ... Default "sim".
	Prefix string
	// First is the number of the first node. Default 0.
	First int
	// NodeIP is every node's InternalIP: where the Fleet's streaming Server
	// listens. Default 127.0.0.1.
	NodeIP string
	// Subnet is the pod range of node 0 (the fleet's first node is node
	// First); node i has the i-th range of that size after it. Default
	// DefaultSimSubnet. Run refuses to start if one of them overlaps a range
	// another node still uses (see Config.PodCIDR).
	Subnet string
	// VolumeDir is the root of the nodes' volume directories (one each). Required.
	VolumeDir string
	// Sim, when set, returns the simulated runtime's configuration of node i
	// (its Subnet is filled in from Subnet if empty).
	Sim func(i int) sim.Config
	// PodEvents records the pods' Normal Events (Pulled, Created, Started...)
	// too. Default off: simulated nodes are quiet as kwok's are (Config.QuietPods).
	PodEvents bool
}

// Fleet runs simulated node agents in one process: the same Agent code on
// dataplane/sim runtimes, sharing one projection, registry and process.
type Fleet struct {
	agents []*Agent
}

// SimCapacity is a simulated node's default capacity.
func SimCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourcePods:             resource.MustParse(fmt.Sprint(DefaultMaxPods)),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
}

// DefaultSimSubnet is the made-up pod range of simulated node 0. It is
// outside 10.244.0.0/16, where real nodes' ranges are (the node agent's
// default is 10.244.0.0/24), so that simulated nodes can join a cluster of
// real ones without taking their ranges.
const DefaultSimSubnet = "10.245.0.0/24"

// SimSubnet is the made-up pod range of simulated node i with the default
// ranges: 10.245.0.0/24, 10.245.1.0/24, ... then on into 10.246.0.0/24 and
// beyond ("" past the end of the IPv4 space).
func SimSubnet(i int) string {
	p, ok := nthPrefix(netip.MustParsePrefix(DefaultSimSubnet), i)
	if !ok {
		return ""
	}
	return p.String()
}

// NewFleet makes the agents of a fleet.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Nodes <= 0 {
		return nil, errors.New("nodeagent: a fleet needs at least one node")
	}
	if cfg.VolumeDir == "" {
		return nil, errors.New("nodeagent: FleetConfig.VolumeDir is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sim"
	}
	if cfg.NodeIP == "" {
		cfg.NodeIP = "127.0.0.1"
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSimSubnet
	}
	first, err := netip.ParsePrefix(cfg.Subnet)
	if err != nil || !first.Addr().Is4() {
		return nil, fmt.Errorf("nodeagent: fleet subnet %q: want an IPv4 range", cfg.Subnet)
	}
	f := &Fleet{}
	for n := range cfg.Nodes {
		i := cfg.First + n
		var sc sim.Config
		if cfg.Sim != nil {
			sc = cfg.Sim(i)
		}
		if sc.Subnet == "" {
			p, ok := nthPrefix(first, i)
			if !ok {
				return nil, fmt.Errorf("nodeagent: node %d: the ranges after %s run out of IPv4 addresses", i, first)
			}
			sc.Subnet = p.String()
		}
		if sc.Clock == nil {
			sc.Clock = cfg.Template.Clock
		}
		rt, err := sim.New(sc)
		if err != nil {
			return nil, fmt.Errorf("nodeagent: node %d: %w", i, err)
		}
		c := cfg.Template
		c.QuietPods = !cfg.PodEvents
		c.NodeName = fmt.Sprintf("%s-%d", cfg.Prefix, i)
		c.NodeIP = cfg.NodeIP
		c.PodCIDR = sc.Subnet
		c.Runtime = rt
		c.Prober = nil
		c.RuntimeName = "sim"
		c.RuntimeVersion = "sim://0.1.0"
		c.VolumeDir = filepath.Join(cfg.VolumeDir, c.NodeName)
		c.MachinePressure = false
		c.podCIDRChecked = true // by Run, for the whole fleet
		if c.Capacity == nil {
			c.Capacity = SimCapacity()
		}
		if c.Labels == nil {
			c.Labels = map[string]string{"type": "sim"}
		}
		a, err := New(c)
		if err != nil {
			return nil, err
		}
		f.agents = append(f.agents, a)
	}
	return f, nil
}

// Agents are the fleet's agents, in node order.
func (f *Fleet) Agents() []*Agent { return f.agents }

// Run runs every agent until ctx ends, or until one fails; then it stops
// the others and returns the first error.
func (f *Fleet) Run(ctx context.Context) error {
	if err := f.checkPodCIDRs(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, a := range f.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				once.Do(func() { first = err })
				cancel()
			}
		}()
	}
	wg.Wait()
	return first
}

// checkPodCIDRs checks every node's range at once, as each agent alone
// would (Config.PodCIDR), in one pass over the Nodes.
func (f *Fleet) checkPodCIDRs(ctx context.Context) error {
	var claims []claim
	for _, a := range f.agents {
		if a.cfg.PodCIDR != "" {
			claims = append(claims, claim{node: a.cfg.NodeName, prefix: netip.MustParsePrefix(a.cfg.PodCIDR)}) // parsed in New
		}
	}
	a := f.agents[0] // NewFleet makes at least one
	return a.retry(ctx, "check the pod ranges", func() error {
		if _, err := a.reg.ConsistentRead(ctx); err != nil {
			return err
		}
		return checkPodCIDRs(a, claims, true)
	})
}

// Ready waits until every agent is ready (see Agent.Ready).
func (f *Fleet) Ready(ctx context.Context) error {
	for _, a := range f.agents {
		select {
		case <-a.Ready():
		case <-ctx.Done():
			return fmt.Errorf("nodeagent: waiting for %s: %w", a.NodeName(), ctx.Err())
		}
	}
	return nil
}
