package containerd

import (
	"context"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// podNamespaceOpts are the spec options that follow from the sandbox: a pod
// on the host network shares the node's network and UTS namespaces (no
// hostname of its own, which runc refuses without a UTS namespace), as
// containerd's CRI plugin runs it; the pod's sysctls are set in every
// container (runc writes them in its namespaces: the pod's network
// namespace, which they share, and each container's IPC namespace).
func podNamespaceOpts(sb runtimeapi.Sandbox) []oci.SpecOpts {
	var opts []oci.SpecOpts
	if sb.HostNetwork {
		opts = append(opts,
			oci.WithHostNamespace(specs.NetworkNamespace),
			oci.WithHostNamespace(specs.UTSNamespace),
			func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
				s.Hostname = ""
				return nil
			})
	}
	if len(sb.Sysctls) > 0 {
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
			if s.Linux == nil {
				s.Linux = &specs.Linux{}
			}
			if s.Linux.Sysctl == nil {
				s.Linux.Sysctl = map[string]string{}
			}
			for k, v := range sb.Sysctls {
				s.Linux.Sysctl[k] = v
			}
			return nil
		})
	}
	return opts
}

// withoutShadowed drops the mounts that a later mount of the same
// destination replaces (a pod's own /etc/hosts over the sandbox's), so
// that each destination is mounted once.
func withoutShadowed(mounts []specs.Mount) []specs.Mount {
	last := map[string]int{}
	for i, m := range mounts {
		last[m.Destination] = i
	}
	out := mounts[:0:0]
	for i, m := range mounts {
		if last[m.Destination] == i {
			out = append(out, m)
		}
	}
	return out
}
