package serviceproxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/knftables"
)

// The table layout is kube-proxy's nftables mode (pkg/proxy/nftables,
// v1.34): the same base chains, dispatch maps and per-Service chains. Where
// logplane differs it says so below.
const (
	filterPreroutingChain     = "filter-prerouting"
	filterInputChain          = "filter-input"
	filterForwardChain        = "filter-forward"
	filterOutputChain         = "filter-output"
	filterOutputPostDNATChain = "filter-output-post-dnat"
	natPreroutingChain        = "nat-prerouting"
	natOutputChain            = "nat-output"
	natPostroutingChain       = "nat-postrouting"

	servicesChain       = "services"
	serviceIPsMap       = "service-ips"
	serviceNodePortsMap = "service-nodeports"
	nodePortIPsSet      = "nodeport-ips"
	clusterIPsSet       = "cluster-ips"

	serviceEndpointsCheckChain  = "service-endpoints-check"
	nodePortEndpointsCheckChain = "nodeport-endpoints-check"
	noEndpointServicesMap       = "no-endpoint-services"
	noEndpointNodePortsMap      = "no-endpoint-nodeports"
	rejectChain                 = "reject-chain"
	clusterIPsCheckChain        = "cluster-ips-check"
	firewallIPsMap              = "firewall-ips"
	firewallCheckChain          = "firewall-check"
	markMasqChain               = "mark-for-masquerade"
	masqueradingChain           = "masquerading"

	// logplane's own objects.
	localnetGuardChain = "localnet-guard"
	hairpinSet         = "hairpin-endpoints"
	clusterCIDRsSet    = "cluster-cidrs"
	endpointsMapPrefix = "endpoints-"

	// endpointShards is the number of endpoint maps per protocol (their
	// type names the protocol: nft refuses a map typed "th dport" behind a
	// "meta l4proto tcp" match once it reads the map back from the kernel).
	// Each Service port's balancing rule looks up one of them; the kernel
	// checks every element added to a map against every rule bound to it,
	// so one map shared by all Services costs O(Services × endpoints) per
	// element, while a map per Service costs O(maps) to create (named and
	// anonymous sets are kept in a list). endpointShards maps keep both
	// small: with 10,000 Services, 128 maps took the kernel's element check
	// from 17% of a full sync's nft time (32 maps) to under 5%.
	endpointShards = 128
	// endpointSlotBits is the room of one Service port in its endpoint
	// map: keys id<<endpointSlotBits + i for its i-th endpoint.
	endpointSlotBits = 16
	maxEndpoints     = 1 << endpointSlotBits
)

const (
	servicePortPolicyClusterChainNamePrefix = "service-"
	servicePortPolicyLocalChainNamePrefix   = "local-"
	serviceExternalChainNamePrefix          = "external-"
	servicePortEndpointChainNamePrefix      = "endpoint-"
	servicePortEndpointAffinityNamePrefix   = "affinity-"
	servicePortFirewallChainNamePrefix      = "firewall-"
	chainNameBaseLengthMax                  = knftables.NameLengthMax - 16
)

type baseChain struct {
	name      string
	chainType knftables.BaseChainType
	hook      knftables.BaseChainHook
	priority  knftables.BaseChainPriority
}

var baseChains = []baseChain{
	{filterPreroutingChain, knftables.FilterType, knftables.PreroutingHook, knftables.DNATPriority + "-10"},
	{filterInputChain, knftables.FilterType, knftables.InputHook, knftables.DNATPriority + "-10"},
	{filterForwardChain, knftables.FilterType, knftables.ForwardHook, knftables.DNATPriority + "-10"},
	{filterOutputChain, knftables.FilterType, knftables.OutputHook, knftables.DNATPriority + "-10"},
	{filterOutputPostDNATChain, knftables.FilterType, knftables.OutputHook, knftables.DNATPriority + "+10"},
	{natPreroutingChain, knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority},
	{natOutputChain, knftables.NATType, knftables.OutputHook, knftables.DNATPriority},
	{natPostroutingChain, knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority},
}

type jumpChain struct{ dst, src, extra string }

var jumpChains = []jumpChain{
	{nodePortEndpointsCheckChain, filterInputChain, "ct state new"},
	{serviceEndpointsCheckChain, filterInputChain, "ct state new"},
	{serviceEndpointsCheckChain, filterForwardChain, "ct state new"},
	{serviceEndpointsCheckChain, filterOutputChain, "ct state new"},
	{firewallCheckChain, filterPreroutingChain, "ct state new"},
	{firewallCheckChain, filterOutputChain, "ct state new"},
	{servicesChain, natOutputChain, ""},
	{servicesChain, natPreroutingChain, ""},
	{masqueradingChain, natPostroutingChain, ""},
	{clusterIPsCheckChain, filterForwardChain, "ct state new"},
	{clusterIPsCheckChain, filterOutputPostDNATChain, "ct state new"},
}

// topChains are the chains of the table that are not a Service's.
func topChains() map[string]bool {
	m := map[string]bool{rejectChain: true, markMasqChain: true, localnetGuardChain: true}
	for _, bc := range baseChains {
		m[bc.name] = true
	}
	for _, j := range jumpChains {
		m[j.dst] = true
	}
	return m
}

func hashAndTruncate(name string) string {
	hash := sha256.Sum256([]byte(name))
	name = base32.StdEncoding.EncodeToString(hash[:])[:8] + "-" + name
	if len(name) > chainNameBaseLengthMax {
		name = name[:chainNameBaseLengthMax-3] + "..."
	}
	return name
}

// chainBase is kube-proxy's servicePortChainNameBase: "HASH-ns/name/proto/port".
func chainBase(n portName) string {
	return hashAndTruncate(fmt.Sprintf("%s/%s/%s/%s", n.Namespace, n.Name, strings.ToLower(string(n.Protocol)), n.Port))
}

// endpointChainBase is kube-proxy's servicePortEndpointChainNameBase.
func endpointChainBase(n portName, ep *endpoint) string {
	return hashAndTruncate(fmt.Sprintf("%s/%s/%s/%s__%s/%d", n.Namespace, n.Name, strings.ToLower(string(n.Protocol)), n.Port, ep.addr, ep.port))
}

// isServiceChain: the chains of Service ports have a "/" in their names,
// the table's own chains never.
func isServiceChain(name string) bool { return strings.Contains(name, "/") }

// programmed is what the kernel holds for one Service port: the chains and
// affinity sets it owns, the elements it owns in the shared sets and maps,
// and what conntrack cleanup needs to know.
type programmed struct {
	owner  string
	chains []string
	// rules is the text of each chain's rules, so that a partial sync
	// leaves alone the chains that come out the same (an endpoint replaced
	// by another changes only map elements).
	rules    map[string]string
	affinity []string
	elems    []elemRef
	ids      []string
	sp       *servicePort
	// reachable are the endpoints traffic can be sent to.
	reachable map[netip.AddrPort]bool
}

type elemRef struct {
	store *elementStore
	key   string
}

// builder collects one transaction in the order the kernel needs: chains
// and sets exist before rules and elements refer to them, and stale ones go
// once nothing refers to them any more.
type builder struct {
	chains []string
	sets   []*knftables.Set
	rules  []*knftables.Rule
}

func (b *builder) chain(name string) { b.chains = append(b.chains, name) }

// skip drops the chains in unchanged, and their rules, from b.
func (b *builder) skip(unchanged map[string]bool) {
	if len(unchanged) == 0 {
		return
	}
	chains := b.chains[:0]
	for _, c := range b.chains {
		if !unchanged[c] {
			chains = append(chains, c)
		}
	}
	b.chains = chains
	rules := b.rules[:0]
	for _, r := range b.rules {
		if !unchanged[r.Chain] {
			rules = append(rules, r)
		}
	}
	b.rules = rules
}

func (b *builder) rule(chain string, parts ...any) {
	b.rules = append(b.rules, &knftables.Rule{Chain: chain, Rule: knftables.Concat(parts...)})
}

func (b *builder) ruleComment(chain, comment string, parts ...any) {
	b.rules = append(b.rules, &knftables.Rule{Chain: chain, Rule: knftables.Concat(parts...), Comment: &comment})
}

// writeSetup adds to tx the table and everything in it that is not a
// Service's, flushing what an earlier run left there. It is kube-proxy's
// setupNFTables, with logplane's localhost NodePorts, hairpin set and
// endpoint maps added.
func (p *Proxier) writeSetup(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("rules for logplane Services")})
	if !p.recreatedBase {
		// Recreate base chains once, so that a change of their
		// properties (priority) cannot fail the transaction.
		for _, bc := range baseChains {
			tx.Add(&knftables.Chain{Name: bc.name})
			tx.Delete(&knftables.Chain{Name: bc.name})
		}
	}
	for _, bc := range baseChains {
		c := &knftables.Chain{Name: bc.name, Type: knftables.PtrTo(bc.chainType), Hook: knftables.PtrTo(bc.hook), Priority: knftables.PtrTo(bc.priority)}
		tx.Add(c)
		tx.Flush(c)
	}
	created := map[string]bool{}
	ensure := func(name string) {
		if created[name] {
			return
		}
		created[name] = true
		tx.Add(&knftables.Chain{Name: name})
		tx.Flush(&knftables.Chain{Name: name})
	}
	for _, c := range jumpChains {
		ensure(c.dst)
		tx.Add(&knftables.Rule{Chain: c.src, Rule: knftables.Concat(c.extra, "jump", c.dst)})
	}
	for _, c := range []string{servicesChain, clusterIPsCheckChain, masqueradingChain, markMasqChain, rejectChain, firewallCheckChain, localnetGuardChain} {
		ensure(c)
	}

	// Sets and maps first: rules below refer to them.
	sets := []*knftables.Set{
		{Name: clusterIPsSet, Type: "ipv4_addr", Comment: knftables.PtrTo("Active ClusterIPs")},
		{Name: nodePortIPsSet, Type: "ipv4_addr", Comment: knftables.PtrTo("IPs that accept NodePort traffic")},
		{Name: hairpinSet, Type: "ipv4_addr . ipv4_addr", Comment: knftables.PtrTo("endpoint . endpoint: a connection DNATed back to its source is masqueraded")},
		{Name: clusterCIDRsSet, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag}, Comment: knftables.PtrTo("the pods' ranges")},
	}
	for _, s := range sets {
		tx.Add(s)
		tx.Flush(s)
	}
	maps := []*knftables.Map{
		{Name: noEndpointServicesMap, Type: "ipv4_addr . inet_proto . inet_service : verdict", Comment: knftables.PtrTo("vmap to drop or reject packets to services with no endpoints")},
		{Name: noEndpointNodePortsMap, Type: "inet_proto . inet_service : verdict", Comment: knftables.PtrTo("vmap to drop or reject packets to service nodeports with no endpoints")},
		{Name: firewallIPsMap, Type: "ipv4_addr . inet_proto . inet_service : verdict", Comment: knftables.PtrTo("destinations that are subject to LoadBalancerSourceRanges")},
		{Name: serviceIPsMap, Type: "ipv4_addr . inet_proto . inet_service : verdict", Comment: knftables.PtrTo("ClusterIP, ExternalIP and LoadBalancer IP traffic")},
		{Name: serviceNodePortsMap, Type: "inet_proto . inet_service : verdict", Comment: knftables.PtrTo("NodePort traffic")},
	}
	for _, proto := range endpointProtocols {
		for i := range endpointShards {
			maps = append(maps, &knftables.Map{Name: endpointMapName(proto, i), TypeOf: "numgen random mod 2 : ip daddr . " + proto + " dport", Comment: knftables.PtrTo("endpoints of Service ports, by balancing index")})
		}
	}
	for _, m := range maps {
		tx.Add(m)
		tx.Flush(m)
	}
	for _, ip := range p.cfg.NodeIPs {
		if ip.Is4() && !ip.IsLoopback() {
			tx.Add(&knftables.Element{Set: nodePortIPsSet, Key: []string{ip.String()}})
		}
	}
	for _, c := range p.cfg.ClusterCIDRs {
		tx.Add(&knftables.Element{Set: clusterCIDRsSet, Key: []string{c.Masked().String()}})
	}

	tx.Add(&knftables.Rule{Chain: markMasqChain, Rule: knftables.Concat("mark", "set", "mark", "or", p.masqMark)})
	// Hairpin: kube-proxy marks, in each endpoint's chain, traffic whose
	// source is that endpoint. Here one lookup does it for every endpoint
	// of the node (see writePort).
	tx.Add(&knftables.Rule{Chain: masqueradingChain, Rule: knftables.Concat("ct status dnat ip saddr . ip daddr", "@", hairpinSet, "jump", markMasqChain)})
	tx.Add(&knftables.Rule{Chain: masqueradingChain, Rule: knftables.Concat("mark", "and", p.masqMark, "==", "0", "return")})
	tx.Add(&knftables.Rule{Chain: masqueradingChain, Rule: knftables.Concat("mark", "set", "mark", "xor", p.masqMark)})
	tx.Add(&knftables.Rule{Chain: masqueradingChain, Rule: "masquerade fully-random"})

	tx.Add(&knftables.Rule{Chain: clusterIPsCheckChain, Rule: knftables.Concat("ip daddr", "@", clusterIPsSet, "reject"), Comment: knftables.PtrTo("Reject traffic to invalid ports of ClusterIPs")})
	if len(p.cfg.ServiceCIDRs) > 0 {
		// kube-proxy drops traffic to unallocated cluster IPs; logplane
		// refuses it, so that a client learns at once.
		tx.Add(&knftables.Rule{Chain: clusterIPsCheckChain, Rule: knftables.Concat("ip daddr", "{", p.serviceCIDRs, "}", "reject"), Comment: knftables.PtrTo("Reject traffic to unallocated ClusterIPs")})
	}

	tx.Add(&knftables.Rule{Chain: rejectChain, Rule: "reject"})
	tx.Add(&knftables.Rule{Chain: serviceEndpointsCheckChain, Rule: knftables.Concat("ip daddr . meta l4proto . th dport vmap", "@", noEndpointServicesMap)})
	noLocalhost := "ip daddr != 127.0.0.0/8"
	if len(p.nodePortIPs()) == 0 {
		tx.Add(&knftables.Rule{Chain: nodePortEndpointsCheckChain, Rule: knftables.Concat(noLocalhost, "meta l4proto . th dport vmap", "@", noEndpointNodePortsMap)})
	} else {
		tx.Add(&knftables.Rule{Chain: nodePortEndpointsCheckChain, Rule: knftables.Concat("ip daddr", "@", nodePortIPsSet, "meta l4proto . th dport vmap", "@", noEndpointNodePortsMap)})
	}
	tx.Add(&knftables.Rule{Chain: firewallCheckChain, Rule: knftables.Concat("ip daddr . meta l4proto . th dport vmap", "@", firewallIPsMap)})
	if notLocal := p.notLocal(); notLocal != "" {
		// Masquerade off-cluster traffic to cluster IPs (the node itself,
		// or a router sending the service range to us). kube-proxy writes
		// this rule in each Service port's chain, for its IP and port; one
		// rule here does the same (a packet to a cluster IP that no port
		// takes is rejected before it could be masqueraded) and spares nft
		// and the kernel 10,000 rules at 10,000 Services.
		tx.Add(&knftables.Rule{Chain: servicesChain, Rule: knftables.Concat("ip daddr", "@", clusterIPsSet, notLocal, "jump", markMasqChain),
			Comment: knftables.PtrTo("masquerade off-cluster traffic to cluster IPs")})
	}
	tx.Add(&knftables.Rule{Chain: servicesChain, Rule: knftables.Concat("ip daddr . meta l4proto . th dport vmap", "@", serviceIPsMap)})
	if len(p.nodePortIPs()) == 0 {
		tx.Add(&knftables.Rule{Chain: servicesChain, Rule: knftables.Concat("fib daddr type local", noLocalhost, "meta l4proto . th dport vmap", "@", serviceNodePortsMap)})
	} else {
		tx.Add(&knftables.Rule{Chain: servicesChain, Rule: knftables.Concat("ip daddr", "@", nodePortIPsSet, "meta l4proto . th dport vmap", "@", serviceNodePortsMap)})
	}

	if !p.cfg.DisableLocalhostNodePorts {
		// NodePorts on 127.0.0.0/8, which kube-proxy's nftables mode does
		// not offer (its iptables mode does, the same way): only for
		// traffic the node itself sends (nat-output), DNATed like any
		// NodePort; route_localnet lets the kernel route the packet, still
		// from 127.0.0.1, out to the pod, and the external chain's
		// masquerade gives it the node's address.
		tx.Add(&knftables.Rule{Chain: natOutputChain, Rule: knftables.Concat("ip daddr 127.0.0.0/8 meta l4proto . th dport vmap", "@", serviceNodePortsMap)})
		tx.Add(&knftables.Rule{Chain: nodePortEndpointsCheckChain, Rule: knftables.Concat("ip daddr 127.0.0.0/8 meta l4proto . th dport vmap", "@", noEndpointNodePortsMap)})
		// route_localnet also stops the kernel from dropping packets to
		// 127.0.0.0/8 that arrive from outside: drop them here unless they
		// belong to a connection we DNATed (CVE-2020-8558; kube-proxy's
		// iptables mode has the same rule).
		tx.Add(&knftables.Rule{Chain: filterInputChain, Rule: knftables.Concat("jump", localnetGuardChain)})
		tx.Add(&knftables.Rule{Chain: localnetGuardChain, Rule: `iifname != "lo" ip daddr 127.0.0.0/8 ct state != { established, related } ct status & dnat == 0 drop`, Comment: knftables.PtrTo("block incoming localnet connections")})
	}
}

func (p *Proxier) nodePortIPs() []netip.Addr {
	var out []netip.Addr
	for _, ip := range p.cfg.NodeIPs {
		if ip.Is4() && !ip.IsLoopback() {
			out = append(out, ip)
		}
	}
	return out
}

// notLocal is the local-traffic detector's "source is not a pod" match.
func (p *Proxier) notLocal() string {
	switch len(p.cfg.ClusterCIDRs) {
	case 0:
		return ""
	case 1:
		return "ip saddr != " + p.cfg.ClusterCIDRs[0].Masked().String()
	default:
		return "ip saddr != @" + clusterCIDRsSet
	}
}

func (p *Proxier) isLocal() string {
	switch len(p.cfg.ClusterCIDRs) {
	case 0:
		return ""
	case 1:
		return "ip saddr " + p.cfg.ClusterCIDRs[0].Masked().String()
	default:
		return "ip saddr @" + clusterCIDRsSet
	}
}

// writePort computes one Service port's chains, rules and elements into b
// and the element stores: kube-proxy's syncProxyRules loop body. Where it
// differs: the balancing rule of a Service port without session affinity
// DNATs through an index into an endpoint map instead of jumping through an
// anonymous verdict map to a chain per endpoint (the kernel allocates
// anonymous sets by scanning every set of the table, so kube-proxy's layout
// costs O(Services²) to load: minutes for 10,000 Services here), and the
// hairpin check is one set lookup in the masquerading chain.
func (p *Proxier) writePort(b *builder, sp *servicePort, eps []*endpoint) *programmed {
	base := chainBase(sp.name)
	pr := &programmed{owner: base, sp: sp, reachable: map[netip.AddrPort]bool{}, rules: map[string]string{}}
	firstRule := len(b.rules)
	defer func() {
		for _, r := range b.rules[firstRule:] {
			text := r.Rule
			if r.Comment != nil {
				text += " comment " + *r.Comment
			}
			pr.rules[r.Chain] += text + "\n"
		}
	}()
	acquire := func(s *elementStore, key, value []string, comment string) {
		s.acquire(base, key, value, comment)
		pr.elems = append(pr.elems, elemRef{store: s, key: joinKey(key)})
	}
	chain := func(name string) {
		b.chain(name)
		pr.chains = append(pr.chains, name)
	}
	proto := sp.proto()
	port := strconv.Itoa(int(sp.port))
	comment := sp.name.String()

	cluster, local, reachable, hasEndpoints := categorize(eps, sp)
	for _, ep := range reachable {
		pr.reachable[netip.AddrPortFrom(ep.addr, uint16(ep.port))] = true
	}
	clusterChain := servicePortPolicyClusterChainNamePrefix + base
	localChain := servicePortPolicyLocalChainNamePrefix + base
	externalChain := serviceExternalChainNamePrefix + base
	fwChain := servicePortFirewallChainNamePrefix + base

	if sp.affinityClientIP {
		for _, ep := range reachable {
			chain(servicePortEndpointChainNamePrefix + endpointChainBase(sp.name, ep))
		}
	}
	usesCluster := len(cluster) > 0 && sp.usesClusterEndpoints()
	if usesCluster {
		chain(clusterChain)
	}
	usesLocal := len(local) > 0 && sp.usesLocalEndpoints()
	if usesLocal {
		chain(localChain)
	}
	internalChain, hasInternal := clusterChain, hasEndpoints
	if sp.internalPolicyLocal {
		internalChain = localChain
		hasInternal = hasInternal && len(local) > 0
	}
	externalPolicyChain, hasExternal := clusterChain, hasEndpoints
	if sp.externalPolicyLocal {
		externalPolicyChain = localChain
		hasExternal = hasExternal && len(local) > 0
	}
	usesExternal := hasEndpoints && sp.externallyAccessible()
	if usesExternal {
		chain(externalChain)
	}
	internalVerdict, externalVerdict := "", ""
	if !hasEndpoints {
		internalVerdict = "goto " + rejectChain
		externalVerdict = "goto " + rejectChain
	} else {
		if !hasInternal {
			internalVerdict = "drop" // internalTrafficPolicy Local with no local endpoint
		}
		if !hasExternal {
			externalVerdict = "drop" // externalTrafficPolicy Local with no local endpoint
		}
	}

	cip := sp.clusterIP.String()
	acquire(p.clusterIPs, []string{cip}, nil, "")
	if hasInternal {
		acquire(p.serviceIPs, []string{cip, proto, port}, []string{"goto " + internalChain}, "")
	} else {
		acquire(p.noEndpointServices, []string{cip, proto, port}, []string{internalVerdict}, comment)
	}
	for _, ip := range sp.externalIPs {
		if hasEndpoints {
			acquire(p.serviceIPs, []string{ip.String(), proto, port}, []string{"goto " + externalChain}, "")
		}
		if !hasExternal {
			acquire(p.noEndpointServices, []string{ip.String(), proto, port}, []string{externalVerdict}, comment)
		}
	}
	usesFW := len(sp.loadBalancerVIPs) > 0 && len(sp.sourceRanges) > 0
	if usesFW {
		chain(fwChain)
	}
	for _, ip := range sp.loadBalancerVIPs {
		if hasEndpoints {
			acquire(p.serviceIPs, []string{ip.String(), proto, port}, []string{"goto " + externalChain}, "")
		}
		if usesFW {
			acquire(p.firewallIPs, []string{ip.String(), proto, port}, []string{"goto " + fwChain}, "")
		}
		if !hasExternal {
			acquire(p.noEndpointServices, []string{ip.String(), proto, port}, []string{externalVerdict}, comment)
		}
	}
	if sp.nodePort != 0 {
		np := strconv.Itoa(int(sp.nodePort))
		if hasEndpoints {
			acquire(p.serviceNodePorts, []string{proto, np}, []string{"goto " + externalChain}, "")
		}
		if !hasExternal {
			acquire(p.noEndpointNodePorts, []string{proto, np}, []string{externalVerdict}, comment)
		}
	}

	if usesExternal {
		if !sp.externalPolicyLocal {
			b.rule(externalChain, "jump", markMasqChain)
		} else {
			if isLocal := p.isLocal(); isLocal != "" {
				b.ruleComment(externalChain, "short-circuit pod traffic", isLocal, "goto", clusterChain)
			}
			b.ruleComment(externalChain, "masquerade local traffic", "fib saddr type local jump", markMasqChain)
			b.ruleComment(externalChain, "short-circuit local traffic", "fib saddr type local goto", clusterChain)
		}
		if hasExternal {
			b.rule(externalChain, "goto", externalPolicyChain)
		}
	}
	if usesFW {
		var sources []string
		allowFromNode := false
		for _, r := range sp.sourceRanges {
			sources = append(sources, r.String())
			for _, ip := range p.cfg.NodeIPs {
				allowFromNode = allowFromNode || r.Contains(ip)
			}
		}
		if allowFromNode {
			for _, ip := range sp.loadBalancerVIPs {
				sources = append(sources, ip.String())
			}
		}
		b.rule(fwChain, "ip saddr != {", strings.Join(sources, ", "), "} drop")
	}
	if sp.affinityClientIP {
		timeout := time.Duration(sp.affinityTimeout) * time.Second
		for _, ep := range reachable {
			name := affinitySetName(sp, ep)
			b.sets = append(b.sets, &knftables.Set{
				Name: name, Type: "ipv4_addr",
				Flags:   []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag},
				Timeout: &timeout,
			})
			pr.affinity = append(pr.affinity, name)
		}
	}
	if usesCluster {
		p.writeBalancing(b, pr, acquire, sp, clusterChain, cluster)
	}
	if usesLocal {
		p.writeBalancing(b, pr, acquire, sp, localChain, local)
	}
	if sp.affinityClientIP {
		for _, ep := range reachable {
			ec := servicePortEndpointChainNamePrefix + endpointChainBase(sp.name, ep)
			b.rule(ec, "update", "@", affinitySetName(sp, ep), "{ ip saddr }")
			b.rule(ec, "meta l4proto", proto, "dnat to", ep.String())
		}
	}
	for _, ep := range reachable {
		// Only an endpoint of this node (or of no node) can be the source
		// of a connection DNATed here.
		if ep.local || ep.nodeName == "" {
			acquire(p.hairpin, []string{ep.addr.String(), ep.addr.String()}, nil, "")
		}
	}
	return pr
}

// affinitySetName carries the timeout, so that a new timeout makes new sets
// (an existing set's timeout cannot be changed by adding it again).
func affinitySetName(sp *servicePort, ep *endpoint) string {
	return servicePortEndpointAffinityNamePrefix + strconv.Itoa(int(sp.affinityTimeout)) + "-" + endpointChainBase(sp.name, ep)
}

var endpointProtocols = []string{"tcp", "udp", "sctp"}

func endpointMapName(proto string, shard int) string {
	return endpointsMapPrefix + proto + "-" + strconv.Itoa(shard)
}

func isAffinitySet(name string) bool {
	return strings.HasPrefix(name, servicePortEndpointAffinityNamePrefix)
}

// writeBalancing writes the rules of a policy chain that pick an endpoint
// at random (numgen random), honouring session affinity.
func (p *Proxier) writeBalancing(b *builder, pr *programmed, acquire func(*elementStore, []string, []string, string), sp *servicePort, chain string, eps []*endpoint) {
	if sp.affinityClientIP {
		for _, ep := range eps {
			b.rule(chain, "ip saddr", "@", affinitySetName(sp, ep), "goto", servicePortEndpointChainNamePrefix+endpointChainBase(sp.name, ep))
		}
		// numgen random mod k == 0 over the k endpoints left: each endpoint
		// is picked with probability 1/n, with no anonymous set.
		for i, ep := range eps {
			ec := servicePortEndpointChainNamePrefix + endpointChainBase(sp.name, ep)
			if i == len(eps)-1 {
				b.rule(chain, "goto", ec)
			} else {
				b.rule(chain, "numgen random mod", len(eps)-i, "0 goto", ec)
			}
		}
		return
	}
	if len(eps) > maxEndpoints {
		p.report(fmt.Errorf("serviceproxy: %s has %d endpoints; only the first %d are used", sp.name, len(eps), maxEndpoints))
		eps = eps[:maxEndpoints]
	}
	id := p.allocID(chain)
	pr.ids = append(pr.ids, chain)
	shard := int(id % endpointShards)
	offset := uint64(id/endpointShards) << endpointSlotBits
	store := p.endpointMaps[sp.proto()][shard]
	for i, ep := range eps {
		acquire(store, []string{strconv.FormatUint(offset+uint64(i), 10)}, []string{ep.addr.String(), strconv.Itoa(int(ep.port))}, "")
	}
	b.rule(chain, "meta l4proto", sp.proto(), "dnat to numgen random mod", len(eps), "offset", offset, "map", "@", store.name)
}

// allocID gives chain a number of its own in the endpoint maps, kept while
// the chain lives.
func (p *Proxier) allocID(chain string) uint32 {
	if id, ok := p.ids[chain]; ok {
		return id
	}
	var id uint32
	if n := len(p.freeIDs); n > 0 {
		id = p.freeIDs[n-1]
		p.freeIDs = p.freeIDs[:n-1]
	} else {
		id = p.nextID
		p.nextID++
	}
	p.ids[chain] = id
	return id
}

func (p *Proxier) freeID(chain string) {
	if id, ok := p.ids[chain]; ok {
		delete(p.ids, chain)
		p.freeIDs = append(p.freeIDs, id)
	}
}
