// Package runtimeapi holds the types that logplane's container runtimes
// (dataplane/containerd and dataplane/sim) share with their callers: the
// plain-Go counterpart of the Kubernetes CRI runtime API. It has no behaviour
// and imports nothing of ours; anything in logplane may import it.
package runtimeapi

import (
	"errors"
	"io"
	"time"
)

// Errors returned by runtimes, to be tested with errors.Is. Runtimes wrap them
// with context.
var (
	// ErrNotFound: the sandbox, container or image is not known to the runtime.
	ErrNotFound = errors.New("runtime: not found")
	// ErrImagePull: pulling the image failed (unknown image, registry
	// unreachable, bad manifest, ...). Kubernetes reports ErrImagePull, then
	// ImagePullBackOff while it waits to try again.
	ErrImagePull = errors.New("runtime: image pull failed")
	// ErrImageNeverPull: the image is not present and the pull policy is Never.
	ErrImageNeverPull = errors.New("runtime: image not present and pull policy is Never")
	// ErrInvalidImageName: the image reference does not parse.
	ErrInvalidImageName = errors.New("runtime: invalid image name")
	// ErrInvalidImageArchive: an image archive to import is not one (not a tar, no index or
	// manifest, truncated, or naming no image).
	ErrInvalidImageArchive = errors.New("runtime: invalid image archive")
	// ErrExecTimeout: an exec'd process ran longer than ExecOptions.Timeout and was killed.
	ErrExecTimeout = errors.New("runtime: exec timed out")
)

// PullPolicy says when an image is pulled; its values are Kubernetes'
// (Always, IfNotPresent, Never).
type PullPolicy string

// Pull policies.
const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// Image is an image present on the node.
type Image struct {
	// Ref is the normalized reference, e.g. "docker.io/library/busybox:latest".
	Ref string
	// ID is the image's digest-qualified reference, as Kubernetes reports in
	// containerStatuses[].imageID (e.g. "docker.io/library/busybox@sha256:...").
	ID string
	// Pulled is true when EnsureImage pulled it, false when it was already present.
	Pulled bool
	// Size is the image's size in bytes, as far as the runtime knows it.
	Size int64
	// UID and Username are the user the image's config runs as (its USER):
	// UID when it is numeric ("1000" or "1000:1000"), else Username ("app").
	// Both unset means the image names no user (root), as the CRI's ImageStatus
	// reports it; the kubelet's runAsNonRoot check reads them.
	UID      *int64
	Username string
}

// PortMapping maps a host port to a port of the pod (hostPort).
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	Protocol      string // "TCP" (default), "UDP" or "SCTP"
	HostIP        string // "" means all addresses
}

// SandboxConfig describes the pod-level environment that a pod's containers share.
type SandboxConfig struct {
	PodUID       string
	PodName      string
	PodNamespace string
	// Hostname is the pod's hostname (defaults to PodName).
	Hostname string
	// Ports are the pod's hostPort mappings.
	Ports []PortMapping
	// DNSServers, DNSSearches and DNSOptions go into the pod's resolv.conf
	// (nameserver, search and options lines); empty means none.
	DNSServers  []string
	DNSSearches []string
	DNSOptions  []string
	// HostNetwork puts the pod in the node's network namespace (and, as
	// containerd's CRI plugin does, its UTS namespace): no pod network, no
	// pod IP (the caller reports the node's), the node's hostname.
	HostNetwork bool
	// Sysctls are namespaced kernel parameters (net.*, kernel.shm*, ...)
	// set in the pod's namespaces, by name ("net.ipv4.ip_local_port_range"
	// or with slashes); the caller has checked that they are allowed.
	Sysctls map[string]string
}

// Sandbox is a pod sandbox: a network namespace with an IP.
type Sandbox struct {
	ID           string
	PodUID       string
	PodName      string
	PodNamespace string
	Hostname     string
	// IP is the pod IP ("" on runtimes without networking and before setup).
	IP string
	// NetNSPath is the pinned network namespace ("" on the simulated runtime).
	NetNSPath string
	// Dir is a directory on the node that belongs to the sandbox and is
	// removed with it: emptyDir volumes live under it.
	Dir       string
	Ports     []PortMapping
	CreatedAt time.Time
	// HostNetwork and Sysctls are the SandboxConfig's.
	HostNetwork bool              `json:",omitempty"`
	Sysctls     map[string]string `json:",omitempty"`
}

// Mount is a bind mount into a container.
type Mount struct {
	HostPath      string
	ContainerPath string
	ReadOnly      bool
}

// Resources are the cgroup limits of a container. Zero means unlimited.
type Resources struct {
	// CPULimitMilli is the CPU limit in millicores (CFS quota).
	CPULimitMilli int64
	// CPURequestMilli is the CPU request in millicores (CPU shares).
	CPURequestMilli int64
	// MemoryLimitBytes is the memory limit.
	MemoryLimitBytes int64
}

// ContainerConfig describes one container of a sandbox.
type ContainerConfig struct {
	// Name is the container's name in the pod spec.
	Name string
	// Attempt is the number of the instance: 0 for the first, then one more
	// for each restart. Kubernetes' restartCount is the attempt of the
	// current instance.
	Attempt int
	// Image is the reference as written in the pod spec; it must be present
	// (see EnsureImage).
	Image string
	// Command replaces the image's entrypoint, Args its cmd, as in Kubernetes.
	Command []string
	Args    []string
	// WorkingDir replaces the image's working directory when not empty.
	WorkingDir string
	// Env is "NAME=value" pairs, already resolved, appended to the image's env.
	Env       []string
	Mounts    []Mount
	Resources Resources
	TTY       bool
	Stdin     bool
	// StdinOnce closes the container's stdin when the first attached client detaches.
	StdinOnce bool
	// Labels are the caller's, kept with the container and returned in its status.
	Labels map[string]string
	// Security is the container's Linux security; the zero value is the
	// runtime's default (the image's user, the default capabilities,
	// privilege escalation allowed, no seccomp profile).
	Security SecurityContext
}

// SecurityContext is the Linux security of one container: the counterpart of
// the CRI's LinuxContainerSecurityContext, which the kubelet's side
// (nodeagent/podworker) synthesizes from the pod's and the container's
// securityContext.
type SecurityContext struct {
	// RunAsUser is the UID of the container's processes. When nil,
	// RunAsUsername is looked up in the image's /etc/passwd; when both are
	// unset, the image's USER is used (root if it names none).
	RunAsUser     *int64
	RunAsUsername string
	// RunAsGroup is the primary GID; when nil, the user's group in the image's
	// /etc/passwd (0 if the user is not there). Setting it requires a user.
	RunAsGroup *int64
	// SupplementalGroups are added to the process's groups, beside its
	// primary group and, unless SupplementalGroupsPolicy is Strict, the
	// groups the image's /etc/group lists the user in.
	SupplementalGroups       []int64
	SupplementalGroupsPolicy SupplementalGroupsPolicy
	// Privileged gives every capability and device, a writable /sys and
	// /proc, and no seccomp profile.
	Privileged bool
	// ReadonlyRootfs mounts the container's root filesystem (and the
	// sandbox's /etc/hosts, /etc/hostname and /etc/resolv.conf) read-only.
	ReadonlyRootfs bool
	// NoNewPrivs sets no_new_privs (allowPrivilegeEscalation: false).
	NoNewPrivs bool
	// Capabilities are added to or dropped from the runtime's default set;
	// names as Kubernetes writes them ("NET_ADMIN", "ALL"), without "CAP_".
	Capabilities *Capabilities
	// Seccomp is the seccomp profile; the zero value is Unconfined.
	Seccomp SecurityProfile
}

// SupplementalGroupsPolicy is Kubernetes' pod supplementalGroupsPolicy.
type SupplementalGroupsPolicy string

// Supplemental groups policies; "" is Merge.
const (
	SupplementalGroupsMerge  SupplementalGroupsPolicy = "Merge"
	SupplementalGroupsStrict SupplementalGroupsPolicy = "Strict"
)

// Capabilities to add to and drop from a container's default set. "ALL"
// adds (or drops) every capability, before the others are applied.
type Capabilities struct {
	Add, Drop []string
}

// SecurityProfileType is the kind of a seccomp profile.
type SecurityProfileType string

// Seccomp profile types; "" is Unconfined.
const (
	ProfileUnconfined     SecurityProfileType = "Unconfined"
	ProfileRuntimeDefault SecurityProfileType = "RuntimeDefault"
	ProfileLocalhost      SecurityProfileType = "Localhost"
)

// SecurityProfile is a seccomp profile: none (Unconfined), the runtime's
// default, or a JSON profile in a file on the node (Localhost, LocalhostRef
// its path).
type SecurityProfile struct {
	Type         SecurityProfileType
	LocalhostRef string
}

// ContainerUser is the user a container's process runs as, once the
// runtime has resolved it against the image: what Kubernetes reports in
// containerStatuses[].user.linux.
type ContainerUser struct {
	UID, GID           int64
	SupplementalGroups []int64
}

// ContainerState is the state of a container instance.
type ContainerState string

// Container states.
const (
	StateCreated ContainerState = "created"
	StateRunning ContainerState = "running"
	StateExited  ContainerState = "exited"
	StateUnknown ContainerState = "unknown"
)

// Reasons a container exited, as Kubernetes reports them in
// containerStatuses[].state.terminated.reason.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
)

// ContainerStatus is what the runtime knows about one container instance.
type ContainerStatus struct {
	ID        string
	SandboxID string
	PodUID    string
	Name      string
	Attempt   int
	// Image is the reference from the config, ImageID the digest-qualified one.
	Image   string
	ImageID string
	State   ContainerState
	// CreatedAt, StartedAt and FinishedAt are zero when not reached.
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	// Reason is Completed, Error or OOMKilled once exited.
	Reason string
	// Message is a human-readable detail of the exit, if any.
	Message string
	// LogPath is the container's log file in the CRI format ("" if none).
	LogPath string
	Labels  map[string]string
	// User is the identity the container's process runs as; nil when the
	// runtime does not know it.
	User *ContainerUser
}

// TerminalSize is the size of a TTY.
type TerminalSize struct {
	Width  uint16
	Height uint16
}

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	Cmd    []string
	Stdin  io.Reader
	Stdout io.Writer
	// Stderr is ignored when TTY is set: a TTY has one output stream.
	Stderr io.Writer
	TTY    bool
	// Resize, when not nil, delivers terminal size changes until closed.
	Resize <-chan TerminalSize
	// Timeout, when > 0, bounds how long the process may run once started
	// (its setup does not count, as containerd's CRI ExecSync): then it is
	// killed and Exec returns an error wrapping ErrExecTimeout.
	Timeout time.Duration
}

// AttachOptions connect a client to the main process of a running container
// (kubectl attach, kubectl run -i): its output from now on, and its stdin
// when the container was created with Stdin.
type AttachOptions struct {
	Stdin  io.Reader
	Stdout io.Writer
	// Stderr is ignored when TTY is set: a TTY has one output stream.
	Stderr io.Writer
	TTY    bool
	// Resize, when not nil, delivers terminal size changes until closed.
	Resize <-chan TerminalSize
}

// LogOptions select the lines of a container log.
type LogOptions struct {
	// Follow keeps reading the log until the context ends or the container
	// has exited and its log is drained.
	Follow bool
	// TailLines, when >= 0, starts that many lines before the end.
	TailLines int64
	// Since, when not zero, skips lines logged before it.
	Since time.Time
	// Timestamps keeps the RFC3339Nano timestamp at the start of each line.
	Timestamps bool
	// LimitBytes, when > 0, stops after that many bytes.
	LimitBytes int64
}

// ContainerStats are resource usage figures of a running container, as
// `kubectl top` and the metrics API report them.
type ContainerStats struct {
	ContainerID string
	Timestamp   time.Time
	// CPUUsageNanos is the cumulative CPU time in nanoseconds.
	CPUUsageNanos uint64
	// MemoryUsageBytes is the cgroup's usage; MemoryWorkingSetBytes is that
	// minus inactive file pages (what Kubernetes reports and evicts on).
	MemoryUsageBytes      uint64
	MemoryWorkingSetBytes uint64
}

// Labels that runtimes put on containers, so that a restarted node agent can
// rebuild its state from the runtime alone.
const (
	LabelPrefix        = "io.logplane."
	LabelPodUID        = LabelPrefix + "pod.uid"
	LabelPodName       = LabelPrefix + "pod.name"
	LabelPodNamespace  = LabelPrefix + "pod.namespace"
	LabelSandboxID     = LabelPrefix + "sandbox.id"
	LabelContainerName = LabelPrefix + "container.name"
	LabelAttempt       = LabelPrefix + "container.attempt"
)
