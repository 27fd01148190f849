// Package sim is a simulated container runtime, like kwok: it has the shape
// of dataplane/containerd's Runtime, but its containers only pretend to run.
// They start at once and run until stopped; there are no processes, no
// network (pod IPs are handed out from the node's range but route nowhere),
// no logs, and probes always succeed. Its state lives in memory, so a node
// agent that keeps the Runtime object keeps its pods. It lets scale tests run
// hundreds of nodes in one process. It is never the default.
package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/dataplane/probe"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// Config configures a simulated runtime.
type Config struct {
	// Subnet is the node's pod range, e.g. "10.244.3.0/24". Default "10.244.0.0/24".
	Subnet string
	// Clock times exits. Default: the real clock.
	Clock clock.WithTicker
	// Exit, when set, says how a container behaves: it exits with code after
	// the given time (ok true; at once when after <= 0), or runs until stopped
	// (ok false).
	Exit func(cfg runtimeapi.ContainerConfig) (after time.Duration, code int32, ok bool)
	// PullError, when set, makes pulling an image fail with the error it returns.
	PullError func(ref string) error
}

// Runtime is a simulated runtime. Its methods are safe for concurrent use.
type Runtime struct {
	cfg    Config
	prefix netip.Prefix

	mu         sync.Mutex
	nextIP     netip.Addr
	freeIPs    []netip.Addr
	images     map[string]bool
	sandboxes  map[string]runtimeapi.Sandbox
	containers map[string]*container
	seq        uint64
}

type container struct {
	status runtimeapi.ContainerStatus
	cfg    runtimeapi.ContainerConfig
	done   chan struct{} // closed at exit
	timer  clock.Timer
}

// New returns an empty simulated runtime.
func New(cfg Config) (*Runtime, error) {
	if cfg.Subnet == "" {
		cfg.Subnet = "10.244.0.0/24"
	}
	p, err := netip.ParsePrefix(cfg.Subnet)
	if err != nil {
		return nil, fmt.Errorf("sim: subnet: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	p = p.Masked()
	return &Runtime{
		cfg:        cfg,
		prefix:     p,
		nextIP:     p.Addr().Next().Next(), // .1 is the gateway
		images:     map[string]bool{},
		sandboxes:  map[string]runtimeapi.Sandbox{},
		containers: map[string]*container{},
	}, nil
}

// EnsureImage pretends to pull ref according to policy.
func (r *Runtime) EnsureImage(_ context.Context, ref string, policy runtimeapi.PullPolicy) (runtimeapi.Image, error) {
	if ref == "" {
		return runtimeapi.Image{}, fmt.Errorf("sim: image %q: %w", ref, runtimeapi.ErrInvalidImageName)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	present := r.images[ref]
	id := "sim/" + ref + "@sha256:" + hash(ref, 32)
	switch {
	case policy == runtimeapi.PullNever && !present:
		return runtimeapi.Image{}, fmt.Errorf("sim: image %s: %w", ref, runtimeapi.ErrImageNeverPull)
	case policy == runtimeapi.PullAlways || !present:
		if r.cfg.PullError != nil {
			if err := r.cfg.PullError(ref); err != nil {
				return runtimeapi.Image{}, fmt.Errorf("sim: pull %s: %w: %w", ref, runtimeapi.ErrImagePull, err)
			}
		}
		r.images[ref] = true
		return runtimeapi.Image{Ref: ref, ID: id, Pulled: true}, nil
	}
	return runtimeapi.Image{Ref: ref, ID: id}, nil
}

func hash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// CreateSandbox hands out a pod IP; it returns the existing sandbox of a pod that has one.
func (r *Runtime) CreateSandbox(_ context.Context, cfg runtimeapi.SandboxConfig) (runtimeapi.Sandbox, error) {
	if cfg.PodUID == "" || cfg.PodName == "" {
		return runtimeapi.Sandbox{}, errors.New("sim: sandbox needs a pod UID and name")
	}
	id := hash(cfg.PodUID, 24)
	r.mu.Lock()
	defer r.mu.Unlock()
	if sb, ok := r.sandboxes[id]; ok {
		return sb, nil
	}
	var ip netip.Addr
	switch n := len(r.freeIPs); {
	case cfg.HostNetwork:
		// The node's network: no pod IP (the pod worker reports the node's).
	case n > 0:
		ip, r.freeIPs = r.freeIPs[n-1], r.freeIPs[:n-1]
	default:
		ip = r.nextIP
		if !r.prefix.Contains(ip) {
			return runtimeapi.Sandbox{}, fmt.Errorf("sim: no free IP in %s", r.prefix)
		}
		r.nextIP = ip.Next()
	}
	host := cfg.Hostname
	if host == "" {
		host = cfg.PodName
	}
	sb := runtimeapi.Sandbox{
		ID: id, PodUID: cfg.PodUID, PodName: cfg.PodName, PodNamespace: cfg.PodNamespace,
		Hostname: host, Ports: cfg.Ports, CreatedAt: r.cfg.Clock.Now(),
		HostNetwork: cfg.HostNetwork, Sysctls: cfg.Sysctls,
	}
	if ip.IsValid() {
		sb.IP = ip.String()
	}
	r.sandboxes[id] = sb
	return sb, nil
}

// ListSandboxes returns all sandboxes.
func (r *Runtime) ListSandboxes(context.Context) ([]runtimeapi.Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]runtimeapi.Sandbox, 0, len(r.sandboxes))
	for _, sb := range r.sandboxes {
		out = append(out, sb)
	}
	return out, nil
}

// RemoveSandbox removes the sandbox and its containers and frees its IP.
func (r *Runtime) RemoveSandbox(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, ok := r.sandboxes[id]
	if !ok {
		return nil
	}
	for cid, c := range r.containers {
		if c.status.SandboxID == id {
			r.exitLocked(c, 137, runtimeapi.ReasonError)
			delete(r.containers, cid)
		}
	}
	delete(r.sandboxes, id)
	if ip, err := netip.ParseAddr(sb.IP); err == nil {
		r.freeIPs = append(r.freeIPs, ip)
	}
	return nil
}

// CreateContainer records a container in the sandbox.
func (r *Runtime) CreateContainer(_ context.Context, sandboxID string, cfg runtimeapi.ContainerConfig) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, ok := r.sandboxes[sandboxID]
	if !ok {
		return "", fmt.Errorf("sim: sandbox %q: %w", sandboxID, runtimeapi.ErrNotFound)
	}
	if !r.images[cfg.Image] {
		return "", fmt.Errorf("sim: image %q: %w", cfg.Image, runtimeapi.ErrNotFound)
	}
	r.seq++
	id := fmt.Sprintf("%s-%d", sandboxID[:12], r.seq)
	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, map[string]string{
		runtimeapi.LabelPodUID:        sb.PodUID,
		runtimeapi.LabelPodName:       sb.PodName,
		runtimeapi.LabelPodNamespace:  sb.PodNamespace,
		runtimeapi.LabelSandboxID:     sb.ID,
		runtimeapi.LabelContainerName: cfg.Name,
		runtimeapi.LabelAttempt:       fmt.Sprint(cfg.Attempt),
	})
	r.containers[id] = &container{
		cfg:  cfg,
		done: make(chan struct{}),
		status: runtimeapi.ContainerStatus{
			ID: id, SandboxID: sandboxID, PodUID: sb.PodUID, Name: cfg.Name, Attempt: cfg.Attempt,
			Image: cfg.Image, ImageID: "sim/" + cfg.Image + "@sha256:" + hash(cfg.Image, 32),
			State: runtimeapi.StateCreated, CreatedAt: r.cfg.Clock.Now(), Labels: labels,
		},
	}
	return id, nil
}

func (r *Runtime) get(id string) (*container, error) {
	c, ok := r.containers[id]
	if !ok {
		return nil, fmt.Errorf("sim: container %q: %w", id, runtimeapi.ErrNotFound)
	}
	return c, nil
}

// StartContainer marks the container running; it exits only when stopped,
// or as Config.Exit says.
func (r *Runtime) StartContainer(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if c.status.State != runtimeapi.StateCreated {
		return fmt.Errorf("sim: container %q is %s", id, c.status.State)
	}
	c.status.State, c.status.StartedAt = runtimeapi.StateRunning, r.cfg.Clock.Now()
	if r.cfg.Exit != nil {
		if after, code, ok := r.cfg.Exit(c.cfg); ok {
			reason := runtimeapi.ReasonError
			if code == 0 {
				reason = runtimeapi.ReasonCompleted
			}
			if after <= 0 {
				r.exitLocked(c, code, reason)
				return nil
			}
			c.timer = r.cfg.Clock.NewTimer(after)
			go func(t clock.Timer) {
				select {
				case <-t.C():
					r.mu.Lock()
					r.exitLocked(c, code, reason)
					r.mu.Unlock()
				case <-c.done:
				}
			}(c.timer)
		}
	}
	return nil
}

func (r *Runtime) exitLocked(c *container, code int32, reason string) {
	if c.status.State == runtimeapi.StateExited {
		return
	}
	c.status.State, c.status.ExitCode, c.status.Reason = runtimeapi.StateExited, code, reason
	c.status.FinishedAt = r.cfg.Clock.Now()
	if c.timer != nil {
		c.timer.Stop()
	}
	close(c.done)
}

// WaitContainer blocks until the container has exited; a container that is
// not running returns its status at once.
func (r *Runtime) WaitContainer(ctx context.Context, id string) (runtimeapi.ContainerStatus, error) {
	r.mu.Lock()
	c, err := r.get(id)
	running := err == nil && c.status.State == runtimeapi.StateRunning
	r.mu.Unlock()
	if err != nil {
		return runtimeapi.ContainerStatus{}, err
	}
	if running {
		select {
		case <-c.done:
		case <-ctx.Done():
			return runtimeapi.ContainerStatus{}, ctx.Err()
		}
	}
	return r.ContainerStatus(ctx, id)
}

// StopContainer stops a running container: with a grace period it exits 0
// (it "handles" SIGTERM), without one it is killed (137).
func (r *Runtime) StopContainer(_ context.Context, id string, grace time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if c.status.State != runtimeapi.StateRunning {
		return nil
	}
	if grace > 0 {
		r.exitLocked(c, 0, runtimeapi.ReasonCompleted)
	} else {
		r.exitLocked(c, 137, runtimeapi.ReasonError)
	}
	return nil
}

// RemoveContainer removes the container, killing it if it runs.
func (r *Runtime) RemoveContainer(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok {
		r.exitLocked(c, 137, runtimeapi.ReasonError)
		delete(r.containers, id)
	}
	return nil
}

// ContainerStatus returns the container's status.
func (r *Runtime) ContainerStatus(_ context.Context, id string) (runtimeapi.ContainerStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return runtimeapi.ContainerStatus{}, err
	}
	return c.status, nil
}

// ListContainers returns the containers of a pod, or all if podUID is empty.
func (r *Runtime) ListContainers(_ context.Context, podUID string) ([]runtimeapi.ContainerStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []runtimeapi.ContainerStatus
	for _, c := range r.containers {
		if podUID == "" || c.status.PodUID == podUID {
			out = append(out, c.status)
		}
	}
	return out, nil
}

// Exec pretends to run a command: it succeeds at once with no output.
func (r *Runtime) Exec(_ context.Context, id string, _ runtimeapi.ExecOptions) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return -1, err
	}
	if c.status.State != runtimeapi.StateRunning {
		return -1, fmt.Errorf("sim: container %q is not running", id)
	}
	return 0, nil
}

// Logs writes nothing: simulated containers print nothing.
func (r *Runtime) Logs(_ context.Context, id string, _ runtimeapi.LogOptions, _ io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.get(id)
	return err
}

// Stats reports zero use.
func (r *Runtime) Stats(_ context.Context, id string) (runtimeapi.ContainerStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.get(id); err != nil {
		return runtimeapi.ContainerStats{}, err
	}
	return runtimeapi.ContainerStats{ContainerID: id, Timestamp: r.cfg.Clock.Now()}, nil
}

// ErrNoNetwork is returned by PortForward: simulated pods have no network.
var ErrNoNetwork = errors.New("sim: simulated pods have no network")

// PortForward fails with ErrNoNetwork.
func (r *Runtime) PortForward(context.Context, string, int32) (net.Conn, error) {
	return nil, ErrNoNetwork
}

// Probe answers every probe with success: there is nothing to probe.
func (r *Runtime) Probe(context.Context, *corev1.Probe, probe.Target) (probe.Result, error) {
	return probe.Result{Success: true}, nil
}
