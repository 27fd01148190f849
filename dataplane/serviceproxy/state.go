package serviceproxy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// portName names one port of one Service, as kube-proxy's ServicePortName.
type portName struct {
	types.NamespacedName
	Port     string
	Protocol corev1.Protocol
}

func (n portName) String() string {
	return fmt.Sprintf("%s/%s:%s", n.Namespace, n.Name, n.Port)
}

// servicePort is what the rules need of one port of a Service: kube-proxy's
// BaseServicePortInfo, IPv4 only.
type servicePort struct {
	name                portName
	clusterIP           netip.Addr
	port                int32
	protocol            corev1.Protocol
	nodePort            int32
	externalIPs         []netip.Addr
	loadBalancerVIPs    []netip.Addr
	sourceRanges        []netip.Prefix
	affinityClientIP    bool
	affinityTimeout     int32
	externalPolicyLocal bool
	internalPolicyLocal bool
}

// externallyAccessible: reachable by something other than its cluster IP.
func (s *servicePort) externallyAccessible() bool {
	return s.nodePort != 0 || len(s.loadBalancerVIPs) > 0 || len(s.externalIPs) > 0
}

// usesClusterEndpoints: the port ever sends traffic by the Cluster policy
// (external traffic with policy Local still needs them to short-circuit
// traffic from pods and from the node).
func (s *servicePort) usesClusterEndpoints() bool {
	return !s.internalPolicyLocal || s.externallyAccessible()
}

func (s *servicePort) usesLocalEndpoints() bool {
	return s.internalPolicyLocal || (s.externalPolicyLocal && s.externallyAccessible())
}

func (s *servicePort) proto() string { return strings.ToLower(string(s.protocol)) }

// servicePorts derives the ports kube-proxy would program for svc: none for
// headless and ExternalName Services or ones without an IPv4 cluster IP.
func servicePorts(svc *corev1.Service) map[portName]*servicePort {
	if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil
	}
	clusterIP := ipv4Of(append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...))
	if !clusterIP.IsValid() {
		return nil
	}
	accessible := svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort ||
		(svc.Spec.Type == corev1.ServiceTypeClusterIP && len(svc.Spec.ExternalIPs) > 0)
	externalLocal := accessible && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	internalLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	var timeout int32
	affinity := svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP
	if affinity {
		timeout = corev1.DefaultClientIPServiceAffinitySeconds
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			timeout = *c.ClientIP.TimeoutSeconds
		}
	}
	var externalIPs, vips []netip.Addr
	for _, s := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			externalIPs = append(externalIPs, a)
		}
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" || (ing.IPMode != nil && *ing.IPMode != corev1.LoadBalancerIPModeVIP) {
			continue // proxy-mode load balancers deliver to the node, not to the VIP
		}
		if a, err := netip.ParseAddr(ing.IP); err == nil && a.Is4() {
			vips = append(vips, a)
		}
	}
	var ranges []netip.Prefix
	for _, r := range svc.Spec.LoadBalancerSourceRanges {
		if p, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil && p.Addr().Is4() {
			ranges = append(ranges, p.Masked())
		}
	}
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	out := make(map[portName]*servicePort, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		n := portName{NamespacedName: nn, Port: p.Name, Protocol: proto}
		out[n] = &servicePort{
			name:                n,
			clusterIP:           clusterIP,
			port:                p.Port,
			protocol:            proto,
			nodePort:            p.NodePort,
			externalIPs:         externalIPs,
			loadBalancerVIPs:    vips,
			sourceRanges:        ranges,
			affinityClientIP:    affinity,
			affinityTimeout:     timeout,
			externalPolicyLocal: externalLocal,
			internalPolicyLocal: internalLocal,
		}
	}
	return out
}

func ipv4Of(ips []string) netip.Addr {
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// endpoint is one address and port of a Service port, as kube-proxy's
// BaseEndpointInfo.
type endpoint struct {
	addr        netip.Addr
	port        int32
	nodeName    string
	local       bool
	ready       bool
	serving     bool
	terminating bool
}

func (e *endpoint) String() string { return netip.AddrPortFrom(e.addr, uint16(e.port)).String() }

// sliceInfo is what the rules need of one EndpointSlice: its ports and
// endpoints, sorted, so that two equal slices compare equal.
type sliceInfo struct {
	ports     []sliceInfoPort
	endpoints []sliceInfoEndpoint
}

type sliceInfoPort struct {
	name     string
	port     int32
	protocol corev1.Protocol
}

type sliceInfoEndpoint struct {
	addr        netip.Addr
	nodeName    string
	ready       bool
	serving     bool
	terminating bool
}

// newSliceInfo keeps of slice what kube-proxy's endpointSliceCache keeps.
// Only IPv4 slices count (kube-proxy filters by address family too).
func newSliceInfo(slice *discoveryv1.EndpointSlice) *sliceInfo {
	si := &sliceInfo{}
	if slice.AddressType != discoveryv1.AddressTypeIPv4 {
		return si
	}
	for _, p := range slice.Ports {
		if p.Name == nil || p.Port == nil || *p.Port == 0 {
			continue // kube-proxy ignores ports without a name field or a number
		}
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		si.ports = append(si.ports, sliceInfoPort{name: *p.Name, port: *p.Port, protocol: proto})
	}
	sort.Slice(si.ports, func(i, j int) bool { return si.ports[i].port < si.ports[j].port })
	for _, ep := range slice.Endpoints {
		if len(ep.Addresses) == 0 {
			continue
		}
		a, err := netip.ParseAddr(ep.Addresses[0])
		if err != nil || !a.Is4() {
			continue
		}
		e := sliceInfoEndpoint{
			addr:        a,
			ready:       ep.Conditions.Ready == nil || *ep.Conditions.Ready,
			serving:     ep.Conditions.Serving == nil || *ep.Conditions.Serving,
			terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating,
		}
		if ep.NodeName != nil {
			e.nodeName = *ep.NodeName
		}
		si.endpoints = append(si.endpoints, e)
	}
	sort.Slice(si.endpoints, func(i, j int) bool { return si.endpoints[i].addr.Less(si.endpoints[j].addr) })
	return si
}

// endpointsByPort merges a Service's slices into its endpoints per port,
// deduplicated by address and port (a local copy wins), sorted, as
// kube-proxy's endpointSliceCache.endpointInfoByServicePort.
func endpointsByPort(nn types.NamespacedName, slices map[string]*sliceInfo, nodeName string) map[portName][]*endpoint {
	sets := map[portName]map[netip.AddrPort]*endpoint{}
	for _, si := range slices {
		for _, p := range si.ports {
			n := portName{NamespacedName: nn, Port: p.name, Protocol: p.protocol}
			set := sets[n]
			if set == nil {
				set = map[netip.AddrPort]*endpoint{}
				sets[n] = set
			}
			for _, se := range si.endpoints {
				local := nodeName != "" && se.nodeName == nodeName
				key := netip.AddrPortFrom(se.addr, uint16(p.port))
				if _, ok := set[key]; ok && !local {
					continue
				}
				set[key] = &endpoint{
					addr: se.addr, port: p.port, nodeName: se.nodeName, local: local,
					ready: se.ready, serving: se.serving, terminating: se.terminating,
				}
			}
		}
	}
	out := make(map[portName][]*endpoint, len(sets))
	for n, set := range sets {
		if len(set) == 0 {
			continue
		}
		eps := make([]*endpoint, 0, len(set))
		for _, e := range set {
			eps = append(eps, e)
		}
		sort.Slice(eps, func(i, j int) bool {
			if eps[i].addr != eps[j].addr {
				return eps[i].addr.Less(eps[j].addr)
			}
			return eps[i].port < eps[j].port
		})
		out[n] = eps
	}
	return out
}

// categorize is kube-proxy's CategorizeEndpoints without topology hints:
// the endpoints of the Cluster policy (ready ones, else serving-terminating
// ones), of the Local policy (local ready ones, else local
// serving-terminating ones), all that this node can reach, and whether the
// Service has usable endpoints anywhere.
func categorize(eps []*endpoint, sp *servicePort) (cluster, local, reachable []*endpoint, hasAny bool) {
	if len(eps) == 0 {
		return nil, nil, nil, false
	}
	useServingTerminating := false
	if sp.usesClusterEndpoints() {
		cluster = filter(eps, func(e *endpoint) bool { return e.ready })
		if len(cluster) == 0 {
			cluster = filter(eps, func(e *endpoint) bool { return e.serving && e.terminating })
		}
		hasAny = len(cluster) > 0
	}
	if !sp.usesLocalEndpoints() {
		return cluster, nil, cluster, hasAny
	}
	var localReady, localServingTerminating bool
	for _, e := range eps {
		if e.ready {
			hasAny = true
			localReady = localReady || e.local
		} else if e.serving && e.terminating {
			hasAny = true
			localServingTerminating = localServingTerminating || e.local
		}
	}
	if localReady {
		local = filter(eps, func(e *endpoint) bool { return e.local && e.ready })
	} else if localServingTerminating {
		useServingTerminating = true
		local = filter(eps, func(e *endpoint) bool { return e.local && e.serving && e.terminating })
	}
	if !sp.usesClusterEndpoints() {
		return nil, local, local, hasAny
	}
	if !useServingTerminating {
		// local holds only ready endpoints, all of which are in cluster.
		return cluster, local, cluster, hasAny
	}
	seen := map[string]*endpoint{}
	for _, e := range cluster {
		seen[e.String()] = e
	}
	for _, e := range local {
		seen[e.String()] = e
	}
	for _, e := range seen {
		reachable = append(reachable, e)
	}
	sort.Slice(reachable, func(i, j int) bool { return reachable[i].String() < reachable[j].String() })
	return cluster, local, reachable, hasAny
}

func filter(eps []*endpoint, keep func(*endpoint) bool) []*endpoint {
	out := make([]*endpoint, 0, len(eps))
	for _, e := range eps {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}
