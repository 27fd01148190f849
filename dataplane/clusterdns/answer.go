package clusterdns

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// schemaVersion is the version of the Kubernetes DNS specification answered at
// dns-version.<domain> (TXT).
const schemaVersion = "1.1.0"

// reply is the answer to one question in the cluster domain.
type reply struct {
	rcode  int
	answer []dns.RR
	extra  []dns.RR
	soa    bool   // NXDOMAIN or NODATA: the zone's SOA goes in the authority section
	chase  string // an ExternalName's target (fully qualified) to resolve after the CNAME
}

func nxdomain() reply { return reply{rcode: dns.RcodeNameError, soa: true} }
func nodata() reply   { return reply{rcode: dns.RcodeSuccess, soa: true} }

// inZone tells whether lower (a lowercased, fully qualified name) is in the cluster domain,
// and returns the labels left of it ("" for the apex).
func (s *Server) inZone(lower string) (string, bool) {
	if lower == s.domain {
		return "", true
	}
	if len(lower) > len(s.domain) && strings.HasSuffix(lower, s.domain) && lower[len(lower)-len(s.domain)-1] == '.' {
		return lower[:len(lower)-len(s.domain)-1], true
	}
	return "", false
}

// zoneReply answers a question in the cluster domain from the index, as CoreDNS's
// kubernetes plugin does. qname keeps the asker's case for the owner names; base is the
// lowercased part left of the domain.
func (s *Server) zoneReply(qname, base string, qtype uint16) reply {
	if base == "" {
		return s.apexReply(qname, qtype)
	}
	switch base {
	case "dns-version":
		if qtype != dns.TypeTXT && qtype != dns.TypeANY {
			return nodata()
		}
		return reply{answer: []dns.RR{&dns.TXT{Hdr: hdr(qname, dns.TypeTXT, 28800), Txt: []string{schemaVersion}}}}
	case "ns.dns":
		return s.addrReply(qname, qtype, s.nsAddrs)
	case "svc", "pod", "dns":
		return nodata()
	}
	labels := strings.Split(base, ".")
	n := len(labels)
	for _, l := range labels {
		if l == "" {
			return nxdomain()
		}
	}
	kind := labels[n-1]
	if kind != "svc" && kind != "pod" || n < 2 {
		return nxdomain()
	}
	ns := labels[n-2]
	x := s.idx
	x.mu.RLock()
	defer x.mu.RUnlock()
	if n == 2 {
		if x.namespaces[ns] {
			return nodata()
		}
		return nxdomain()
	}
	if kind == "pod" {
		if n != 3 {
			return nxdomain()
		}
		return s.podReply(qname, labels[0], ns, qtype)
	}
	v := x.views[key{ns, labels[n-3]}]
	if v == nil || n > 5 {
		return nxdomain()
	}
	switch n {
	case 3:
		return s.serviceReply(qname, qtype, v)
	case 4:
		return s.endpointReply(qname, qtype, v, labels[0])
	default:
		return s.portReply(qname, qtype, v, strings.TrimPrefix(labels[0], "_"), strings.TrimPrefix(labels[1], "_"))
	}
}

func (s *Server) apexReply(qname string, qtype uint16) reply {
	switch qtype {
	case dns.TypeSOA:
		return reply{answer: []dns.RR{s.soa()}}
	case dns.TypeNS:
		r := reply{answer: []dns.RR{&dns.NS{Hdr: hdr(qname, dns.TypeNS, s.ttl), Ns: s.nsName}}}
		for _, a := range s.nsAddrs {
			r.extra = append(r.extra, addrRR(s.nsName, a, s.ttl))
		}
		return r
	}
	return nodata()
}

// addrReply answers A, AAAA or ANY at a name that has these addresses, NODATA otherwise.
func (s *Server) addrReply(qname string, qtype uint16, addrs []netip.Addr) reply {
	r := reply{}
	for _, a := range addrs {
		if wantAddr(qtype, a) {
			r.answer = append(r.answer, addrRR(qname, a, s.ttl))
		}
	}
	if len(r.answer) == 0 {
		return nodata()
	}
	return r
}

func wantAddr(qtype uint16, a netip.Addr) bool {
	return qtype == dns.TypeANY || qtype == dns.TypeA && a.Is4() || qtype == dns.TypeAAAA && a.Is6()
}

func (s *Server) serviceReply(qname string, qtype uint16, v *view) reply {
	switch v.svc.kind {
	case kindExternal:
		if v.svc.external == "" || strings.EqualFold(v.svc.external, qname) {
			return nxdomain()
		}
		r := reply{answer: []dns.RR{&dns.CNAME{Hdr: hdr(qname, dns.TypeCNAME, s.ttl), Target: v.svc.external}}}
		if qtype != dns.TypeCNAME {
			r.chase = v.svc.external
		}
		return r
	case kindHeadless:
		if len(v.eps) == 0 {
			return nxdomain() // the specification: a headless Service without ready endpoints
		}
		if qtype == dns.TypeSRV {
			return s.srvReply(qname, v, func(port) bool { return true })
		}
		return s.addrReply(qname, qtype, v.addrs)
	}
	if qtype == dns.TypeSRV {
		return s.srvReply(qname, v, func(port) bool { return true })
	}
	return s.addrReply(qname, qtype, v.svc.clusterIPs)
}

func (s *Server) endpointReply(qname string, qtype uint16, v *view, host string) reply {
	if v.svc.kind == kindExternal {
		return nxdomain()
	}
	r, found := reply{}, false
	for _, e := range v.eps {
		if e.hostname != host {
			continue
		}
		found = true
		if wantAddr(qtype, e.addr) {
			r.answer = append(r.answer, addrRR(qname, e.addr, s.ttl))
		}
	}
	if !found {
		return nxdomain()
	}
	if len(r.answer) == 0 {
		return nodata()
	}
	return r
}

func (s *Server) portReply(qname string, qtype uint16, v *view, name, proto string) reply {
	if v.svc.kind == kindExternal || name == "" || proto == "" {
		return nxdomain()
	}
	match := func(p port) bool { return p.name == name && p.proto == proto }
	r := s.srvReply(qname, v, match)
	if len(r.answer) == 0 {
		return nxdomain()
	}
	if qtype != dns.TypeSRV && qtype != dns.TypeANY {
		return nodata()
	}
	return r
}

// srvReply makes the SRV records of a Service for the ports that match: for a Service with
// a cluster IP, one per port pointing at the Service's name, with its addresses in the
// additional section; for a headless one, one per endpoint and port, pointing at the
// endpoint's name, with the endpoint's address in the additional section.
func (s *Server) srvReply(qname string, v *view, match func(port) bool) reply {
	svcName := v.name + "." + v.ns + ".svc." + s.domain
	r := reply{}
	type target struct {
		name string
		port uint16
	}
	seen := map[target]bool{}
	seenAddr := map[string]bool{}
	add := func(name string, p uint16, addr netip.Addr) {
		if t := (target{name, p}); !seen[t] {
			seen[t] = true
			r.answer = append(r.answer, &dns.SRV{Hdr: hdr(qname, dns.TypeSRV, s.ttl), Priority: 0, Port: p, Target: name})
		}
		if k := name + "/" + addr.String(); !seenAddr[k] {
			seenAddr[k] = true
			r.extra = append(r.extra, addrRR(name, addr, s.ttl))
		}
	}
	if v.svc.kind == kindHeadless {
		for _, e := range v.eps {
			for _, p := range e.ports {
				if match(p) {
					add(e.hostname+"."+svcName, p.port, e.addr)
				}
			}
		}
	} else {
		for _, p := range v.svc.ports {
			if !match(p) {
				continue
			}
			for _, ip := range v.svc.clusterIPs {
				add(svcName, p.port, ip)
			}
		}
	}
	if len(r.answer) == 0 {
		return nodata()
	}
	w := uint16(100 / len(r.answer))
	if w == 0 {
		w = 1
	}
	for _, rr := range r.answer {
		rr.(*dns.SRV).Weight = w
	}
	return r
}

// podReply answers "<a-b-c-d>.<ns>.pod.<domain>" (CoreDNS's pods insecure and pods verified).
// Callers hold the read lock.
func (s *Server) podReply(qname, label, ns string, qtype uint16) reply {
	if s.podMode == PodsDisabled || !s.idx.namespaces[ns] {
		return nxdomain()
	}
	var text string
	if strings.Count(label, "-") == 3 && !strings.Contains(label, "--") {
		text = strings.ReplaceAll(label, "-", ".")
	} else {
		text = strings.ReplaceAll(label, "-", ":")
	}
	a, err := netip.ParseAddr(text)
	if err != nil || a.Zone() != "" {
		return nxdomain()
	}
	a = a.Unmap()
	if s.podMode == PodsVerified {
		if p := s.idx.podByIP[a]; p == nil || p.ns != ns {
			return nxdomain()
		}
	}
	return s.addrReply(qname, qtype, []netip.Addr{a})
}

// ptrReply answers a reverse name of a Service's cluster IP (the Service's name) or of an
// endpoint (the endpoint's name under its Service). ok is false for an address the index
// does not know: that question goes upstream.
func (s *Server) ptrReply(qname string, ip netip.Addr) (reply, bool) {
	x := s.idx
	x.mu.RLock()
	defer x.mu.RUnlock()
	refs := x.ptr[ip]
	if len(refs) == 0 {
		return reply{}, false
	}
	var names []string
	for _, ref := range refs {
		if ref.hostname == "" {
			if v := x.views[ref.svc]; v != nil {
				names = []string{v.name + "." + v.ns + ".svc." + s.domain}
				break
			}
		}
	}
	if names == nil {
		seen := map[string]bool{}
		for _, ref := range refs {
			if v := x.views[ref.svc]; v != nil && ref.hostname != "" {
				n := ref.hostname + "." + v.name + "." + v.ns + ".svc." + s.domain
				if !seen[n] {
					seen[n] = true
					names = append(names, n)
				}
			}
		}
	}
	if len(names) == 0 {
		return reply{}, false
	}
	r := reply{}
	for _, n := range names {
		r.answer = append(r.answer, &dns.PTR{Hdr: hdr(qname, dns.TypePTR, s.ttl), Ptr: n})
	}
	return r, true
}

// reverseAddr reads the address of a name in in-addr.arpa or ip6.arpa (lowercased, fully
// qualified).
func reverseAddr(lower string) (netip.Addr, bool) {
	switch {
	case strings.HasSuffix(lower, ".in-addr.arpa."):
		parts := strings.Split(strings.TrimSuffix(lower, ".in-addr.arpa."), ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, p := range parts {
			v, err := strconv.ParseUint(p, 10, 8)
			if err != nil || len(p) > 1 && p[0] == '0' {
				return netip.Addr{}, false
			}
			b[3-i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	case strings.HasSuffix(lower, ".ip6.arpa."):
		parts := strings.Split(strings.TrimSuffix(lower, ".ip6.arpa."), ".")
		if len(parts) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, p := range parts {
			if len(p) != 1 {
				return netip.Addr{}, false
			}
			v, err := strconv.ParseUint(p, 16, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			nib := 31 - i
			if nib%2 == 0 {
				b[nib/2] |= byte(v) << 4
			} else {
				b[nib/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b).Unmap(), true
	}
	return netip.Addr{}, false
}

func (s *Server) soa() dns.RR {
	s.idx.mu.RLock()
	serial := s.idx.serial
	s.idx.mu.RUnlock()
	return &dns.SOA{Hdr: hdr(s.domain, dns.TypeSOA, min(s.ttl, 300)), Ns: s.nsName, Mbox: s.mbox,
		Serial: serial, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: s.ttl}
}

func hdr(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

func addrRR(name string, a netip.Addr, ttl uint32) dns.RR {
	if a.Is4() {
		b := a.As4()
		return &dns.A{Hdr: hdr(name, dns.TypeA, ttl), A: b[:]}
	}
	b := a.As16()
	return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA, ttl), AAAA: b[:]}
}
