package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/dataplane/clusterdns"
	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/ingressproxy"
	"github.com/logplane/logplane/dataplane/localvolume"
	"github.com/logplane/logplane/dataplane/netpolicy"
	"github.com/logplane/logplane/dataplane/podnet"
	"github.com/logplane/logplane/dataplane/serviceproxy"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/nodeagent"
	"github.com/logplane/logplane/nodeagent/podworker"
	"github.com/logplane/logplane/registry"
)

type agentFlags struct {
	nodeName     string
	nodeIP       string
	podCIDR      string
	podCIDRSet   bool // --pod-cidr given (with --runtime sim, the fleet's ranges start there)
	runtime      string
	nodes        int
	nodePrefix   string
	containerd   string
	imageDir     string
	simPodEvents bool
	bridge       string
	cniDirs      []string
	streamListen string
	pkiDir       string
	apiServer    string
	syncFreq     time.Duration
	seccompDef   bool
	resolvConf   string
	unsafeSysctl []string
	netPolicy    bool
	join         string
	token        string
	caCertHash   string
	// serving is the streaming endpoint's TLS when the node has its own identity (it joined);
	// nil: issued here by the cluster CA (`logplane up`, simulated nodes beside the control plane).
	serving      *tls.Config
	serviceProxy bool
	serviceCIDR  string
	cleanup      bool
	clusterDNS   bool
	domain       string
	ingressHTTP  int
	ingressHTTPS int
}

func (f *agentFlags) register(fs *pflag.FlagSet) {
	host, err := os.Hostname()
	if err != nil {
		host = "node" // only a default for the node's name
	}
	fs.StringVar(&f.nodeName, "node-name", host, "name of this node")
	fs.StringVar(&f.nodeIP, "node-ip", "", "the node's InternalIP and the pods' hostIP (default: the first non-loopback IPv4 address)")
	fs.StringVar(&f.podCIDR, "pod-cidr", podnet.DefaultSubnet, "this node's pod range, recorded in its Node's spec.podCIDR; the agent refuses to start if another node uses it. With --runtime sim: the first simulated node's range (default "+nodeagent.DefaultSimSubnet+"), each next node taking the next range of that size")
	fs.StringVar(&f.runtime, "runtime", "containerd", "container runtime: containerd, or sim (simulated nodes, for scale tests)")
	fs.IntVar(&f.nodes, "nodes", 1, "with --runtime sim: how many simulated nodes to run (named <node-prefix>-N)")
	fs.StringVar(&f.nodePrefix, "node-prefix", "sim", "with --runtime sim: prefix of the simulated nodes' names")
	fs.BoolVar(&f.simPodEvents, "sim-pod-events", false, "with --runtime sim: record the pods' Normal Events (Pulled, Created, Started) too; by default simulated nodes record only Warnings, as kwok's")
	fs.StringVar(&f.imageDir, "image-dir", "", "directory of OCI image archives (*.tar) to load into containerd at start, for machines that reach no registry (default <data-dir>/images)")
	fs.StringVar(&f.containerd, "containerd", "auto", "containerd to use: auto (the system socket if there is one, else own), own (start one under --data-dir), or a socket path")
	fs.StringVar(&f.bridge, "bridge", podnet.DefaultBridge, "Linux bridge of the pod network")
	fs.StringSliceVar(&f.cniDirs, "cni-bin-dir", []string{podnet.DefaultPluginDir}, "directories of the CNI plugins")
	fs.StringVar(&f.streamListen, "stream-listen", "", "address of the streaming endpoint (logs, exec, port-forward) the API server proxies to (default <node-ip>:10250; with --runtime sim 127.0.0.1:10250)")
	fs.DurationVar(&f.syncFreq, "sync-frequency", podworker.DefaultSyncFrequency, "the kubelet's --sync-frequency: how often running pods are synced again, which refreshes their configMap and secret volumes")
	fs.BoolVar(&f.seccompDef, "seccomp-default", false, "the kubelet's --seccomp-default: containers that set no seccompProfile get the runtime's default profile (RuntimeDefault) instead of none (Unconfined)")
	fs.StringVar(&f.resolvConf, "resolv-conf", "/etc/resolv.conf", "the kubelet's --resolv-conf: the resolver configuration pods of dnsPolicy Default get (and ClusterFirst ones while there is no cluster DNS); \"\" for none (nameserver 127.0.0.1)")
	fs.StringSliceVar(&f.unsafeSysctl, "allowed-unsafe-sysctls", nil, "the kubelet's --allowed-unsafe-sysctls: namespaced sysctls (or prefixes ending in *) pods may set beside the safe ones, e.g. 'kernel.msg*,net.core.somaxconn'")
	fs.StringVar(&f.apiServer, "api-server", "", "URL of the API server the agent asks for its pods' service account tokens (TokenRequest), as the node (default: the server of <data-dir>/kubeconfig, else "+defaultAPIServer+")")
	fs.BoolVar(&f.netPolicy, "network-policy", false, "enforce NetworkPolicy on this machine's pods with nftables (table ip "+netpolicy.DefaultTable+"; containerd runtime only; needs nft and br_netfilter)")
	fs.StringVar(&f.pkiDir, "pki-dir", "", "on a control-plane machine: the API server's pki directory (default <data-dir>/pki), beside which the agent finds what it needs to join by itself")
	fs.StringVar(&f.join, "join", "", "join the cluster through the API server at this URL (https://host:6443), with --token and --ca-cert-hash; the node gets a credential and a certificate of its own")
	fs.StringVar(&f.token, "token", "", "with --join: the bootstrap token (`logplane token create` on a control-plane machine)")
	fs.StringVar(&f.caCertHash, "ca-cert-hash", "", "with --join: the hash of the cluster CA that the API server must present (sha256:<hex>, as `logplane token create --print-join-command` prints)")
	fs.BoolVar(&f.serviceProxy, "service-proxy", true, "run the service proxy (the kube-proxy role, nftables): Services' cluster IPs, NodePorts, external IPs and load balancer addresses on this machine, and the whole --service-cidr routed to the machine itself from the start, so that no cluster IP ever leaves it; false: none (logplane down, or --cleanup, removes what an earlier run made)")
	fs.StringVar(&f.serviceCIDR, "service-cidr", registry.ServiceCIDR.String(), "the Services' cluster IP range the service proxy routes to the machine itself")
	fs.BoolVar(&f.clusterDNS, "cluster-dns-server", true, "serve cluster DNS on this node (the pod bridge's address, port 53), reached by pods through the kube-dns Service ("+apiserver.KubeDNSAddr().String()+"), which their resolv.conf names; needs --service-proxy")
	fs.StringVar(&f.domain, "cluster-domain", "cluster.local", "the cluster's DNS domain (the kubelet's --cluster-domain)")
	fs.IntVar(&f.ingressHTTP, "ingress-http-port", 80, "the node's port on which the Ingress proxy serves HTTP (the Ingresses of the IngressClass logplane, on every address of the machine); 0: none")
	fs.IntVar(&f.ingressHTTPS, "ingress-https-port", 443, "the node's port on which the Ingress proxy serves HTTPS (certificates from the Ingresses' TLS Secrets, by SNI); 0: none")
	fs.BoolVar(&f.cleanup, "cleanup", false, "remove the service proxy's nftables table ("+serviceproxy.DefaultTable+"), its device ("+serviceproxy.DefaultServiceDevice+") and the routes through it, then exit (kube-proxy's --cleanup)")
}

// pkiDirOr is --pki-dir, else the data directory's pki/.
func (f *agentFlags) pkiDirOr(dataDir string) string {
	if f.pkiDir != "" {
		return f.pkiDir
	}
	return filepath.Join(dataDir, "pki")
}

// agentIP is the node's address: --node-ip, or 127.0.0.1 for simulated nodes, or this
// machine's first IPv4 address.
func (f *agentFlags) ip() string {
	if f.nodeIP != "" {
		return f.nodeIP
	}
	if f.runtime == "sim" {
		return "127.0.0.1"
	}
	return firstIPv4()
}

func agentCommand() *cobra.Command {
	var lf logFlags
	var af agentFlags
	var pf processFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent of this machine (or simulated nodes)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if af.cleanup {
				if err := serviceproxy.Cleanup(cmd.Context(), serviceproxy.Config{}); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "logplane agent: removed the service proxy's table, device and routes")
				return nil
			}
			af.podCIDRSet = cmd.Flags().Changed("pod-cidr")
			if af.runtime == "sim" {
				// Simulated nodes are a scale-test tool beside the control plane: one
				// credential for all of them, which the API server writes.
				lf.role = eventlog.RoleSimulatedNodes
			} else {
				serving, err := nodeIdentity(cmd.Context(), &af, &lf, cmd.Flags().Changed("nats"), af.ip())
				if err != nil {
					return err
				}
				af.serving = serving
			}
			if err := routeServiceRange(&af); err != nil {
				return err
			}
			p, err := openProcess(cmd.Context(), &lf, &pf)
			if err != nil {
				return err
			}
			p.g.Go(func() error { return runAgents(p, &af, &lf) })
			return p.wait()
		},
	}
	lf.register(cmd.Flags(), false, "")
	af.register(cmd.Flags())
	pf.register(cmd.Flags(), false)
	return cmd
}

// runAgents runs this machine's node agent on containerd, or simulated nodes, with their
// streaming endpoint, until ctx ends. store and reg may be shared with other roles in the process.
func runAgents(p *process, af *agentFlags, lf *logFlags) error {
	ctx, store, reg := p.ctx, p.store, p.reg
	ip := af.ip()
	listen := af.streamListen
	if listen == "" {
		listen = net.JoinHostPort(ip, "10250")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("streaming endpoint: %w", err)
	}
	defer ln.Close()
	_, portStr, _ := net.SplitHostPort(ln.Addr().String()) // a listener's address always splits
	port, _ := strconv.Atoi(portStr)                       // and its port is a number

	// A node that joined serves, and asks for its pods' tokens, with the certificate it got;
	// one beside the control plane with certificates of the CA.
	tlsConfig, creds := af.serving, identityCreds(identityDir(lf.dataDir))
	if tlsConfig == nil {
		var ca *pki.CA
		if tlsConfig, ca, err = caServingTLS(af, lf, ip); err != nil {
			return err
		}
		creds = caClientCreds(ca)
	}

	tmpl := nodeagent.Config{Registry: reg, Store: store, StreamPort: int32(port), Metrics: p.metrics, Logger: slog.Default(), SyncFrequency: af.syncFreq, SeccompDefault: af.seccompDef,
		ResolvConf: af.resolvConf, AllowedUnsafeSysctls: af.unsafeSysctl, Tokens: nodeTokens(apiServerURL(af.apiServer, af.join, lf.dataDir, filepath.Dir(af.pkiDirOr(lf.dataDir))), creds)}
	if p.log.IsNodeFeed() {
		// Its feed holds its own pods only: the pod-range check asks the control plane.
		tmpl.PodAddresses = func(ctx context.Context, node string, r netip.Prefix) ([]string, error) {
			return p.log.PodAddresses(ctx, eventlog.PodAddressesQuery{Node: node, Range: r.String()})
		}
	}
	var agents []*nodeagent.Agent
	var run func(context.Context) error
	switch af.runtime {
	case "sim":
		simSubnet := "" // the fleet's default
		if af.podCIDRSet {
			simSubnet = af.podCIDR
		}
		fleet, err := nodeagent.NewFleet(nodeagent.FleetConfig{
			Template: tmpl, Nodes: af.nodes, Prefix: af.nodePrefix, NodeIP: ip, Subnet: simSubnet,
			VolumeDir: filepath.Join(lf.dataDir, "sim", "volumes"), PodEvents: af.simPodEvents,
		})
		if err != nil {
			return err
		}
		agents, run = fleet.Agents(), fleet.Run
		slog.Info("logplane: running simulated nodes", "nodes", af.nodes, "prefix", af.nodePrefix, "stream", ln.Addr().String())
	case "containerd":
		a, cleanup, err := containerdAgent(ctx, tmpl, af, lf, ip)
		if err != nil {
			return err
		}
		defer cleanup()
		agents, run = []*nodeagent.Agent{a}, a.Run
		if af.netPolicy {
			enf, err := netpolicy.New(netpolicy.Config{OnError: func(err error) { slog.Warn("logplane: network policy", "err", err) }})
			if err != nil {
				return err
			}
			run = func(ctx context.Context) error {
				g, ctx := errgroup.WithContext(ctx)
				g.Go(func() error { return a.Run(ctx) })
				g.Go(func() error { return nodeagent.FollowNetworkPolicies(ctx, store, enf, slog.Default()) })
				return g.Wait()
			}
		}
		slog.Info("logplane: running the node agent", "node", af.nodeName, "ip", ip, "stream", ln.Addr().String())
	default:
		return fmt.Errorf("--runtime %q: want containerd or sim", af.runtime)
	}
	g, ctx := errgroup.WithContext(ctx)
	srv := nodeagent.NewServer(slog.Default(), agents...)
	g.Go(func() error { return srv.Serve(ctx, ln, tlsConfig) })
	g.Go(func() error { return run(ctx) })
	return g.Wait()
}

// caServingTLS issues the streaming endpoint's certificate with the cluster CA, for a process
// on a control-plane machine (`logplane up`, simulated nodes).
func caServingTLS(af *agentFlags, lf *logFlags, ip string) (*tls.Config, *pki.CA, error) {
	pkiDir := af.pkiDir
	if pkiDir == "" {
		pkiDir = filepath.Join(lf.dataDir, "pki")
	}
	// The CA must be the API server's: never make a new one here, which the API server would not trust.
	for _, f := range []string{"ca.crt", "ca.key"} {
		if _, err := os.Stat(filepath.Join(pkiDir, f)); err != nil {
			return nil, nil, fmt.Errorf("no cluster CA in %s (%v): run the agent with the API server's --data-dir, or join with --join", pkiDir, err)
		}
	}
	mat, err := pki.Load(pkiDir)
	if err != nil {
		return nil, nil, err
	}
	for _, what := range mat.Remade {
		slog.Warn("logplane: a damaged TLS file was made again", "what", what)
	}
	certPEM, keyPEM, err := mat.CA.Issue("system:node:"+af.nodeName, []string{"system:nodes"}, []string{ip, "127.0.0.1", af.nodeName}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, nil, err
	}
	t, err := nodeagent.ServerTLS(mat.CA.CertPEM, certPEM, keyPEM)
	return t, mat.CA, err
}

// containerdAgent makes the agent of this machine on containerd (the system daemon, or one of
// its own under the data directory).
func containerdAgent(ctx context.Context, tmpl nodeagent.Config, af *agentFlags, lf *logFlags, ip string) (*nodeagent.Agent, func(), error) {
	dir := filepath.Join(lf.dataDir, "agent")
	// One agent per data directory: two would share sandboxes, IPs and containers, and each
	// would remove the other's pods as orphans.
	lock, err := lockMachine(lf.dataDir)
	if err != nil {
		return nil, nil, err
	}
	cleanup := lock.release
	addr := af.containerd
	if addr == "auto" {
		addr = "own"
		if _, err := os.Stat(containerd.DefaultAddress); err == nil {
			addr = containerd.DefaultAddress
		}
	}
	own := filepath.Join(lf.dataDir, "containerd")
	ncfg := podnet.Config{StateDir: filepath.Join(dir, "net"), PluginDirs: af.cniDirs, Bridge: af.bridge, Subnet: af.podCIDR}
	rcfg := containerd.Config{Address: addr, DataDir: filepath.Join(dir, "runtime")}
	if addr == "own" || addr == filepath.Join(own, "containerd.sock") {
		// Our own daemon: what every container needs and no restart of the machine keeps goes
		// on its state tmpfs.
		state := containerd.StateDir(own)
		ncfg.NetNSDir = filepath.Join(state, "netns")
		rcfg.RuncRoot, rcfg.FIFODir = filepath.Join(state, "runc"), filepath.Join(state, "fifo")
	}
	// What `logplane down` will have to remove, recorded before any of it exists.
	rec := nodeRecord{Containerd: addr, Namespace: containerd.DefaultNamespace, Bridges: []string{af.bridge}, PodCIDR: af.podCIDR,
		CNIBinDirs: af.cniDirs, NetNSDir: ncfg.NetNSDir, RuncRoot: rcfg.RuncRoot, FIFODir: rcfg.FIFODir, NetworkPolicy: af.netPolicy, ServiceProxy: af.serviceProxy}
	if rec.NetNSDir == "" {
		rec.NetNSDir = filepath.Join(ncfg.StateDir, "netns") // podnet's default
	}
	if err := writeNodeRecord(lf.dataDir, rec); err != nil {
		cleanup()
		return nil, nil, err
	}
	if addr == "own" {
		// A daemon still running under the data directory was started by a process that did
		// not take it down with it (a logplane from before daemons died with their parent):
		// stop it, and start ours, which dies with this process. The containers live on in
		// their shims; the new daemon finds them.
		if pid, err := containerd.StopLeftover(ctx, own); err != nil {
			cleanup()
			return nil, nil, err
		} else if pid != 0 {
			slog.Info("logplane: stopped the containerd an earlier process left running under the data directory", "pid", pid)
		}
		d, err := containerd.StartDaemon(ctx, containerd.DaemonConfig{Dir: own})
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		slog.Info("logplane: started containerd", "socket", d.Address, "pid", d.PID)
		rcfg.Address = d.Address
		// Containers keep running in their shims when the daemon stops; the next daemon finds them.
		cleanup = func() {
			if err := d.Stop(context.WithoutCancel(ctx)); err != nil {
				slog.Warn("logplane: stopping containerd", "err", err)
			}
			lock.release()
		}
	}
	network, err := podnet.New(ncfg)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	rcfg.Network = network
	rt, err := containerd.New(ctx, rcfg)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	ver, err := rt.Client().Version(ctx)
	if err != nil {
		rt.Close()
		cleanup()
		return nil, nil, fmt.Errorf("containerd version: %w", err)
	}
	imageDir := af.imageDir
	if imageDir == "" {
		imageDir = filepath.Join(lf.dataDir, "images")
	}
	if err := loadImageDir(ctx, rt, imageDir); err != nil {
		rt.Close()
		cleanup()
		return nil, nil, err
	}
	c := tmpl
	c.NodeName, c.NodeIP, c.PodCIDR = af.nodeName, ip, af.podCIDR
	c.Runtime, c.RuntimeVersion = rt, "containerd://"+ver.Version
	c.VolumeDir = filepath.Join(dir, "volumes")
	c.MachinePressure = true
	// The local provisioner's volumes (docs/storage.md): a directory per claim, sized by project
	// quota or a loop-mounted ext4 file where the machine allows it.
	if c.LocalVolumes, err = localvolume.New(ctx, localvolume.Config{Dir: filepath.Join(dir, "localvolumes"),
		Report: func(err error) { slog.Warn("logplane: a local volume cannot be used", "err", err) }}); err != nil {
		rt.Close()
		cleanup()
		return nil, nil, err
	}
	vols, prevCleanup := c.LocalVolumes, cleanup
	cleanup = func() {
		if err := vols.Close(); err != nil {
			slog.Warn("logplane: closing the local volumes", "err", err)
		}
		prevCleanup()
	}
	if w := c.LocalVolumes.Warning(); w != "" {
		slog.Warn("logplane: local volumes", "backend", c.LocalVolumes.Backend(), "warning", w)
	}
	if af.serviceProxy {
		if c.Services, err = serviceProxy(af); err != nil {
			rt.Close()
			cleanup()
			return nil, nil, err
		}
		if af.clusterDNS {
			srv, stop, err := serveClusterDNS(ctx, c, af, network.Gateway())
			if err != nil {
				rt.Close()
				cleanup()
				return nil, nil, err
			}
			c.DNS, c.DNSServers, c.ClusterDomain = srv, []string{apiserver.KubeDNSAddr().String()}, af.domain
			prev := cleanup
			cleanup = func() { stop(); prev() }
		}
	}
	var agent atomic.Pointer[nodeagent.Agent]
	if c.Ingress, err = ingressProxy(af, &agent); err != nil {
		rt.Close()
		cleanup()
		return nil, nil, err
	}
	a, err := nodeagent.New(c)
	if err != nil {
		rt.Close()
		cleanup()
		return nil, nil, err
	}
	agent.Store(a)
	return a, func() {
		if err := rt.Close(); err != nil {
			slog.Warn("logplane: closing the runtime", "err", err)
		}
		cleanup()
	}, nil
}

// firstIPv4 is the first IPv4 address of the interface of the default route, else of any
// non-loopback interface that is up, else 127.0.0.1.
func firstIPv4() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	def := defaultRouteInterface()
	pick := func(want func(net.Interface) bool) string {
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || !want(ifc) {
				continue
			}
			addrs, err := ifc.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
					return n.IP.String()
				}
			}
		}
		return ""
	}
	if ip := pick(func(i net.Interface) bool { return i.Name == def }); ip != "" {
		return ip
	}
	if ip := pick(func(net.Interface) bool { return true }); ip != "" {
		return ip
	}
	return "127.0.0.1"
}

// defaultRouteInterface reads the interface of the IPv4 default route from /proc/net/route.
func defaultRouteInterface() string {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && fields[1] == "00000000" {
			return fields[0]
		}
	}
	return ""
}

// ingressProxy makes the Ingress proxy and opens its listeners on every address of the
// machine (nil when both ports are 0); the agent feeds and serves it, and records its
// Warnings as Events on the Ingresses through agent (set once the agent exists).
func ingressProxy(af *agentFlags, agent *atomic.Pointer[nodeagent.Agent]) (*nodeagent.Ingress, error) {
	if af.ingressHTTP == 0 && af.ingressHTTPS == 0 {
		return nil, nil
	}
	p, err := ingressproxy.New(ingressproxy.Config{
		OnWarning: func(w ingressproxy.Warning) {
			if a := agent.Load(); a != nil {
				a.IngressWarning(w)
			}
		},
		// Failed handshakes and unreachable endpoints: the requests' answers say it already.
		ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	})
	if err != nil {
		return nil, fmt.Errorf("ingress proxy: %w", err)
	}
	in := &nodeagent.Ingress{Proxy: p}
	for _, l := range []struct {
		port int
		dst  *net.Listener
		flag string
	}{{af.ingressHTTP, &in.HTTP, "--ingress-http-port"}, {af.ingressHTTPS, &in.HTTPS, "--ingress-https-port"}} {
		if l.port == 0 {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(l.port)))
		if err != nil {
			if in.HTTP != nil {
				in.HTTP.Close()
			}
			return nil, fmt.Errorf("ingress proxy on port %d (%s changes it, 0 runs without): %w", l.port, l.flag, err)
		}
		*l.dst = ln
	}
	return in, nil
}

// routeServiceRange routes --service-cidr to the machine itself (serviceproxy.RouteServiceRanges)
// before anything can create a Service, so that no cluster IP ever leaves the machine: `up` calls
// it before it opens the log and serves the API, `agent` before it follows the log; the service
// proxy keeps the route from then on. Nothing without the service proxy or for simulated nodes.
func routeServiceRange(af *agentFlags) error {
	if !af.serviceProxy || af.runtime != "containerd" {
		return nil
	}
	cidr, err := netip.ParsePrefix(af.serviceCIDR)
	if err != nil {
		return fmt.Errorf("--service-cidr: %w", err)
	}
	if err := serviceproxy.RouteServiceRanges(serviceproxy.Config{ServiceCIDRs: []netip.Prefix{cidr}}); err != nil {
		return fmt.Errorf("routing the service range to this machine (--service-proxy=false runs without): %w", err)
	}
	slog.Info("logplane: the service range is routed to this machine", "range", cidr.String(), "device", serviceproxy.DefaultServiceDevice)
	return nil
}

// serviceProxy makes this machine's service proxy; the agent runs it.
func serviceProxy(af *agentFlags) (*serviceproxy.Proxier, error) {
	svcCIDR, err := netip.ParsePrefix(af.serviceCIDR)
	if err != nil {
		return nil, fmt.Errorf("--service-cidr: %w", err)
	}
	podCIDR, err := netip.ParsePrefix(af.podCIDR)
	if err != nil {
		return nil, fmt.Errorf("--pod-cidr: %w", err)
	}
	p, err := serviceproxy.New(serviceproxy.Config{NodeName: af.nodeName, ServiceCIDRs: []netip.Prefix{svcCIDR},
		ClusterCIDRs: []netip.Prefix{podCIDR},
		OnError:      func(err error) { slog.Warn("logplane: service proxy", "err", err) }})
	if err != nil {
		return nil, fmt.Errorf("the service proxy (--service-proxy=false runs without): %w", err)
	}
	return p, nil
}

// serveClusterDNS serves cluster DNS on the pod bridge's address, port 53 (UDP and TCP; bound
// with IP_FREEBIND, since the bridge comes with the first pod), and writes the EndpointSlice
// that sends this node's queries to the kube-dns Service there. The agent feeds the server.
func serveClusterDNS(ctx context.Context, c nodeagent.Config, af *agentFlags, gateway string) (*clusterdns.Server, func(), error) {
	gw, err := netip.ParseAddr(gateway)
	if err != nil {
		return nil, nil, err
	}
	srv, err := clusterdns.New(clusterdns.Config{Domain: af.domain, ResolvConf: af.resolvConf,
		Self: []netip.Addr{apiserver.KubeDNSAddr(), gw}})
	if err != nil {
		return nil, nil, fmt.Errorf("cluster DNS: %w", err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, unix.IP_FREEBIND, 1) }); err != nil {
			return err
		}
		return serr
	}}
	addr := net.JoinHostPort(gateway, "53")
	pc, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster DNS on %s/udp (--cluster-dns-server=false runs without): %w", addr, err)
	}
	ln, err := lc.Listen(ctx, "tcp4", addr)
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("cluster DNS on %s/tcp: %w", addr, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { _ = srv.ServePacket(sctx, pc); done <- struct{}{} }()
	go func() { _ = srv.ServeStream(sctx, ln); done <- struct{}{} }()
	slog.Info("logplane: serving cluster DNS", "addr", addr, "service", apiserver.KubeDNSAddr())

	// This node's endpoint of kube-dns: written as the node, kept apart from the reconcilers'
	// slices by its managed-by label.
	kind, ok := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"})
	if !ok {
		cancel()
		return nil, nil, errors.New("cluster DNS: the catalog has no endpointslices")
	}
	udp, tcp, port := corev1.ProtocolUDP, corev1.ProtocolTCP, int32(53)
	dnsName, tcpName := "dns", "dns-tcp"
	node := af.nodeName
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns-" + node, Namespace: metav1.NamespaceSystem, Labels: map[string]string{
			discoveryv1.LabelServiceName: "kube-dns", discoveryv1.LabelManagedBy: "logplane-agent"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{gateway}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}}},
		Ports: []discoveryv1.EndpointPort{{Name: &dnsName, Port: &port, Protocol: &udp}, {Name: &tcpName, Port: &port, Protocol: &tcp}},
	}
	req := registry.Request{Actor: registry.Node(node)}
	go func() {
		for sctx.Err() == nil {
			_, err := c.Registry.Create(sctx, kind, slice.DeepCopy(), req)
			if apierrors.IsAlreadyExists(err) {
				_, err = c.Registry.Update(sctx, kind, slice.DeepCopy(), req)
			}
			if err == nil {
				return
			}
			slog.Warn("logplane: writing the kube-dns endpoint of this node", "err", err)
			select {
			case <-sctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	return srv, func() {
		cancel()
		pc.Close()
		ln.Close()
		<-done
		<-done
	}, nil
}
