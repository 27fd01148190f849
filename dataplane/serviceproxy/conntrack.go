package serviceproxy

import (
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// staleFlow selects UDP conntrack entries that would keep sending a
// Service's traffic where it must not go any more: to dst:dport (any dst
// when dst is invalid) whose replies come from replySrc (any when invalid).
type staleFlow struct {
	dst      netip.Addr
	dport    uint16
	replySrc netip.AddrPort
}

// staleFlows is kube-proxy's conntrack.CleanStaleEntries for UDP: UDP has
// no connection to end, so a flow to a Service keeps its DNAT to an endpoint
// that is gone, and one to a Service port that had no endpoint keeps
// going nowhere, until conntrack forgets it. TCP needs none of this.
func staleFlows(old, current []*programmed) []staleFlow {
	now := map[portName]*programmed{}
	for _, pr := range current {
		now[pr.sp.name] = pr
	}
	var out []staleFlow
	addrs := func(sp *servicePort) []netip.Addr {
		return append(append([]netip.Addr{sp.clusterIP}, sp.externalIPs...), sp.loadBalancerVIPs...)
	}
	for _, pr := range old {
		if pr.sp.protocol != corev1.ProtocolUDP {
			continue
		}
		cur := now[pr.sp.name]
		for ep := range pr.reachable {
			if cur != nil && cur.reachable[ep] {
				continue
			}
			for _, a := range addrs(pr.sp) {
				out = append(out, staleFlow{dst: a, dport: uint16(pr.sp.port), replySrc: ep})
			}
			if pr.sp.nodePort != 0 {
				out = append(out, staleFlow{dport: uint16(pr.sp.nodePort), replySrc: ep})
			}
		}
	}
	had := map[portName]bool{}
	for _, pr := range old {
		had[pr.sp.name] = len(pr.reachable) > 0
	}
	for _, pr := range current {
		if pr.sp.protocol != corev1.ProtocolUDP || len(pr.reachable) == 0 || had[pr.sp.name] {
			continue
		}
		for _, a := range addrs(pr.sp) {
			out = append(out, staleFlow{dst: a, dport: uint16(pr.sp.port)})
		}
		if pr.sp.nodePort != 0 {
			out = append(out, staleFlow{dport: uint16(pr.sp.nodePort)})
		}
	}
	return out
}

type staleFilter []staleFlow

func (f staleFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst, _ := netip.AddrFromSlice(flow.Forward.DstIP.To4())
	src, _ := netip.AddrFromSlice(flow.Reverse.SrcIP.To4())
	reply := netip.AddrPortFrom(src, flow.Reverse.SrcPort)
	for _, s := range f {
		if s.dport != flow.Forward.DstPort || (s.dst.IsValid() && s.dst != dst) || (s.replySrc.IsValid() && s.replySrc != reply) {
			continue
		}
		return true
	}
	return false
}

func deleteStaleFlows(flows []staleFlow) error {
	_, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, staleFilter(flows))
	return err
}
