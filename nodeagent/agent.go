// Package nodeagent is logplane's kubelet: one Agent per node registers its
// Node, keeps a Lease in kube-node-lease renewed and the Node's conditions
// current, follows the pods bound to it in the shared projection of the log,
// turns them into calls on the pod worker (nodeagent/podworker), and writes
// what the pod worker observes back to the log as status-only updates and
// Kubernetes Events, with the node as actor and the triggering event as
// cause. It never writes a pod's spec. Graceful deletion ends with the agent
// removing the pod from the log once its containers are gone. A restarted
// agent rebuilds its desired state from the log and adopts the containers
// that kept running.
//
// Server serves the kubelet's streaming API (container logs, exec, attach,
// port-forward) over HTTPS for one or more agents, authenticated with client
// certificates of the cluster CA; the API server proxies pods/log, pods/exec,
// pods/attach and pods/portforward to it. Fleet runs many simulated nodes in
// one process on one shared projection.
//
// cmd/logplane wires it; nothing else should import it.
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/dataplane/localvolume"
	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/nodeagent/podworker"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// Defaults of Config.
const (
	DefaultLeaseDuration  = 40 * time.Second
	DefaultRenewInterval  = 10 * time.Second
	DefaultStatusInterval = time.Minute
	DefaultStatusWorkers  = 4
	DefaultMaxPods        = 110
	// KubeletVersion is what nodes report as their kubelet version: the
	// Kubernetes API version logplane serves.
	KubeletVersion = "v1.34.0-logplane"
	// forceDeleteGrace is how long a pod removed from the log without graceful deletion gets
	// between SIGTERM and SIGKILL (the kubelet's minimum grace period).
	forceDeleteGrace = 2 * time.Second
)

// Config configures an Agent. Fields without a default are required.
type Config struct {
	// NodeName is the name of this node's Node object.
	NodeName string
	// NodeIP is the node's InternalIP, the pods' hostIP, and where the API
	// server reaches the agent's streaming endpoint.
	NodeIP string
	// Hostname is the node's Hostname address. Default: NodeName.
	Hostname string
	// PodCIDR is the node's pod range, recorded in spec.podCIDR and
	// spec.podCIDRs on registration. Run refuses to start, with an error
	// wrapping ErrPodCIDRConflict, if another node still uses a range that
	// overlaps it or the node is registered with another (see
	// checkPodCIDRs). Empty: the node has none.
	PodCIDR string
	// Capacity is the node's capacity (cpu, memory, pods, ephemeral-storage).
	// Default: measured on this machine (MachineCapacity), pods 110.
	Capacity corev1.ResourceList
	// Labels are added to the Node's well-known labels (hostname, os, arch).
	Labels map[string]string
	// Runtime runs the pods (dataplane/containerd or dataplane/sim).
	Runtime podworker.StreamingRuntime
	// Prober runs probes. Default: the runtime if it is a Prober, else real probes.
	Prober podworker.Prober
	// RuntimeName prefixes container IDs ("containerd://..."). Default "containerd".
	RuntimeName string
	// RuntimeVersion is nodeInfo.containerRuntimeVersion, e.g. "containerd://1.6.20".
	RuntimeVersion string
	// VolumeDir holds the pods' volumes (see podworker.Config).
	VolumeDir string
	// Registry writes to the log; Store is the projection it reads, run by the caller.
	Registry *registry.Registry
	Store    *projections.Store
	// PodAddresses, if set, lists another node's pods with an address in a range, as
	// "namespace/name address", for the pod-range check: an agent that reads only its own
	// pods (a node's feed) asks the control plane. Nil: from Store.
	PodAddresses func(ctx context.Context, node string, r netip.Prefix) ([]string, error)
	// Recorder records the pods' Events. Default: one of the agent's own
	// (source kubelet on NodeName), run by the agent.
	Recorder *recorder.Recorder
	// QuietPods records only the pods' Warning Events (BackOff, Failed,
	// Unhealthy, ...), not the Normal ones (Pulling, Pulled, Created, Started,
	// Killing), as kwok's simulated nodes record none: for scale runs on the
	// simulated runtime, where those Events are most of what the log takes
	// per pod and tell nobody anything.
	QuietPods bool
	// StreamPort is the port of the streaming endpoint (Server) recorded in
	// status.daemonEndpoints.kubeletEndpoint; 0 if none.
	StreamPort int32
	// MachinePressure, when set, measures memory, disk (of VolumeDir) and PID
	// pressure on this machine for the Node's conditions; otherwise there is none.
	MachinePressure bool
	// LeaseDuration is the Lease's leaseDurationSeconds. Default 40s.
	LeaseDuration time.Duration
	// RenewInterval is how often the Lease is renewed and the node's
	// conditions are checked. Default 10s.
	RenewInterval time.Duration
	// StatusInterval is how often the Node's status is written when nothing
	// changed (its conditions' heartbeat). Default 1 minute.
	StatusInterval time.Duration
	// StatusWorkers write pod statuses concurrently. Default 4.
	StatusWorkers int
	// BackOff and MaxBackOff bound restart and image pull back-off (podworker's defaults).
	BackOff, MaxBackOff time.Duration
	// SyncFrequency is the kubelet's syncFrequency: how often running pods'
	// configMap and secret volumes are refreshed. Default 1 minute
	// (podworker.DefaultSyncFrequency).
	SyncFrequency time.Duration
	// SeccompDefault is the kubelet's --seccomp-default: containers that ask
	// for no seccomp profile get the runtime's default (RuntimeDefault).
	// Default off (Unconfined), as in Kubernetes.
	SeccompDefault bool
	// Services, when set, is fed every Service and EndpointSlice of the log and run from the
	// start of Run, before the node registers (dataplane/serviceproxy: its first sync routes
	// the Service range to the machine itself). Nil: no service proxy (simulated nodes).
	Services ServiceProxy
	// DNS, when set, is fed Services, EndpointSlices, Namespaces and Pods of the log from the
	// start of Run (dataplane/clusterdns); its maker serves it.
	DNS ClusterDNS
	// Ingress, when set, is the Ingress proxy the agent feeds from the log (IngressClasses,
	// Ingresses, Services, EndpointSlices, and the Secrets named by Ingresses) and serves
	// from the start of Run until it ends.
	Ingress *Ingress
	// DNSServers and ClusterDomain make the pods' resolv.conf.
	DNSServers    []string
	ClusterDomain string
	// ResolvConf is the node's resolv.conf (the kubelet's --resolv-conf,
	// see podworker.Config); AllowedUnsafeSysctls the kubelet's
	// --allowed-unsafe-sysctls.
	ResolvConf           string
	AllowedUnsafeSysctls []string
	// Tokens, when set, gives the TokenRequest client of a node, by name
	// (credentials of that node): the pods' projected service account tokens
	// are requested through it, bound to the pod, as the kubelet requests
	// them. Nil: pods with such volumes fail to mount them.
	Tokens func(nodeName string) podworker.Tokens
	// Metrics, when set, takes the node's metrics (the kubelet's names, see
	// podworker.Manager.RegisterMetrics), labelled node=NodeName so that
	// simulated nodes sharing a process stay apart.
	Metrics prometheus.Registerer
	// LocalVolumes, when set, is the node's local provisioner (dataplane/localvolume): the
	// volumes of claims of logplane.io/local classes that the scheduler selects this node for,
	// their growth, their deletion, and their kubelet_volume_stats_* metrics. Nil: none.
	LocalVolumes *localvolume.Manager
	Clock        clock.WithTicker
	Logger       *slog.Logger

	// podCIDRChecked is set by a Fleet, which checks its nodes' ranges at
	// once (one pass over the Nodes rather than one per node).
	podCIDRChecked bool
}

// Agent is the node agent of one node.
type Agent struct {
	cfg      Config
	reg      *registry.Registry
	store    *projections.Store
	rec      *recorder.Recorder
	ownRec   bool
	pods     *podworker.Manager
	statuses *statusWriter
	queue    workqueue.TypedRateLimitingInterface[eventlog.Key]
	log      *slog.Logger
	podGR    schema.GroupResource
	kinds    agentKinds

	mu    sync.Mutex
	known map[eventlog.Key]types.UID // pods given to the pod worker, by key

	volumes *localVolumes // nil without Config.LocalVolumes

	ready chan struct{}
	node  nodeState
	info  corev1.NodeSystemInfo
}

type agentKinds struct {
	pod, node, lease, configMap, secret *kinds.Kind
}

// New checks cfg and returns an Agent; Run runs it.
func New(cfg Config) (*Agent, error) {
	if cfg.NodeName == "" || cfg.NodeIP == "" {
		return nil, errors.New("nodeagent: NodeName and NodeIP are required")
	}
	if cfg.Runtime == nil || cfg.Registry == nil || cfg.Store == nil {
		return nil, errors.New("nodeagent: Runtime, Registry and Store are required")
	}
	if cfg.PodCIDR != "" {
		p, err := netip.ParsePrefix(cfg.PodCIDR)
		if err != nil {
			return nil, fmt.Errorf("nodeagent: PodCIDR: %w", err)
		}
		cfg.PodCIDR = p.Masked().String()
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.NodeName
	}
	if cfg.RuntimeName == "" {
		cfg.RuntimeName = "containerd"
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewInterval <= 0 {
		cfg.RenewInterval = DefaultRenewInterval
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.StatusWorkers <= 0 {
		cfg.StatusWorkers = DefaultStatusWorkers
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("node", cfg.NodeName)
	if cfg.Capacity == nil {
		c, err := MachineCapacity(cfg.VolumeDir)
		if err != nil {
			return nil, err
		}
		cfg.Capacity = c
	}
	if cfg.Prober == nil {
		if p, ok := cfg.Runtime.(podworker.Prober); ok {
			cfg.Prober = p
		}
	}
	cat := cfg.Registry.Catalog()
	var ks agentKinds
	for _, k := range []struct {
		dst  **kinds.Kind
		gvk  schema.GroupVersionKind
		name string
	}{
		{&ks.pod, schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, "Pod"},
		{&ks.node, schema.GroupVersionKind{Version: "v1", Kind: "Node"}, "Node"},
		{&ks.configMap, schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, "ConfigMap"},
		{&ks.secret, schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, "Secret"},
		{&ks.lease, schema.GroupVersionKind{Group: "coordination.k8s.io", Version: "v1", Kind: "Lease"}, "Lease"},
	} {
		kd, ok := cat.ByKind(k.gvk)
		if !ok {
			return nil, fmt.Errorf("nodeagent: the catalog has no %s", k.name)
		}
		*k.dst = kd
	}
	a := &Agent{
		cfg:   cfg,
		reg:   cfg.Registry,
		store: cfg.Store,
		rec:   cfg.Recorder,
		log:   cfg.Logger,
		podGR: ks.pod.GroupResource(),
		kinds: ks,
		info:  nodeInfo(cfg.RuntimeVersion),
		known: map[eventlog.Key]types.UID{},
		ready: make(chan struct{}),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[eventlog.Key](),
			workqueue.TypedRateLimitingQueueConfig[eventlog.Key]{Clock: cfg.Clock}),
	}
	if a.rec == nil {
		rec, err := recorder.New(recorder.Config{
			Registry: cfg.Registry,
			Actor:    registry.Node(cfg.NodeName),
			Source:   corev1.EventSource{Component: "kubelet", Host: cfg.NodeName},
			Logger:   cfg.Logger,
			Clock:    cfg.Clock,
		})
		if err != nil {
			return nil, fmt.Errorf("nodeagent: %w", err)
		}
		a.rec, a.ownRec = rec, true
	}
	a.statuses = newStatusWriter(a)
	_, simulated := cfg.Runtime.(*sim.Runtime) // simulated nodes make nothing on the machine
	pods, err := podworker.New(podworker.Config{
		NodeName:      cfg.NodeName,
		NodeIP:        cfg.NodeIP,
		Runtime:       cfg.Runtime,
		Status:        a.statuses,
		Events:        eventSink{rec: a.rec, quiet: cfg.QuietPods},
		Resolver:      resolver{a},
		Prober:        cfg.Prober,
		Clock:         cfg.Clock,
		VolumeDir:     cfg.VolumeDir,
		RuntimeName:   cfg.RuntimeName,
		BackOff:       cfg.BackOff,
		MaxBackOff:    cfg.MaxBackOff,
		SyncFrequency: cfg.SyncFrequency,
		DNSServers:    cfg.DNSServers,
		ClusterDomain: cfg.ClusterDomain,
		ResolvConf:    cfg.ResolvConf,
		// The Node reports its capacity as allocatable (node.go).
		NodeAllocatable:      cfg.Capacity,
		AllowedUnsafeSysctls: cfg.AllowedUnsafeSysctls,
		Simulated:            simulated,
		OnError: func(uid types.UID, err error) {
			a.log.Debug("nodeagent: pod worker", "pod", uid, "err", err)
		},
		SeccompDefault: cfg.SeccompDefault,
		Tokens:         tokensOf(cfg),
	})
	if err != nil {
		return nil, fmt.Errorf("nodeagent: %w", err)
	}
	if cfg.Metrics != nil {
		if err := pods.RegisterMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"node": cfg.NodeName}, cfg.Metrics)); err != nil {
			return nil, fmt.Errorf("nodeagent: metrics: %w", err)
		}
	}
	a.pods = pods
	if cfg.LocalVolumes != nil {
		if a.volumes, err = newLocalVolumes(a, cfg.LocalVolumes); err != nil {
			return nil, err
		}
		if cfg.Metrics != nil {
			if err := prometheus.WrapRegistererWith(prometheus.Labels{"node": cfg.NodeName}, cfg.Metrics).Register(newVolumeStats(a.volumes)); err != nil {
				return nil, fmt.Errorf("nodeagent: metrics: %w", err)
			}
		}
	}
	return a, nil
}

// NodeName is the name of the agent's node.
func (a *Agent) NodeName() string { return a.cfg.NodeName }

// Ready is closed once the agent has registered its node and handed every
// pod bound to it to the pod worker.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Pods is the agent's pod worker.
func (a *Agent) Pods() *podworker.Manager { return a.pods }

// Runtime is the agent's container runtime.
func (a *Agent) Runtime() podworker.StreamingRuntime { return a.cfg.Runtime }

// Run runs the agent until ctx ends. Containers keep running after it
// returns: the next agent on this node adopts them.
func (a *Agent) Run(ctx context.Context) error {
	if !a.cfg.podCIDRChecked && a.cfg.PodCIDR != "" {
		mine := claim{node: a.cfg.NodeName, prefix: netip.MustParsePrefix(a.cfg.PodCIDR)} // parsed in New
		if err := a.retry(ctx, "check the pod range", func() error {
			if _, err := a.reg.ConsistentRead(ctx); err != nil {
				return err
			}
			return checkPodCIDRs(a, []claim{mine}, false)
		}); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.cfg.Services != nil || a.cfg.DNS != nil {
		done := a.startServices(ctx)
		defer func() { cancel(); <-done }()
	}
	if a.cfg.Ingress != nil && a.cfg.Ingress.Proxy != nil {
		done := a.startIngress(ctx)
		defer func() { cancel(); <-done }()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer a.queue.ShutDown()
	defer a.statuses.queue.ShutDown()
	if a.ownRec {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Run only ends with ctx.
			_ = a.rec.Run(ctx)
		}()
	}

	a.nodeEvent(corev1.EventTypeNormal, "Starting", "Starting kubelet.")
	if err := a.retry(ctx, "register the node", func() error {
		if _, err := a.reg.ConsistentRead(ctx); err != nil {
			return err
		}
		return a.register(ctx)
	}); err != nil {
		return err
	}

	// Follow the pods bound to this node: subscribe first, then list, so
	// nothing falls between the two (a key seen twice is synced twice).
	unsubscribe := a.store.Subscribe(a.onChange)
	defer unsubscribe()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Start returns once ctx ends and every pod worker has stopped.
		_ = a.pods.Start(ctx)
	}()
	objs, _ := a.store.List(projections.Query{Resource: a.podGR, Fields: fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName)})
	for _, o := range objs {
		a.reconcile(o.Key)
	}
	if err := a.retry(ctx, "remove orphaned pods", func() error { return a.pods.RemoveOrphans(ctx) }); err != nil {
		return err
	}
	if a.volumes != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.volumes.run(ctx)
		}()
	}
	close(a.ready)
	a.log.Info("nodeagent: node registered and pods synced", "pods", len(objs))

	for range a.cfg.StatusWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.statuses.run(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for a.processNext() {
		}
	}()
	a.heartbeat(ctx)
	return nil
}

// retry calls fn until it succeeds or ctx ends, backing off up to 5s. A
// pod range conflict is not retried: it needs the operator.
func (a *Agent) retry(ctx context.Context, what string, fn func() error) error {
	delay := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil || errors.Is(err, ErrPodCIDRConflict) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("nodeagent: %s: %w", what, errors.Join(err, ctx.Err()))
		}
		a.log.Warn("nodeagent: retrying", "what", what, "err", err)
		select {
		case <-ctx.Done():
		case <-a.cfg.Clock.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// onChange queues the pods of this node that a change touches. It runs in
// the projection's apply path, so it only looks at indexed fields.
func (a *Agent) onChange(ch projections.Change) {
	o := ch.New
	if o == nil {
		o = ch.Old
	}
	if o.Key.Resource != "pods" || o.Key.Group != "" {
		return
	}
	mine := func(x *projections.Object) bool { return x != nil && x.Fields["spec.nodeName"] == a.cfg.NodeName }
	if !mine(ch.New) && !mine(ch.Old) {
		return
	}
	if ch.New != nil && ch.Old != nil && ownStatusWrite(ch.New.Event, a.cfg.NodeName) {
		return // our own status write: nothing for the pod worker to do
	}
	a.queue.Add(o.Key)
}

// ownStatusWrite tells whether ev is a status update written by this node's agent.
func ownStatusWrite(ev *eventv1.ObjectChanged, node string) bool {
	act := ev.GetActor()
	return ev.GetReason() == registry.ReasonStatus && act.GetKind() == eventv1.ActorKind_ACTOR_KIND_NODE && act.GetName() == node
}

func (a *Agent) processNext() bool {
	key, shutdown := a.queue.Get()
	if shutdown {
		return false
	}
	defer a.queue.Done(key)
	a.reconcile(key)
	a.queue.Forget(key)
	return true
}

// reconcile gives the pod worker the current state of the pod at key: the
// pod if it is bound here, or tells it to forget the pod it had.
func (a *Agent) reconcile(key eventlog.Key) {
	var pod *corev1.Pod
	if o, ok := a.store.Get(key); ok && o.Fields["spec.nodeName"] == a.cfg.NodeName {
		obj, err := o.Decode()
		if err != nil {
			a.log.Error("nodeagent: undecodable pod", "pod", key, "err", err)
			return
		}
		p, ok := obj.(*corev1.Pod)
		if !ok {
			a.log.Error("nodeagent: pod decodes to another type", "pod", key, "type", fmt.Sprintf("%T", obj))
			return
		}
		pod = p
	}
	a.mu.Lock()
	old, had := a.known[key]
	switch {
	case pod == nil:
		delete(a.known, key)
	default:
		a.known[key] = pod.UID
	}
	a.mu.Unlock()
	if had && (pod == nil || pod.UID != old) {
		// Gone from the log without waiting for us (force-deleted, or replaced under its name):
		// stop it as the kubelet does a force-deleted pod, within a short grace.
		a.pods.Kill(old, forceDeleteGrace)
	}
	if pod != nil {
		a.pods.Sync(pod)
	}
}

// PodUID returns the UID of the pod at namespace/name bound to this node.
func (a *Agent) PodUID(namespace, name string) (types.UID, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	uid, ok := a.known[eventlog.Key{Resource: "pods", Namespace: namespace, Name: name}]
	return uid, ok
}

// causeOf is the log sequence of an object's revision, from its resourceVersion.
func causeOf(rv string) uint64 {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0 // no revision: no cause to record
	}
	return n
}

// eventSink adapts the shared recorder to the pod worker's EventRecorder,
// with the pod revision the worker acted on as the cause; quiet drops the
// Normal ones (Config.QuietPods).
type eventSink struct {
	rec   *recorder.Recorder
	quiet bool
}

func (e eventSink) Event(ref corev1.ObjectReference, eventType, reason, message string) {
	if e.quiet && eventType == corev1.EventTypeNormal {
		return
	}
	e.rec.RefEvent(ref, causeOf(ref.ResourceVersion), eventType, reason, message)
}

// tokensOf is the node's TokenRequest client, or nil.
func tokensOf(cfg Config) podworker.Tokens {
	if cfg.Tokens == nil {
		return nil
	}
	return cfg.Tokens(cfg.NodeName)
}
