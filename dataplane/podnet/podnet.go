// Package podnet gives pods their network: a pinned network namespace per
// pod, wired by CNI (github.com/containerd/go-cni running the bridge,
// host-local and, for pods with host ports, portmap plugins, Debian's by
// default; the loopback interface is brought up in-process) to a bridge on
// the node that owns the node's pod range. Pods get a default route only
// through that bridge and no masquerading, so nothing is routed outward by
// logplane. It also dials into a pod's namespace (port-forward).
package podnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/pkg/netns"
	gocni "github.com/containerd/go-cni"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// Defaults of Config.
const (
	DefaultPluginDir   = "/usr/lib/cni"
	DefaultNetworkName = "logplane"
	DefaultBridge      = "lp0"
	DefaultSubnet      = "10.244.0.0/24"
)

// Config configures a node's pod network.
type Config struct {
	// StateDir holds host-local's IP allocations. Required; it must survive
	// a restart of the node agent.
	StateDir string
	// NetNSDir holds the pinned network namespaces, best on a tmpfs (they
	// are gone when the machine restarts). Default: StateDir/netns.
	NetNSDir string
	// PluginDirs are searched for CNI plugin binaries. Default: DefaultPluginDir.
	PluginDirs []string
	// NetworkName names the CNI network (and its IPAM allocations). Default: DefaultNetworkName.
	NetworkName string
	// Bridge is the Linux bridge pods attach to (at most 15 bytes). Default: DefaultBridge.
	Bridge string
	// Subnet is this node's pod range; the bridge takes its first address as
	// the pods' gateway. Default: DefaultSubnet.
	Subnet string
	// MTU of the pods' interfaces; 0 lets the bridge plugin choose.
	MTU int
}

// Network attaches pods to the node's pod network.
type Network struct {
	cfg Config
	// cni runs the bridge plugin (with host-local IPAM); cniPorts runs it
	// and then portmap, for pods with host ports. Both are the same CNI
	// network (name, IPAM state), so either releases the other's IPs.
	cni, cniPorts gocni.CNI
	// serial is held around CNI calls in race-detector builds only: there
	// go-cni swaps its mutex for go-deadlock's, which takes concurrent
	// read locks from different goroutines for a recursive lock and exits.
	serial sync.Mutex
}

func (n *Network) lock() func() {
	if !raceBuild {
		return func() {}
	}
	n.serial.Lock()
	return n.serial.Unlock
}

// Attachment is a pod's place on the network.
type Attachment struct {
	NetNSPath string
	IP        string
}

// New checks cfg, fills in defaults and loads the CNI configuration. It does
// not touch the machine: the bridge is created with the first pod.
func New(cfg Config) (*Network, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("podnet: StateDir is required")
	}
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = []string{DefaultPluginDir}
	}
	if cfg.NetNSDir == "" {
		cfg.NetNSDir = filepath.Join(cfg.StateDir, "netns")
	}
	if cfg.NetworkName == "" {
		cfg.NetworkName = DefaultNetworkName
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if len(cfg.Bridge) > 15 {
		return nil, fmt.Errorf("podnet: bridge name %q longer than 15 bytes", cfg.Bridge)
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if _, err := netip.ParsePrefix(cfg.Subnet); err != nil {
		return nil, fmt.Errorf("podnet: subnet: %w", err)
	}
	for _, d := range []string{cfg.netnsDir(), cfg.ipamDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("podnet: %w", err)
		}
	}
	for _, dir := range cfg.PluginDirs {
		if _, err := os.Stat(filepath.Join(dir, "bridge")); err != nil {
			return nil, fmt.Errorf("podnet: CNI bridge plugin not in %s (install containernetworking-plugins): %w", dir, err)
		}
	}
	n := &Network{cfg: cfg}
	for _, c := range []struct {
		cni   *gocni.CNI
		ports bool
	}{{&n.cni, false}, {&n.cniPorts, true}} {
		conf, err := cfg.confList(c.ports)
		if err != nil {
			return nil, err
		}
		cni, err := gocni.New(
			gocni.WithPluginDir(cfg.PluginDirs),
			gocni.WithInterfacePrefix("eth"),
			gocni.WithMinNetworkCount(1),
		)
		if err != nil {
			return nil, fmt.Errorf("podnet: cni: %w", err)
		}
		if err := cni.Load(gocni.WithConfListBytes(conf)); err != nil {
			return nil, fmt.Errorf("podnet: load cni config: %w", err)
		}
		*c.cni = cni
	}
	return n, nil
}

// plugins returns the CNI configuration for a pod with the given host
// ports: portmap runs only for pods that have some (its ADD does nothing
// without, and its DEL runs iptables whatever the pod had).
func (n *Network) plugins(ports []runtimeapi.PortMapping) gocni.CNI {
	if len(ports) > 0 {
		return n.cniPorts
	}
	return n.cni
}

// Config returns the configuration in use, defaults filled in.
func (n *Network) Config() Config { return n.cfg }

func (c Config) netnsDir() string { return c.NetNSDir }
func (c Config) ipamDir() string  { return filepath.Join(c.StateDir, "ipam") }

func (c Config) confList(portmap bool) ([]byte, error) {
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      c.Bridge,
		"isGateway":   true,
		"ipMasq":      false,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": c.Subnet}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": c.ipamDir(),
		},
	}
	if c.MTU > 0 {
		bridge["mtu"] = c.MTU
	}
	plugins := []any{bridge}
	if portmap {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}})
	}
	b, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0",
		"name":       c.NetworkName,
		"plugins":    plugins,
	})
	if err != nil {
		return nil, fmt.Errorf("podnet: cni config: %w", err)
	}
	return b, nil
}

// Gateway returns the bridge's address, the pods' default gateway.
func (n *Network) Gateway() string {
	p := netip.MustParsePrefix(n.cfg.Subnet) // checked in New
	return p.Masked().Addr().Next().String()
}

// Attach creates a pinned network namespace for the pod id and attaches it to
// the pod network with the given host ports. On error nothing is left behind.
func (n *Network) Attach(ctx context.Context, id string, ports []runtimeapi.PortMapping) (Attachment, error) {
	ns, err := netns.NewNetNS(n.cfg.netnsDir())
	if err != nil {
		return Attachment{}, fmt.Errorf("podnet: new netns: %w", err)
	}
	// The loopback interface is brought up here rather than by the CNI
	// loopback plugin: one process start less per pod.
	if err := Do(ns.GetPath(), loopbackUp); err != nil {
		return Attachment{}, errors.Join(fmt.Errorf("podnet: %w", err), ns.Remove())
	}
	unlock := n.lock()
	res, err := n.plugins(ports).Setup(ctx, id, ns.GetPath(), n.nsOpts(ports)...)
	unlock()
	if err != nil {
		derr := n.remove(ctx, id, ns.GetPath(), ports)
		rerr := ns.Remove()
		return Attachment{}, errors.Join(fmt.Errorf("podnet: cni add %s: %w", id, err), derr, rerr)
	}
	var ip string
	if cfg, ok := res.Interfaces["eth0"]; ok {
		for _, c := range cfg.IPConfigs {
			if c.IP.To4() != nil || ip == "" {
				ip = c.IP.String()
			}
		}
	}
	if ip == "" {
		derr := n.remove(ctx, id, ns.GetPath(), ports)
		rerr := ns.Remove()
		return Attachment{}, errors.Join(fmt.Errorf("podnet: cni add %s: no IP on eth0", id), derr, rerr)
	}
	return Attachment{NetNSPath: ns.GetPath(), IP: ip}, nil
}

func (n *Network) nsOpts(ports []runtimeapi.PortMapping) []gocni.NamespaceOpts {
	if len(ports) == 0 {
		return nil
	}
	pm := make([]gocni.PortMapping, 0, len(ports))
	for _, p := range ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		pm = append(pm, gocni.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
	}
	return []gocni.NamespaceOpts{gocni.WithCapabilityPortMap(pm)}
}

// Detach releases the pod's IP and host ports and removes its network
// namespace. It is idempotent: detaching what is already gone succeeds.
func (n *Network) Detach(ctx context.Context, id, netnsPath string, ports []runtimeapi.PortMapping) error {
	path := netnsPath
	if path != "" {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			path = "" // CNI DEL without a namespace still releases the IP
		}
	}
	if err := n.remove(ctx, id, path, ports); err != nil {
		return fmt.Errorf("podnet: cni del %s: %w", id, err)
	}
	if path != "" {
		if err := netns.LoadNetNS(path).Remove(); err != nil {
			return fmt.Errorf("podnet: remove netns %s: %w", path, err)
		}
	}
	return nil
}

func (n *Network) remove(ctx context.Context, id, path string, ports []runtimeapi.PortMapping) error {
	defer n.lock()()
	return n.plugins(ports).Remove(ctx, id, path, n.nsOpts(ports)...)
}

// loopbackUp sets the up flag of the loopback interface of the calling
// thread's network namespace, as the CNI loopback plugin does.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	defer unix.Close(fd) // a socket only used for ioctls: nothing to lose
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: set flags: %w", err)
	}
	return nil
}

// Dial connects to addr (e.g. "127.0.0.1:8080") from inside the network
// namespace at netnsPath: this is how port-forward reaches a pod port.
func Dial(ctx context.Context, netnsPath, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := netns.LoadNetNS(netnsPath).Do(func(cnins.NetNS) error {
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("podnet: dial %s in %s: %w", addr, netnsPath, err)
	}
	return conn, nil
}

// Do runs f on an OS thread inside the network namespace at netnsPath.
func Do(netnsPath string, f func() error) error {
	return netns.LoadNetNS(netnsPath).Do(func(cnins.NetNS) error { return f() })
}

// Teardown removes what the network made on the machine, for a node taken
// down for good (logplane down), once its pods are detached (Detach): the
// network namespaces still pinned in NetNSDir (unmounted and removed; their
// interfaces go with them), host-local's allocations, libcni's cached
// results of the network's attachments (in /var/lib/cni/results, those that
// name this network's allocation directory), the bridge (its address and
// the route to the pod range go with it), and the portmap
// plugin's top-level iptables chains if no rule is left in them (every CNI
// user of the machine shares them, so they stay while another has host
// ports). Pods' own rules went with their Detach. Tearing down what is
// already gone succeeds.
func (n *Network) Teardown(ctx context.Context) error {
	var errs []error
	ents, err := os.ReadDir(n.cfg.netnsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("podnet: %w", err))
	}
	for _, e := range ents {
		if err := netns.LoadNetNS(filepath.Join(n.cfg.netnsDir(), e.Name())).Remove(); err != nil {
			errs = append(errs, fmt.Errorf("podnet: remove netns %s: %w", e.Name(), err))
		}
	}
	if err := os.RemoveAll(n.cfg.ipamDir()); err != nil {
		errs = append(errs, fmt.Errorf("podnet: remove IP allocations: %w", err))
	}
	errs = append(errs, n.removeCachedResults())
	if _, err := net.InterfaceByName(n.cfg.Bridge); err == nil {
		if out, err := exec.CommandContext(ctx, "ip", "link", "del", n.cfg.Bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("podnet: delete bridge %s: %w: %s", n.cfg.Bridge, err, bytes.TrimSpace(out)))
		}
	}
	errs = append(errs, removeEmptyHostportChains(ctx))
	return errors.Join(errs...)
}

// cniCacheDir is where libcni caches each attachment's result and
// configuration (go-cni does not let it be changed); a DEL removes the entry.
const cniCacheDir = "/var/lib/cni/results"

// removeCachedResults removes the cached results of this network's
// attachments whose DEL never ran: files named <network>-<id>-<interface>
// whose namespace is in NetNSDir or whose configuration names this
// network's allocation directory (other nodes on the machine may use the
// same network name).
func (n *Network) removeCachedResults() error {
	paths, err := filepath.Glob(filepath.Join(cniCacheDir, n.cfg.NetworkName+"-*"))
	if err != nil {
		return fmt.Errorf("podnet: cached results: %w", err)
	}
	var errs []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("podnet: cached result: %w", err))
			}
			continue
		}
		var cached struct {
			Config []byte `json:"config"` // the network configuration given to ADD
			NetNS  string `json:"netns"`
		}
		if json.Unmarshal(b, &cached) != nil {
			continue // not libcni's cache format: not ours to judge
		}
		if !strings.HasPrefix(cached.NetNS, n.cfg.netnsDir()+"/") && !bytes.Contains(cached.Config, []byte(n.cfg.ipamDir())) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("podnet: remove cached result: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeEmptyHostportChains removes the portmap plugin's top-level nat
// chains and the jumps to them if no rule is left in CNI-HOSTPORT-DNAT.
func removeEmptyHostportChains(ctx context.Context) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil // no iptables: portmap could not have made anything either
	}
	out, err := exec.CommandContext(ctx, "iptables", "-w", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT").Output()
	if err != nil || strings.Count(string(out), "\n") > 1 {
		return nil // no such chain, or another pod's host ports are in it
	}
	var errs []error
	for _, args := range [][]string{
		{"-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
		{"-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
		{"-D", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"},
		{"-F", "CNI-HOSTPORT-DNAT"}, {"-X", "CNI-HOSTPORT-DNAT"},
		{"-F", "CNI-HOSTPORT-MASQ"}, {"-X", "CNI-HOSTPORT-MASQ"},
		{"-F", "CNI-HOSTPORT-SETMARK"}, {"-X", "CNI-HOSTPORT-SETMARK"},
	} {
		cmd := exec.CommandContext(ctx, "iptables", append([]string{"-w", "-t", "nat"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil && !missingRule(out) {
			errs = append(errs, fmt.Errorf("podnet: iptables %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// missingRule tells whether iptables failed because the rule or chain is not
// there (a plugin version that does not make it): nothing to remove.
func missingRule(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "does a matching rule exist") || strings.Contains(s, "No chain/target/match by that name") ||
		strings.Contains(s, "Bad rule") || strings.Contains(s, "doesn't exist")
}
