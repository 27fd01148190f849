// Package podworker is the kubelet's pod logic for logplane's node agent,
// with no knowledge of the event log: given the desired pods bound to this
// node (Manager.Sync), it drives a container runtime (containerd or the
// simulated one) to run them, and reports what it observes as Kubernetes
// does: pod status (phase, conditions, container statuses, restart counts,
// pod and host IPs) through a StatusSink, and Kubernetes Events (Pulling,
// Pulled, Created, Started, Killing, Unhealthy, BackOff, Failed) through an
// EventRecorder. It implements restart policies with CrashLoopBackOff,
// liveness/readiness/startup probes, image pull back-off, graceful deletion,
// activeDeadlineSeconds, configMap, secret, downwardAPI and projected volumes
// that follow their objects, memory emptyDirs, lifecycle hooks, termination
// messages, the kubelet's managed /etc/hosts and resolv.conf, host network
// pods, sysctls (with the kubelet's admission), and adoption of the
// containers a previous node agent left running.
//
// The node agent imports it and provides the StatusSink, EventRecorder and
// Resolver; tests provide recording fakes.
package podworker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/probe"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/dataplane/sim"
)

// Runtime is what the pod worker needs of a container runtime.
type Runtime interface {
	EnsureImage(ctx context.Context, ref string, policy runtimeapi.PullPolicy) (runtimeapi.Image, error)
	CreateSandbox(ctx context.Context, cfg runtimeapi.SandboxConfig) (runtimeapi.Sandbox, error)
	ListSandboxes(ctx context.Context) ([]runtimeapi.Sandbox, error)
	RemoveSandbox(ctx context.Context, id string) error
	CreateContainer(ctx context.Context, sandboxID string, cfg runtimeapi.ContainerConfig) (string, error)
	StartContainer(ctx context.Context, id string) error
	WaitContainer(ctx context.Context, id string) (runtimeapi.ContainerStatus, error)
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	RemoveContainer(ctx context.Context, id string) error
	ContainerStatus(ctx context.Context, id string) (runtimeapi.ContainerStatus, error)
	ListContainers(ctx context.Context, podUID string) ([]runtimeapi.ContainerStatus, error)
	Exec(ctx context.Context, id string, opts runtimeapi.ExecOptions) (int, error)
}

// StreamingRuntime is a Runtime that also serves kubectl logs, port-forward
// and top; the node agent calls these directly, with the IDs that
// Manager.ContainerID and Manager.SandboxID give.
type StreamingRuntime interface {
	Runtime
	Logs(ctx context.Context, id string, opts runtimeapi.LogOptions, w io.Writer) error
	PortForward(ctx context.Context, sandboxID string, port int32) (net.Conn, error)
	Stats(ctx context.Context, id string) (runtimeapi.ContainerStats, error)
}

var (
	_ StreamingRuntime = (*containerd.Runtime)(nil)
	_ StreamingRuntime = (*sim.Runtime)(nil)
	_ Prober           = (*sim.Runtime)(nil)
)

// StatusSink receives the observed state of pods. Calls for one pod are
// never concurrent and come in order; calls for different pods may be.
// Delivery (and retrying it) is the sink's business.
type StatusSink interface {
	// PodStatus is called whenever the status of a pod changes.
	PodStatus(pod *corev1.Pod, status corev1.PodStatus)
	// PodTerminated is called once a pod that was being deleted (or that
	// was Forgotten) has no container or sandbox left on the node: the caller
	// may now remove the pod object.
	PodTerminated(pod *corev1.Pod)
}

// Event types, as in Kubernetes.
const (
	EventNormal  = corev1.EventTypeNormal
	EventWarning = corev1.EventTypeWarning
)

// EventRecorder records Kubernetes Events about a pod or one of its
// containers (ref.FieldPath is then "spec.containers{name}"). It must be
// safe for concurrent use.
type EventRecorder interface {
	Event(ref corev1.ObjectReference, eventType, reason, message string)
}

// ErrNotFound is what a Resolver returns (wrapped) for a ConfigMap or Secret
// that does not exist. Kubernetes API NotFound errors are understood too.
var ErrNotFound = errors.New("podworker: not found")

// Resolver gives the ConfigMaps and Secrets that pods refer to in env,
// envFrom and volumes.
type Resolver interface {
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
}

// ClaimResolver, when the Resolver is one, gives the host directory of a persistent volume
// claim: that of the volume bound to it (a local or hostPath volume, or one of the node's
// local provisioner), made usable. Its error wraps ErrClaimNotBound while the claim is not
// bound: the pod then waits in ContainerCreating, with a FailedMount event, as the kubelet's.
type ClaimResolver interface {
	ClaimPath(ctx context.Context, namespace, claim string) (string, error)
}

// ErrClaimNotBound is the error of a claim that has no volume yet.
var ErrClaimNotBound = errors.New("PVC is not bound")

// Prober runs one probe; probe.Run is the real one.
type Prober interface {
	Probe(ctx context.Context, p *corev1.Probe, t probe.Target) (probe.Result, error)
}

type realProber struct{}

func (realProber) Probe(ctx context.Context, p *corev1.Probe, t probe.Target) (probe.Result, error) {
	return probe.Run(ctx, p, t)
}

// DefaultSyncFrequency is the kubelet's default syncFrequency.
const DefaultSyncFrequency = time.Minute

// Config configures a Manager. Fields without a default are required.
type Config struct {
	// NodeName and NodeIP are this node's; NodeIP becomes status.hostIP.
	NodeName string
	NodeIP   string
	Runtime  Runtime
	Status   StatusSink
	Events   EventRecorder
	// Resolver resolves ConfigMaps and Secrets. Default: none (pods that use
	// them fail with CreateContainerConfigError).
	Resolver Resolver
	// Prober runs probes. Default: probe.Run (the sim runtime is its own Prober).
	Prober Prober
	// Clock times back-off, probes and grace periods. Default: the real clock.
	Clock clock.WithTicker
	// VolumeDir holds the pods' emptyDir volumes and the files of their
	// configMap and secret volumes, under <VolumeDir>/<pod UID>/.
	VolumeDir string
	// RuntimeName prefixes container IDs in statuses ("containerd://..."). Default: "containerd".
	RuntimeName string
	// BackOff and MaxBackOff bound the restart and image pull back-off.
	// Default: 10s doubling up to 5 minutes, as in Kubernetes.
	BackOff    time.Duration
	MaxBackOff time.Duration
	// SyncFrequency is the kubelet's syncFrequency: how often the files of a
	// running pod's configMap and secret volumes are written again from the
	// Resolver, jittered by up to half as the kubelet's pod workers are.
	// Default: 1 minute, as in Kubernetes.
	SyncFrequency time.Duration
	// SeccompDefault gives containers that ask for no seccomp profile the
	// runtime's default one (RuntimeDefault), as the kubelet's
	// --seccomp-default. Default: off (Unconfined), as in Kubernetes.
	SeccompDefault bool
	// SeccompProfileRoot holds the Localhost seccomp profiles that pods name
	// (localhostProfile is a path under it), as the kubelet's
	// <root-dir>/seccomp. Default: "seccomp" beside VolumeDir.
	SeccompProfileRoot string
	// Simulated is for simulated nodes (dataplane/sim), which make nothing
	// on the machine: volumes that need a mount (emptyDir medium Memory) are
	// plain directories, the files only a container would read (the managed
	// /etc/hosts, termination message files) are not written, and no DNS
	// events are recorded (kwok records none). Default: off.
	Simulated bool
	// NodeAllocatable is the node's allocatable (cpu, memory,
	// ephemeral-storage): what the Downward API reports as the limit of a
	// container that sets none, and the largest size of a memory-backed
	// emptyDir, as with the kubelet. Default: none (such limits read 0).
	NodeAllocatable corev1.ResourceList
	// DNSServers are the cluster DNS servers (the kubelet's --cluster-dns)
	// and ClusterDomain its domain: with none, ClusterFirst pods get the
	// node's resolv.conf, as the kubelet gives them, with a MissingClusterDNS
	// event.
	DNSServers    []string
	ClusterDomain string
	// ResolvConf is the node's resolv.conf (the kubelet's --resolv-conf),
	// which pods of dnsPolicy Default are given. Default: none, as the
	// kubelet's --resolv-conf="" (nameserver 127.0.0.1, search .).
	ResolvConf string
	// NodeHostsFile is the node's hosts file, which pods on the host network
	// see (under the kubelet's header). Default: /etc/hosts.
	NodeHostsFile string
	// AllowedUnsafeSysctls are the kubelet's --allowed-unsafe-sysctls: names
	// or prefixes ending in '*' of namespaced sysctls that pods may set
	// beside the safe ones. A pod with another is rejected (SysctlForbidden).
	AllowedUnsafeSysctls []string
	// Tokens requests the tokens of serviceAccountToken projections (the
	// TokenRequest API); they are refreshed at 80% of their life, when the
	// pod's volumes are (SyncFrequency). Default: none (such volumes fail
	// with FailedMount).
	Tokens Tokens
	// OnError receives errors that have no caller to return to (a failed
	// runtime call in a pod worker that will be retried). Default: dropped
	// after being turned into a pod event where Kubernetes has one.
	OnError func(pod types.UID, err error)
}

// Manager runs one worker per pod.
type Manager struct {
	cfg          Config
	sysctls      *sysctlAllowlist
	metrics      *metrics
	backoff      *flowcontrol.Backoff // crash-loop back-off, by pod UID/container
	imageBackoff *flowcontrol.Backoff // image pull back-off, by pod UID/image

	mu      sync.Mutex
	ctx     context.Context // set by Start
	workers map[types.UID]*worker
	wg      sync.WaitGroup
	tokens  *tokenManager
}

// New checks cfg and returns a Manager; call Start to run it.
func New(cfg Config) (*Manager, error) {
	if cfg.Runtime == nil || cfg.Status == nil || cfg.Events == nil {
		return nil, errors.New("podworker: Runtime, Status and Events are required")
	}
	if cfg.VolumeDir == "" {
		return nil, errors.New("podworker: VolumeDir is required")
	}
	if cfg.Prober == nil {
		cfg.Prober = realProber{}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.RuntimeName == "" {
		cfg.RuntimeName = "containerd"
	}
	if cfg.BackOff <= 0 {
		cfg.BackOff = 10 * time.Second
	}
	if cfg.MaxBackOff <= 0 {
		cfg.MaxBackOff = 5 * time.Minute
	}
	if cfg.SeccompProfileRoot == "" {
		cfg.SeccompProfileRoot = filepath.Join(filepath.Dir(filepath.Clean(cfg.VolumeDir)), "seccomp")
	}
	if cfg.SyncFrequency <= 0 {
		cfg.SyncFrequency = DefaultSyncFrequency
	}
	if cfg.NodeHostsFile == "" {
		cfg.NodeHostsFile = etcHostsPath
	}
	sysctls, err := newSysctlAllowlist(cfg.AllowedUnsafeSysctls)
	if err != nil {
		return nil, fmt.Errorf("podworker: %w", err)
	}
	if cfg.MaxBackOff < cfg.BackOff {
		return nil, fmt.Errorf("podworker: MaxBackOff %s < BackOff %s", cfg.MaxBackOff, cfg.BackOff)
	}
	mt := newMetrics()
	cfg.Runtime = instrumented{Runtime: cfg.Runtime, m: mt}
	return &Manager{
		cfg:          cfg,
		metrics:      mt,
		backoff:      flowcontrol.NewFakeBackOff(cfg.BackOff, cfg.MaxBackOff, cfg.Clock),
		imageBackoff: flowcontrol.NewFakeBackOff(cfg.BackOff, cfg.MaxBackOff, cfg.Clock),
		workers:      map[types.UID]*worker{},
		sysctls:      sysctls,
		tokens:       newTokenManager(cfg.Tokens, cfg.Clock),
	}, nil
}

// Start runs the pod workers until ctx ends, then waits for them to stop.
// Containers keep running: a new Manager adopts them.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.ctx != nil {
		m.mu.Unlock()
		return errors.New("podworker: already started")
	}
	m.ctx = ctx
	for _, w := range m.workers {
		m.launch(w)
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.wg.Wait()
	return nil
}

// launch starts w's goroutine; m.mu is held.
func (m *Manager) launch(w *worker) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		w.run(m.ctx)
		m.mu.Lock()
		if m.workers[w.uid] == w {
			delete(m.workers, w.uid)
			m.tokens.forget(string(w.uid))
		}
		m.mu.Unlock()
	}()
}

// Sync gives the desired state of a pod bound to this node. Call it for every
// change of the pod (a deletionTimestamp starts graceful termination).
func (m *Manager) Sync(pod *corev1.Pod) {
	pod = pod.DeepCopy()
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.workers[pod.UID]; ok {
		w.setDesired(pod)
		return
	}
	w := newWorker(m, pod)
	m.workers[pod.UID] = w
	if m.ctx != nil {
		m.launch(w)
	}
}

// Forget terminates a pod that is no longer bound to this node (or was
// deleted without grace): its containers are stopped within the pod's
// grace period and removed, then StatusSink.PodTerminated is called.
func (m *Manager) Forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.workers[uid]; ok {
		w.forget(nil)
	}
}

// Kill is Forget within grace instead of the pod's grace period: for a pod
// removed from the cluster without graceful deletion (kubectl delete
// --grace-period=0 --force), which the kubelet stops within a short grace.
func (m *Manager) Kill(uid types.UID, grace time.Duration) {
	secs := int64(grace / time.Second)
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.workers[uid]; ok {
		w.forget(&secs)
	}
}

// RemoveOrphans removes the sandboxes (and their containers) of pods the
// Manager has not been given: call it once the caller has synced every pod
// it knows, e.g. after a node agent restart.
func (m *Manager) RemoveOrphans(ctx context.Context) error {
	sbs, err := m.cfg.Runtime.ListSandboxes(ctx)
	if err != nil {
		return fmt.Errorf("podworker: list sandboxes: %w", err)
	}
	var errs []error
	for _, sb := range sbs {
		m.mu.Lock()
		_, known := m.workers[types.UID(sb.PodUID)]
		m.mu.Unlock()
		if known {
			continue
		}
		if err := m.cfg.Runtime.RemoveSandbox(ctx, sb.ID); err != nil {
			errs = append(errs, fmt.Errorf("podworker: remove orphan sandbox of %s/%s: %w", sb.PodNamespace, sb.PodName, err))
			continue
		}
		// Its memory emptyDirs are unmounted and its volumes removed, as at a teardown.
		dir := filepath.Join(m.cfg.VolumeDir, sb.PodUID)
		if err := errors.Join(unmountVolumes(dir), os.RemoveAll(dir)); err != nil {
			errs = append(errs, fmt.Errorf("podworker: remove orphan volumes of %s/%s: %w", sb.PodNamespace, sb.PodName, err))
		}
	}
	return errors.Join(errs...)
}

// ContainerID returns the runtime ID of a pod's container instance: the
// current one, or the one before it when previous is set (kubectl logs
// --previous). The error wraps runtimeapi.ErrNotFound if there is none.
func (m *Manager) ContainerID(ctx context.Context, podUID types.UID, name string, previous bool) (string, error) {
	cs, err := m.cfg.Runtime.ListContainers(ctx, string(podUID))
	if err != nil {
		return "", fmt.Errorf("podworker: %w", err)
	}
	cur, prev := latest(cs, name)
	if previous {
		cur = prev
	}
	if cur == nil {
		return "", fmt.Errorf("podworker: container %q of pod %s (previous %v): %w", name, podUID, previous, runtimeapi.ErrNotFound)
	}
	return cur.ID, nil
}

// SandboxID returns the runtime ID of a pod's sandbox (for port-forward).
func (m *Manager) SandboxID(ctx context.Context, podUID types.UID) (string, error) {
	sbs, err := m.cfg.Runtime.ListSandboxes(ctx)
	if err != nil {
		return "", fmt.Errorf("podworker: %w", err)
	}
	for _, sb := range sbs {
		if sb.PodUID == string(podUID) {
			return sb.ID, nil
		}
	}
	return "", fmt.Errorf("podworker: sandbox of pod %s: %w", podUID, runtimeapi.ErrNotFound)
}

// latest returns the instances of the named container with the highest
// and second highest attempt.
func latest(cs []runtimeapi.ContainerStatus, name string) (cur, prev *runtimeapi.ContainerStatus) {
	for i := range cs {
		c := &cs[i]
		if c.Name != name {
			continue
		}
		switch {
		case cur == nil || c.Attempt > cur.Attempt:
			cur, prev = c, cur
		case prev == nil || c.Attempt > prev.Attempt:
			prev = c
		}
	}
	return cur, prev
}
