package netpolicy

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The table's fixed objects.
const (
	ingressChain     = "ingress"
	egressChain      = "egress"
	ingressPolicies  = "ingress-policies"
	egressPolicies   = "egress-policies"
	ingressIsolated  = "ingress-isolated"
	egressIsolated   = "egress-isolated"
	addressType      = "ipv4_addr"
	namedPortSetType = "ipv4_addr . inet_proto . inet_service"
)

// podInfo is what policies need of a pod.
type podInfo struct {
	namespace string
	labels    labels.Set
	ips       []string
	ports     []namedPort // its containers' named ports
}

// namedPort is a container port with a name.
type namedPort struct {
	name     string
	protocol string // tcp, udp, sctp
	port     int32
}

func newPodInfo(pod *corev1.Pod) *podInfo {
	if pod.Spec.HostNetwork || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	pi := &podInfo{namespace: pod.Namespace, labels: labels.Set(pod.Labels)}
	for _, ip := range pod.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
			pi.ips = append(pi.ips, a.String())
		}
	}
	if len(pi.ips) == 0 && pod.Status.PodIP != "" {
		if a, err := netip.ParseAddr(pod.Status.PodIP); err == nil && a.Is4() {
			pi.ips = append(pi.ips, a.String())
		}
	}
	if len(pi.ips) == 0 {
		return nil
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name != "" {
				pi.ports = append(pi.ports, namedPort{name: p.Name, protocol: protocol(p.Protocol), port: p.ContainerPort})
			}
		}
	}
	return pi
}

func protocol(p corev1.Protocol) string {
	if p == "" {
		return "tcp"
	}
	return strings.ToLower(string(p))
}

// compiled is a NetworkPolicy made into nftables objects: a chain per
// direction it isolates, the sets that pods fill, and its rules.
type compiled struct {
	namespace, name string
	id              uint64
	selector        labels.Selector
	ingress, egress bool
	in, out         []*rule
	// chains maps each of its chains to its rules (nft text after
	// "add rule ip TABLE CHAIN").
	chains map[string][]string
	// sets maps each of its sets to its type. Sets are named after what
	// they hold (setName), so policies that select the same pods share
	// them.
	sets   map[string]string
	selSet string
}

// rule is one ingress or egress rule.
type rule struct {
	all      bool // no peers: every address
	peers    []peer
	podSet   string    // the pods that are peers ("" when no peer selects pods)
	ranges   []ipRange // the ipBlocks, excepts taken out
	ports    []portRange
	named    []namedPort // named ports (port 0)
	namedSet string      // the (address, protocol, port) of the pods with them
	ingress  bool
}

// portRange is a protocol's ports lo to hi.
type portRange struct {
	protocol string
	lo, hi   uint32
}

// peer is a NetworkPolicyPeer that selects pods: in the policy's
// namespace when namespaces is nil.
type peer struct {
	pods       labels.Selector
	namespaces labels.Selector
}

func (c *compiled) sel() string { return c.selSet }

// setName names a set after what it holds (key): policies whose
// selectors are the same share it.
func setName(key string) string {
	h := fnv.New64a()
	h.Write([]byte(key))
	return fmt.Sprintf("s-%016x", h.Sum64())
}

// String is a peer's canonical form, for set names.
func (p peer) String() string {
	ns := "="
	if p.namespaces != nil {
		ns = "~" + p.namespaces.String()
	}
	return "pods:" + p.pods.String() + ";ns" + ns
}

// compile makes np into nftables objects named after id.
func compile(np *networkingv1.NetworkPolicy, id uint64) (*compiled, error) {
	c := &compiled{namespace: np.Namespace, name: np.Name, id: id, chains: map[string][]string{}, sets: map[string]string{}}
	var err error
	if c.selector, err = metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err != nil {
		return nil, fmt.Errorf("podSelector: %w", err)
	}
	// As the API defaults policyTypes.
	if len(np.Spec.PolicyTypes) == 0 {
		c.ingress, c.egress = true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			c.ingress = true
		case networkingv1.PolicyTypeEgress:
			c.egress = true
		}
	}
	c.selSet = setName("sel|" + np.Namespace + "|" + c.selector.String())
	c.sets[c.selSet] = addressType
	if c.ingress {
		chain := fmt.Sprintf("p%d-in", id)
		c.chains[chain] = nil
		for i, r := range np.Spec.Ingress {
			cr, err := c.compileRule(r.From, r.Ports, true)
			if err != nil {
				return nil, fmt.Errorf("ingress[%d]: %w", i, err)
			}
			c.in = append(c.in, cr)
			c.chains[chain] = append(c.chains[chain], cr.rules()...)
		}
	}
	if c.egress {
		chain := fmt.Sprintf("p%d-out", id)
		c.chains[chain] = nil
		for i, r := range np.Spec.Egress {
			cr, err := c.compileRule(r.To, r.Ports, false)
			if err != nil {
				return nil, fmt.Errorf("egress[%d]: %w", i, err)
			}
			c.out = append(c.out, cr)
			c.chains[chain] = append(c.chains[chain], cr.rules()...)
		}
	}
	return c, nil
}

func (c *compiled) compileRule(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, ingress bool) (*rule, error) {
	r := &rule{all: len(peers) == 0, ingress: ingress}
	var blocks []ipRange
	for i, p := range peers {
		if p.IPBlock != nil {
			rs, err := blockRanges(p.IPBlock)
			if err != nil {
				return nil, fmt.Errorf("peer %d: %w", i, err)
			}
			blocks = append(blocks, rs...)
			continue
		}
		if p.PodSelector == nil && p.NamespaceSelector == nil {
			continue // invalid; validation refuses it
		}
		var pe peer
		var err error
		pe.pods = labels.Everything()
		if p.PodSelector != nil {
			if pe.pods, err = metav1.LabelSelectorAsSelector(p.PodSelector); err != nil {
				return nil, fmt.Errorf("peer %d: podSelector: %w", i, err)
			}
		}
		if p.NamespaceSelector != nil {
			if pe.namespaces, err = metav1.LabelSelectorAsSelector(p.NamespaceSelector); err != nil {
				return nil, fmt.Errorf("peer %d: namespaceSelector: %w", i, err)
			}
		}
		r.peers = append(r.peers, pe)
	}
	r.ranges = mergeRanges(blocks)
	var peerKeys []string
	for _, p := range r.peers {
		peerKeys = append(peerKeys, p.String())
	}
	slices.Sort(peerKeys)
	peersKey := c.namespace + "|" + strings.Join(peerKeys, "|")
	if len(r.peers) > 0 {
		r.podSet = setName("peers|" + peersKey)
		c.sets[r.podSet] = addressType
	}
	byProto := map[string][]ipRange{}
	for _, p := range ports {
		proto := "tcp"
		if p.Protocol != nil {
			proto = protocol(*p.Protocol)
		}
		switch {
		case p.Port == nil:
			byProto[proto] = append(byProto[proto], ipRange{0, 65535})
		case p.Port.Type == intstr.String:
			r.named = append(r.named, namedPort{name: p.Port.StrVal, protocol: proto})
		default:
			lo := uint32(p.Port.IntVal)
			hi := lo
			if p.EndPort != nil && uint32(*p.EndPort) >= lo {
				hi = uint32(*p.EndPort)
			}
			byProto[proto] = append(byProto[proto], ipRange{lo, hi})
		}
	}
	for _, proto := range slices.Sorted(mapKeys(byProto)) {
		for _, pr := range mergeRanges(byProto[proto]) {
			r.ports = append(r.ports, portRange{proto, pr.lo, pr.hi})
		}
	}
	if len(r.named) > 0 {
		var names []string
		for _, n := range r.named {
			names = append(names, n.protocol+"/"+n.name)
		}
		slices.Sort(names)
		// The ingress set holds the selected pods' ports, the egress one
		// the peers'.
		key := "in|" + c.selSet + "|" + strings.Join(names, ",")
		if !ingress {
			key = fmt.Sprintf("out|%t|%s|%s|%s", r.all, peersKey, rangesText(r.ranges), strings.Join(names, ","))
		}
		r.namedSet = setName(key)
		c.sets[r.namedSet] = namedPortSetType
	}
	return r, nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// rules are the rule's nft rules: any peer match with any port match. A
// named port is matched with the destination's address (the selected pod
// for ingress, the peer for egress), so for egress its set holds only the
// peers (see contributions) and needs no peer match of its own.
func (r *rule) rules() []string {
	addr := "ip saddr"
	if !r.ingress {
		addr = "ip daddr"
	}
	var peerMatches []string
	if r.all {
		peerMatches = []string{""}
	} else {
		if r.podSet != "" {
			peerMatches = append(peerMatches, addr+" @"+r.podSet+" ")
		}
		// A few ranges or ports are rules of their own rather than an
		// anonymous set: nft fetches every set of the table (anonymous
		// ones too) before it writes a rule, so fewer sets make every
		// policy change cheaper.
		if len(r.ranges) > maxExpanded {
			peerMatches = append(peerMatches, addr+" "+rangesText(r.ranges)+" ")
		} else {
			for _, rg := range r.ranges {
				peerMatches = append(peerMatches, addr+" "+rangeText(rg)+" ")
			}
		}
	}
	var portMatches []string
	if len(r.ports) == 0 && len(r.named) == 0 {
		portMatches = []string{""}
	} else if len(r.ports) > maxExpanded {
		var elems []string
		for _, p := range r.ports {
			if p.lo == p.hi {
				elems = append(elems, fmt.Sprintf("%s . %d", p.protocol, p.lo))
			} else {
				elems = append(elems, fmt.Sprintf("%s . %d-%d", p.protocol, p.lo, p.hi))
			}
		}
		portMatches = append(portMatches, "meta l4proto . th dport { "+strings.Join(elems, ", ")+" } ")
	} else {
		for _, p := range r.ports {
			switch {
			case p.lo == 0 && p.hi == 65535:
				portMatches = append(portMatches, "meta l4proto "+p.protocol+" ")
			case p.lo == p.hi:
				portMatches = append(portMatches, fmt.Sprintf("%s dport %d ", p.protocol, p.lo))
			default:
				portMatches = append(portMatches, fmt.Sprintf("%s dport %d-%d ", p.protocol, p.lo, p.hi))
			}
		}
	}
	var out []string
	for _, pm := range peerMatches {
		for _, port := range portMatches {
			out = append(out, pm+port+"accept")
		}
		if r.namedSet != "" && r.ingress {
			out = append(out, pm+"ip daddr . meta l4proto . th dport @"+r.namedSet+" accept")
		}
	}
	if r.namedSet != "" && !r.ingress {
		out = append(out, "ip daddr . meta l4proto . th dport @"+r.namedSet+" accept")
	}
	return out
}

// matches says whether pod is one of the rule's pod peers.
func (r *rule) matches(policyNS string, pod *podInfo, nsLabels labels.Set) bool {
	for _, p := range r.peers {
		if p.namespaces == nil {
			if pod.namespace != policyNS {
				continue
			}
		} else if !p.namespaces.Matches(nsLabels) {
			continue
		}
		if p.pods.Matches(pod.labels) {
			return true
		}
	}
	return false
}

// elemRef is one element of one set.
type elemRef struct{ set, key string }

// contributions are the elements pod brings to c's sets (and to the
// isolation sets), appended to out.
func (c *compiled) contributions(pod *podInfo, nsLabels labels.Set, out []elemRef) []elemRef {
	selected := pod.namespace == c.namespace && c.selector.Matches(pod.labels)
	for _, ip := range pod.ips {
		if selected {
			out = append(out, elemRef{c.sel(), ip})
			if c.ingress {
				out = append(out, elemRef{ingressIsolated, ip})
			}
			if c.egress {
				out = append(out, elemRef{egressIsolated, ip})
			}
		}
	}
	for _, r := range c.in {
		peer := r.podSet != "" && r.matches(c.namespace, pod, nsLabels)
		for _, ip := range pod.ips {
			if peer {
				out = append(out, elemRef{r.podSet, ip})
			}
			if selected {
				out = r.namedElements(pod, ip, out)
			}
		}
	}
	for _, r := range c.out {
		peer := r.podSet != "" && r.matches(c.namespace, pod, nsLabels)
		for _, ip := range pod.ips {
			if peer {
				out = append(out, elemRef{r.podSet, ip})
			}
			if r.namedSet != "" && (r.all || peer || inRanges(r.ranges, ip)) {
				out = r.namedElements(pod, ip, out)
			}
		}
	}
	return out
}

func (r *rule) namedElements(pod *podInfo, ip string, out []elemRef) []elemRef {
	for _, n := range r.named {
		for _, p := range pod.ports {
			if p.name == n.name && p.protocol == n.protocol {
				out = append(out, elemRef{r.namedSet, ip + " . " + p.protocol + " . " + strconv.Itoa(int(p.port))})
			}
		}
	}
	return out
}

// ipRange is an inclusive range of IPv4 addresses (or ports).
type ipRange struct{ lo, hi uint32 }

func addrBits(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func bitsAddr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func prefixRange(p netip.Prefix) ipRange {
	p = p.Masked()
	lo := addrBits(p.Addr())
	return ipRange{lo, lo | uint32(uint64(1)<<(32-p.Bits())-1)}
}

// blockRanges is an IPv4 ipBlock's CIDR without its excepts (none for an
// IPv6 block: this table is IPv4's).
func blockRanges(b *networkingv1.IPBlock) ([]ipRange, error) {
	p, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil, fmt.Errorf("ipBlock: %w", err)
	}
	if !p.Addr().Is4() {
		return nil, nil
	}
	out := []ipRange{prefixRange(p)}
	for _, e := range b.Except {
		ep, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("ipBlock except: %w", err)
		}
		if !ep.Addr().Is4() {
			continue
		}
		x := prefixRange(ep)
		var next []ipRange
		for _, r := range out {
			if x.hi < r.lo || x.lo > r.hi {
				next = append(next, r)
				continue
			}
			if x.lo > r.lo {
				next = append(next, ipRange{r.lo, x.lo - 1})
			}
			if x.hi < r.hi {
				next = append(next, ipRange{x.hi + 1, r.hi})
			}
		}
		out = next
	}
	return out, nil
}

// mergeRanges sorts and merges overlapping and adjacent ranges.
func mergeRanges(rs []ipRange) []ipRange {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b ipRange) int {
		if a.lo != b.lo {
			if a.lo < b.lo {
				return -1
			}
			return 1
		}
		return 0
	})
	out := []ipRange{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if uint64(r.lo) <= uint64(last.hi)+1 {
			last.hi = max(last.hi, r.hi)
		} else {
			out = append(out, r)
		}
	}
	return out
}

// maxExpanded: up to this many ranges (or ports) in a rule are written
// as that many rules, more as an anonymous set.
const maxExpanded = 4

func rangeText(r ipRange) string {
	if r.lo == r.hi {
		return bitsAddr(r.lo).String()
	}
	return bitsAddr(r.lo).String() + "-" + bitsAddr(r.hi).String()
}

func rangesText(rs []ipRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = rangeText(r)
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func inRanges(rs []ipRange, ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return false
	}
	v := addrBits(a)
	for _, r := range rs {
		if v >= r.lo && v <= r.hi {
			return true
		}
	}
	return false
}
