package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/logplane/logplane/dataplane/podnet"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/durablefile"
)

// SandboxID is the sandbox ID of a pod: derived from its UID, so that a
// restarted node agent finds the sandbox of a pod it knows.
func SandboxID(podUID string) string {
	sum := sha256.Sum256([]byte(podUID))
	return hex.EncodeToString(sum[:12])
}

func (r *Runtime) sandboxDir(id string) string {
	return filepath.Join(r.cfg.DataDir, "sandboxes", id)
}

func (r *Runtime) podLogDir(sb runtimeapi.Sandbox) string {
	return filepath.Join(r.cfg.DataDir, "logs", fmt.Sprintf("%s_%s_%s", sb.PodNamespace, sb.PodName, sb.PodUID))
}

// CreateSandbox creates the pod's sandbox: a directory, a network namespace
// attached to the pod network (with the pod IP and host ports), and the
// pod's hosts, hostname and resolv.conf. Creating the sandbox of a pod that
// has one returns the existing one.
func (r *Runtime) CreateSandbox(ctx context.Context, cfg runtimeapi.SandboxConfig) (runtimeapi.Sandbox, error) {
	if cfg.PodUID == "" || cfg.PodName == "" {
		return runtimeapi.Sandbox{}, errors.New("containerd: sandbox needs a pod UID and name")
	}
	id := SandboxID(cfg.PodUID)
	if sb, err := r.Sandbox(ctx, id); err == nil {
		return sb, nil
	} else if !errors.Is(err, runtimeapi.ErrNotFound) {
		return runtimeapi.Sandbox{}, err
	}
	dir := r.sandboxDir(id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return runtimeapi.Sandbox{}, fmt.Errorf("containerd: sandbox dir: %w", err)
	}
	var att podnet.Attachment
	var err error
	host := cfg.Hostname
	if host == "" {
		host = cfg.PodName
	}
	if len(host) > 63 {
		host = host[:63]
	}
	if cfg.HostNetwork {
		// The node's network and hostname, as containerd's CRI plugin
		// does for a sandbox without a hostname on the host network.
		if host, err = os.Hostname(); err != nil {
			return runtimeapi.Sandbox{}, errors.Join(fmt.Errorf("containerd: hostname: %w", err), os.RemoveAll(dir))
		}
	} else if att, err = r.net.Attach(ctx, id, cfg.Ports); err != nil {
		return runtimeapi.Sandbox{}, errors.Join(err, os.RemoveAll(dir))
	}
	sb := runtimeapi.Sandbox{
		ID:           id,
		PodUID:       cfg.PodUID,
		PodName:      cfg.PodName,
		PodNamespace: cfg.PodNamespace,
		Hostname:     host,
		IP:           att.IP,
		NetNSPath:    att.NetNSPath,
		Dir:          dir,
		Ports:        cfg.Ports,
		CreatedAt:    time.Now().UTC(),
		HostNetwork:  cfg.HostNetwork,
		Sysctls:      cfg.Sysctls,
	}
	if err := writeEtcFiles(dir, sb, cfg); err == nil {
		err = writeJSON(filepath.Join(dir, "sandbox.json"), sb)
	}
	if err != nil {
		var derr error
		if !cfg.HostNetwork {
			derr = r.net.Detach(context.WithoutCancel(ctx), id, att.NetNSPath, cfg.Ports)
		}
		return runtimeapi.Sandbox{}, errors.Join(err, derr, os.RemoveAll(dir))
	}
	return sb, nil
}

func writeEtcFiles(dir string, sb runtimeapi.Sandbox, cfg runtimeapi.SandboxConfig) error {
	hosts := "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
	if sb.IP != "" {
		hosts += sb.IP + "\t" + sb.Hostname + "\n"
	}
	// As containerd's CRI plugin writes a sandbox's resolv.conf.
	var resolv strings.Builder
	if len(cfg.DNSSearches) > 0 {
		resolv.WriteString("search " + strings.Join(cfg.DNSSearches, " ") + "\n")
	}
	for _, s := range cfg.DNSServers {
		resolv.WriteString("nameserver " + s + "\n")
	}
	if len(cfg.DNSOptions) > 0 {
		resolv.WriteString("options " + strings.Join(cfg.DNSOptions, " ") + "\n")
	}
	for name, content := range map[string]string{"hosts": hosts, "hostname": sb.Hostname + "\n", "resolv.conf": resolv.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("containerd: sandbox %s: %w", name, err)
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("containerd: encode %s: %w", path, err)
	}
	// Node state: durable, so that a power loss leaves the old state or the new, never an empty file.
	if err := durablefile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("containerd: write %s: %w", path, err)
	}
	return nil
}

// Sandbox returns the sandbox with the given ID. If there is none, the error
// wraps runtimeapi.ErrNotFound.
func (r *Runtime) Sandbox(_ context.Context, id string) (runtimeapi.Sandbox, error) {
	var sb runtimeapi.Sandbox
	b, err := os.ReadFile(filepath.Join(r.sandboxDir(id), "sandbox.json"))
	if errors.Is(err, os.ErrNotExist) {
		return sb, fmt.Errorf("containerd: sandbox %q: %w", id, runtimeapi.ErrNotFound)
	}
	if err != nil {
		return sb, fmt.Errorf("containerd: sandbox %q: %w", id, err)
	}
	if err := json.Unmarshal(b, &sb); err != nil {
		return sb, fmt.Errorf("containerd: sandbox %q: %w", id, err)
	}
	return sb, nil
}

// ListSandboxes returns every sandbox of the data directory.
func (r *Runtime) ListSandboxes(ctx context.Context) ([]runtimeapi.Sandbox, error) {
	ents, err := os.ReadDir(filepath.Join(r.cfg.DataDir, "sandboxes"))
	if err != nil {
		return nil, fmt.Errorf("containerd: list sandboxes: %w", err)
	}
	var out []runtimeapi.Sandbox
	for _, e := range ents {
		sb, err := r.Sandbox(ctx, e.Name())
		if errors.Is(err, runtimeapi.ErrNotFound) {
			continue // half-created or half-removed: RemoveSandbox cleans it
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sb)
	}
	return out, nil
}

// RemoveSandbox kills and removes the sandbox's containers, releases its IP
// and host ports, removes its network namespace, its directory (hosts
// files) and its pod's logs. Removing a sandbox that is gone succeeds.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	sb, err := r.Sandbox(ctx, id)
	if errors.Is(err, runtimeapi.ErrNotFound) {
		return os.RemoveAll(r.sandboxDir(id))
	}
	if err != nil {
		return err
	}
	cs, err := r.ListContainers(ctx, sb.PodUID)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, r.RemoveContainer(ctx, c.ID))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !sb.HostNetwork {
		if err := r.net.Detach(ctx, id, sb.NetNSPath, sb.Ports); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(r.podLogDir(sb)); err != nil {
		return fmt.Errorf("containerd: remove pod logs: %w", err)
	}
	if err := os.RemoveAll(r.sandboxDir(id)); err != nil {
		return fmt.Errorf("containerd: remove sandbox dir: %w", err)
	}
	return nil
}
