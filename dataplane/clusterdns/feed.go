package clusterdns

import (
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// UpsertService adds or replaces a Service. Its records are answered from the next query on.
func (s *Server) UpsertService(svc *corev1.Service) {
	k := keyOf(svc.Namespace, svc.Name)
	v := serviceOf(svc)
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	x.services[k] = v
	x.origNames[k] = [2]string{svc.Namespace, svc.Name}
	x.rebuild(k)
	x.touch(s)
}

// DeleteService forgets a Service; its EndpointSlices are kept until they are deleted too.
func (s *Server) DeleteService(namespace, name string) {
	k := keyOf(namespace, name)
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.services, k)
	delete(x.origNames, k)
	x.rebuild(k)
	x.touch(s)
}

// UpsertEndpointSlice adds or replaces an EndpointSlice. It belongs to the Service named by
// its kubernetes.io/service-name label; endpoints whose ready condition is false are
// published only for a Service with publishNotReadyAddresses (or the
// tolerate-unready-endpoints annotation), and a nil ready condition counts as ready. An
// endpoint's name under its Service is its hostname, or its first address with dashes.
func (s *Server) UpsertEndpointSlice(es *discoveryv1.EndpointSlice) {
	sk := keyOf(es.Namespace, es.Name)
	sl := sliceOf(es)
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	if old := x.slices[sk]; old != nil && old.service != sl.service {
		x.removeSlice(sk, old)
	}
	x.slices[sk] = sl
	m := x.bySvc[sl.service]
	if m == nil {
		m = map[string]*slice{}
		x.bySvc[sl.service] = m
	}
	m[sk.name] = sl
	x.rebuild(sl.service)
	x.touch(s)
}

// DeleteEndpointSlice forgets an EndpointSlice.
func (s *Server) DeleteEndpointSlice(namespace, name string) {
	sk := keyOf(namespace, name)
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	if old := x.slices[sk]; old != nil {
		x.removeSlice(sk, old)
		x.touch(s)
	}
}

func (x *index) removeSlice(sk key, old *slice) {
	delete(x.slices, sk)
	if m := x.bySvc[old.service]; m != nil {
		delete(m, sk.name)
		if len(m) == 0 {
			delete(x.bySvc, old.service)
		}
	}
	x.rebuild(old.service)
}

// UpsertNamespace records that a namespace exists: "<ns>.svc.<domain>" then answers NODATA
// rather than NXDOMAIN, and pod names in it are answered (see PodMode). Service names do not
// depend on it.
func (s *Server) UpsertNamespace(name string) {
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	x.namespaces[strings.ToLower(name)] = true
	x.touch(s)
}

// DeleteNamespace forgets a namespace.
func (s *Server) DeleteNamespace(name string) {
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.namespaces, strings.ToLower(name))
	x.touch(s)
}

// UpsertPod records a pod's addresses (status.podIPs) with its namespace and the search
// path its resolv.conf has (PodResolvConf with this server's domain and host search
// domains). Queries from those addresses are then answered with autopath, and PodsVerified
// answers their pod names. hostNetwork pods are not recorded: their address is the node's.
func (s *Server) UpsertPod(p *corev1.Pod) {
	k := keyOf(p.Namespace, p.Name)
	np := &pod{key: k, ns: strings.ToLower(p.Namespace)}
	if !p.Spec.HostNetwork {
		ips := p.Status.PodIPs
		if len(ips) == 0 && p.Status.PodIP != "" {
			ips = []corev1.PodIP{{IP: p.Status.PodIP}}
		}
		for _, ip := range ips {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				np.ips = append(np.ips, a.Unmap())
			}
		}
	}
	np.searches = s.podSearches(p)
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropPod(k)
	if len(np.ips) == 0 {
		return
	}
	x.pods[k] = np
	for _, ip := range np.ips {
		x.podByIP[ip] = np
	}
}

// DeletePod forgets a pod.
func (s *Server) DeletePod(namespace, name string) {
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropPod(keyOf(namespace, name))
}

func (x *index) dropPod(k key) {
	old := x.pods[k]
	if old == nil {
		return
	}
	delete(x.pods, k)
	for _, ip := range old.ips {
		if x.podByIP[ip] == old {
			delete(x.podByIP, ip)
		}
	}
}

// podSearches is the pod's search path when autopath can serve it: it must start with the
// pod's own "<ns>.svc.<domain>", which only ClusterFirst pods have.
func (s *Server) podSearches(p *corev1.Pod) []string {
	rc, _, err := PodResolvConf(p, NodeDNS{ClusterDNS: []string{"cluster"}, ClusterDomain: s.domainNoDot,
		Host: ResolvConf{Searches: s.hostSearch}, HostResolvConf: true})
	if err != nil || len(rc.Searches) == 0 {
		return nil // an unknown policy: the kubelet's fallback is ours to guess, so no autopath
	}
	out := make([]string, 0, len(rc.Searches))
	for _, d := range rc.Searches {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d == "" {
			continue
		}
		out = append(out, d+".")
	}
	if len(out) == 0 || out[0] != strings.ToLower(p.Namespace)+".svc."+s.domain {
		return nil
	}
	return out
}

// touch moves the SOA serial on. Callers hold mu.
func (x *index) touch(s *Server) {
	x.serial = uint32(s.clock.Now().Unix())
}
