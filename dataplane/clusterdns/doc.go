// Package clusterdns is logplane's cluster DNS server: the records of Kubernetes' DNS
// specification (github.com/kubernetes/dns docs/specification.md, schema 1.1.0) answered
// from an in-memory index of Services, EndpointSlices, namespaces and pods, as CoreDNS's
// kubernetes plugin answers them, and every other name forwarded to the host's resolvers
// through a cache that honours TTLs. It also forms pods' resolv.conf as the kubelet does
// (PodResolvConf).
//
// It knows nothing of the log: the node agent feeds it with UpsertService,
// UpsertEndpointSlice, UpsertNamespace, UpsertPod and their Delete counterparts, and serves
// it on listeners it chooses (ServePacket, ServeStream). Queries read the index under a
// read lock; a change recomputes only the Service it touches.
//
// Names under the cluster domain (default cluster.local):
//
//   - <svc>.<ns>.svc: A/AAAA of the cluster IPs; for a headless Service, of each ready
//     endpoint (NXDOMAIN when none is); CNAME to an ExternalName, followed by the target's
//     records; SRV of every port.
//   - <hostname>.<svc>.<ns>.svc: A/AAAA of the endpoint whose hostname (or dashed address)
//     it is (StatefulSet pods: web-0.web.ns.svc).
//   - _<port>._<proto>.<svc>.<ns>.svc: SRV of a named port: to the Service's name, or to each
//     endpoint's name for a headless Service, with the addresses in the additional section.
//   - <a-b-c-d>.<ns>.pod: the address it spells (PodsInsecure), or only a known pod's
//     (PodsVerified).
//   - dns-version: TXT "1.1.0"; the domain itself: SOA and NS.
//   - anything else: NXDOMAIN; a name that exists without the asked type: NODATA. Both
//     carry the domain's SOA in the authority section.
//
// Reverse names of cluster IPs and endpoint addresses answer PTR; other reverse names are
// forwarded. Autopath answers the search path of known pods in one exchange (see
// Config.NoAutopath).
package clusterdns
