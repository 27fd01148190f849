package clusterdns

import (
	"net/netip"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// tolerateUnreadyAnnotation is the annotation the DNS specification still honours: a
// Service carrying it with "true" publishes endpoints that are not ready.
const tolerateUnreadyAnnotation = "service.alpha.kubernetes.io/tolerate-unready-endpoints"

// key names a namespaced object, both parts lowercased (DNS compares names without case).
type key struct{ ns, name string }

func keyOf(ns, name string) key { return key{strings.ToLower(ns), strings.ToLower(name)} }

type svcKind int

const (
	kindClusterIP svcKind = iota
	kindHeadless
	kindExternal
)

type port struct {
	name  string // lowercased
	proto string // lowercased
	port  uint16
}

// service is what the answers need of a Service.
type service struct {
	kind            svcKind
	external        string // fully qualified, for kindExternal ("" when the name is an IP)
	clusterIPs      []netip.Addr
	ports           []port
	publishNotReady bool
}

// endpoint is one endpoint of one EndpointSlice.
type endpoint struct {
	hostname string // lowercased; the endpoint's hostname, or its first address with dashes
	addrs    []netip.Addr
	ready    bool
}

type slice struct {
	service   key
	ports     []port
	endpoints []endpoint
}

// view is a Service joined with its EndpointSlices: what one query reads.
type view struct {
	ns, name string // as the Service spells them
	svc      *service
	eps      []viewEndpoint // the endpoints DNS publishes (ready, or all with publishNotReady)
	addrs    []netip.Addr   // their addresses, each once
}

type viewEndpoint struct {
	hostname string
	addr     netip.Addr
	ports    []port // the ports of the slice it came from
}

type pod struct {
	key      key
	ns       string
	ips      []netip.Addr
	searches []string // the pod's search path, fully qualified and lowercased; nil: no autopath
}

type ptrRef struct {
	svc      key
	hostname string // "" for a cluster IP
}

// index holds everything the server answers from. Readers take the read lock; writers
// recompute the few views a change touches.
type index struct {
	mu         sync.RWMutex
	services   map[key]*service
	origNames  map[key][2]string
	slices     map[key]*slice            // by slice namespace/name
	bySvc      map[key]map[string]*slice // slices by the Service they belong to
	views      map[key]*view
	ptr        map[netip.Addr][]ptrRef
	namespaces map[string]bool
	pods       map[key]*pod
	podByIP    map[netip.Addr]*pod
	serial     uint32
}

func newIndex() *index {
	return &index{
		services: map[key]*service{}, origNames: map[key][2]string{}, slices: map[key]*slice{},
		bySvc: map[key]map[string]*slice{}, views: map[key]*view{}, ptr: map[netip.Addr][]ptrRef{},
		namespaces: map[string]bool{}, pods: map[key]*pod{}, podByIP: map[netip.Addr]*pod{},
	}
}

func serviceOf(s *corev1.Service) *service {
	out := &service{publishNotReady: s.Spec.PublishNotReadyAddresses || s.Annotations[tolerateUnreadyAnnotation] == "true"}
	switch {
	case s.Spec.Type == corev1.ServiceTypeExternalName:
		out.kind = kindExternal
		name := strings.TrimSuffix(s.Spec.ExternalName, ".")
		if _, err := netip.ParseAddr(name); err != nil && name != "" {
			out.external = name + "."
		}
		// An ExternalName that is an IP address gets no record, as in CoreDNS.
	case s.Spec.ClusterIP == corev1.ClusterIPNone:
		out.kind = kindHeadless
	default:
		ips := s.Spec.ClusterIPs
		if len(ips) == 0 && s.Spec.ClusterIP != "" {
			ips = []string{s.Spec.ClusterIP}
		}
		for _, ip := range ips {
			if a, err := netip.ParseAddr(ip); err == nil {
				out.clusterIPs = append(out.clusterIPs, a.Unmap())
			}
		}
	}
	for _, p := range s.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		if p.Port > 0 && p.Port < 65536 {
			out.ports = append(out.ports, port{name: strings.ToLower(p.Name), proto: strings.ToLower(proto), port: uint16(p.Port)})
		}
	}
	return out
}

func sliceOf(s *discoveryv1.EndpointSlice) *slice {
	out := &slice{service: keyOf(s.Namespace, s.Labels[discoveryv1.LabelServiceName])}
	for _, p := range s.Ports {
		if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			continue
		}
		np := port{port: uint16(*p.Port), proto: "tcp"}
		if p.Name != nil {
			np.name = strings.ToLower(*p.Name)
		}
		if p.Protocol != nil {
			np.proto = strings.ToLower(string(*p.Protocol))
		}
		out.ports = append(out.ports, np)
	}
	for _, e := range s.Endpoints {
		ep := endpoint{ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
		for _, a := range e.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				ep.addrs = append(ep.addrs, ip.Unmap())
			}
		}
		if len(ep.addrs) == 0 {
			continue
		}
		if e.Hostname != nil && *e.Hostname != "" {
			ep.hostname = strings.ToLower(*e.Hostname)
		} else {
			ep.hostname = dashed(ep.addrs[0])
		}
		out.endpoints = append(out.endpoints, ep)
	}
	return out
}

// dashed is the name CoreDNS gives an endpoint without a hostname: its address with dashes
// ("10-244-0-5", "fd00--5" → "fd00--5"; a trailing dash gets a 0).
func dashed(a netip.Addr) string {
	s := a.String()
	if a.Is4() {
		return strings.ReplaceAll(s, ".", "-")
	}
	s = strings.ReplaceAll(s, ":", "-")
	if strings.HasSuffix(s, "-") {
		s += "0"
	}
	return s
}

// rebuild recomputes the view of one Service and its reverse records. Callers hold mu.
func (x *index) rebuild(k key) {
	if old := x.views[k]; old != nil {
		x.dropPTR(k, old)
		delete(x.views, k)
	}
	svc := x.services[k]
	if svc == nil {
		return
	}
	names := x.origNames[k]
	v := &view{ns: names[0], name: names[1], svc: svc}
	if svc.kind != kindExternal {
		for _, sl := range x.bySvc[k] {
			for _, e := range sl.endpoints {
				if !e.ready && !svc.publishNotReady {
					continue
				}
				for _, a := range e.addrs {
					v.eps = append(v.eps, viewEndpoint{hostname: e.hostname, addr: a, ports: sl.ports})
				}
			}
		}
	}
	seen := map[netip.Addr]bool{}
	for _, e := range v.eps {
		if !seen[e.addr] {
			seen[e.addr] = true
			v.addrs = append(v.addrs, e.addr)
		}
	}
	x.views[k] = v
	for _, ip := range svc.clusterIPs {
		x.ptr[ip] = append(x.ptr[ip], ptrRef{svc: k})
	}
	for _, e := range v.eps {
		x.ptr[e.addr] = append(x.ptr[e.addr], ptrRef{svc: k, hostname: e.hostname})
	}
}

func (x *index) dropPTR(k key, v *view) {
	drop := func(ip netip.Addr) {
		refs := x.ptr[ip]
		kept := refs[:0]
		for _, r := range refs {
			if r.svc != k {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 {
			delete(x.ptr, ip)
		} else {
			x.ptr[ip] = kept
		}
	}
	for _, ip := range v.svc.clusterIPs {
		drop(ip)
	}
	for _, e := range v.eps {
		drop(e.addr)
	}
}
