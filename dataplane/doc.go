// Package dataplane is the machine side of logplane: everything a node agent
// needs to run pods on one machine, behind plain Go APIs that know nothing of
// NATS or the event log.
//
// The subpackages, each named for what it does:
//
//   - runtimeapi: the types a container runtime shares with its callers
//     (sandbox and container configs and statuses, exec, logs, stats,
//     sentinel errors), the plain-Go counterpart of the Kubernetes CRI.
//   - containerd: the real runtime. It drives a containerd daemon (the
//     system one, or one it starts itself under a data directory) through the
//     containerd v1.7 client; pod sandboxes are pinned network namespaces wired
//     by podnet; containers share the sandbox's network namespace.
//   - podnet: pod networking through CNI (go-cni with the bridge, host-local,
//     loopback and portmap plugins), pinned network namespaces, and dialing
//     into a pod's namespace for port-forward.
//   - crilog: container logs in the Kubernetes CRI file format, written and
//     read (follow, tail, since).
//   - serviceproxy: Services carrying traffic (the kube-proxy role):
//     kube-proxy's nftables layout through knftables, fed with Services and
//     EndpointSlices, incremental syncs, the Service range routed so that it
//     never leaves the machine.
//   - ingressproxy: the Ingress proxy (HTTP and HTTPS), fed with
//     IngressClasses, Ingresses, Services, EndpointSlices and TLS Secrets:
//     host and path routing, TLS by SNI, round-robin over ready endpoints,
//     HTTP/2 and upgrades, tables swapped atomically on every change.
//   - netpolicy: NetworkPolicy enforced on the node (ingress and egress,
//     pod, namespace and ipBlock peers, port ranges and named ports) in an
//     nftables table of its own, incremental.
//   - nftwriter: the nftables table writer serviceproxy and netpolicy share
//     (structure as one nft transaction through knftables, element-only
//     changes as one netlink batch).
//   - probe: one execution of a liveness/readiness/startup probe (HTTP GET,
//     TCP socket, exec).
//   - sim: a simulated runtime with the same shape as containerd's, whose
//     containers only pretend to run; for scale tests, never the default.
//   - ociimage: OCI images built without a registry (busybox from Debian's
//     busybox-static, cmd/hello), written as OCI archives.
//   - ociregistry: an in-memory OCI registry on 127.0.0.1 that tests push those
//     images to, so the real pull path is exercised.
//   - clusterdns: the cluster DNS server (Kubernetes' DNS specification from an
//     index of Services, EndpointSlices and pods, forwarding with a cache,
//     autopath) and the kubelet's pod resolv.conf.
//   - dataplanetest: the test harness: a containerd of the test's own, a CNI
//     bridge of its own, the registry with the images, and cleanup of all of it.
//
// State that must survive a restart of the node agent lives in containerd
// labels and on disk under the runtime's data directory, never only in memory:
// a new runtime object on the same state adopts what is running.
package dataplane
