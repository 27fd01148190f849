// Package serviceproxy makes Services carry traffic on one node: it is the
// kube-proxy of logplane, in nftables mode. It takes the desired state as
// Kubernetes objects (corev1.Service, discoveryv1.EndpointSlice, the node's
// name and addresses) and programs one nftables table, through
// sigs.k8s.io/knftables, with the layout of kube-proxy's nftables mode
// (k8s.io/kubernetes pkg/proxy/nftables, v1.34): ClusterIPs, NodePorts (on
// the node's addresses and on 127.0.0.1), externalIPs and LoadBalancer
// ingress IPs, random balancing over ready endpoints (serving-terminating
// ones when no endpoint is ready), session affinity by client IP,
// externalTrafficPolicy and internalTrafficPolicy Local, hairpin
// masquerading, immediate rejection when a Service has no endpoint, and
// LoadBalancerSourceRanges. It also routes the Service range to a device
// that goes nowhere, so that no cluster IP ever leaves the machine.
//
// Updates are incremental, as kube-proxy's: changes are accumulated per
// Service and, at most once per MinSyncPeriod, one transaction rewrites the
// chains and map elements of the Services that changed; one that changes
// only set and map elements (an endpoint replaced) goes to the kernel as a
// netlink batch (github.com/google/nftables) instead of through nft, whose
// cost grows with the table. A full sync (the
// first, after a failure, and every FullSyncPeriod) rebuilds the table in
// one transaction, taking over whatever an earlier run left in it. Cleanup
// removes everything the package made.
//
// It knows nothing of the event log: the node agent feeds it.
package serviceproxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/knftables"

	"github.com/logplane/logplane/dataplane/nftwriter"
)

// Defaults of Config.
const (
	DefaultTable          = "logplane-services"
	DefaultServiceDevice  = "lpsvc0"
	DefaultMasqueradeBit  = 14
	DefaultMinSyncPeriod  = 20 * time.Millisecond
	DefaultFullSyncPeriod = time.Hour
	DefaultRetryPeriod    = time.Second
)

// Config configures a Proxier.
type Config struct {
	// NodeName is this node's name: endpoints whose nodeName is this one
	// are local (externalTrafficPolicy and internalTrafficPolicy Local).
	NodeName string
	// NodeIPs are this node's addresses. NodePorts answer on these (and on
	// 127.0.0.0/8 unless DisableLocalhostNodePorts); when empty, on every
	// local address, as kube-proxy with --nodeport-addresses unset.
	NodeIPs []netip.Addr
	// ClusterCIDRs are the pods' ranges (kube-proxy's detect-local-mode
	// ClusterCIDR). Traffic to a cluster IP from outside them is
	// masqueraded, and pods reaching an externalTrafficPolicy Local
	// Service by its external address are short-circuited to any endpoint.
	ClusterCIDRs []netip.Prefix
	// ServiceCIDRs are the cluster IP ranges. Traffic to an unallocated
	// cluster IP is rejected, and the ranges are routed to ServiceDevice
	// so that they never leave the machine.
	ServiceCIDRs []netip.Prefix
	// DisableLocalhostNodePorts turns off NodePorts on 127.0.0.0/8 (and the
	// net.ipv4.conf.all.route_localnet=1 they need).
	DisableLocalhostNodePorts bool
	// Table is the nftables table (family ip) the Proxier owns.
	// Default: DefaultTable.
	Table string
	// ServiceDevice is the device the Service ranges are routed to.
	// Default: DefaultServiceDevice.
	ServiceDevice string
	// MasqueradeBit is the bit of the packet mark that asks for
	// masquerading (kube-proxy's --masquerade-bit). Default: 14.
	MasqueradeBit int
	// MinSyncPeriod: changes arriving closer together than this are
	// written in one transaction (kube-proxy's --min-sync-period, 1s
	// there). Default: DefaultMinSyncPeriod.
	MinSyncPeriod time.Duration
	// FullSyncPeriod: how often Run rebuilds the whole table even with no
	// change. Default: DefaultFullSyncPeriod.
	FullSyncPeriod time.Duration
	// RetryPeriod: how long Run waits after a failed sync. Default: 1s.
	RetryPeriod time.Duration
	// NetNS is the path of the network namespace to program (for nodes
	// sharing a machine, and tests); "" is the process's own.
	NetNS string
	// Clock drives Run's timers. Default: the real clock.
	Clock clock.WithTicker
	// OnSync, if set, is called after each successful sync.
	OnSync func(SyncResult)
	// OnError, if set, is called with the errors Run meets (it retries).
	OnError func(error)
}

// SyncResult describes one committed sync.
type SyncResult struct {
	// Full is true for a rebuild of the whole table.
	Full bool
	// Services is the number of Services written (all of them when Full).
	Services int
	// Generation is the last change (see Generation) the sync contains.
	Generation uint64
	// Operations is the number of nftables operations in the transaction
	// (each element added or deleted counts as one).
	Operations int
	// Duration is the time from the start of the sync to the commit.
	Duration time.Duration
}

// Proxier programs a node's Service rules.
type Proxier struct {
	cfg          Config
	clock        clock.WithTicker
	w            *nftwriter.Writer
	masqMark     string
	serviceCIDRs string

	// mu guards the desired state and the change bookkeeping.
	mu         sync.Mutex
	services   map[types.NamespacedName]map[portName]*servicePort
	slices     map[types.NamespacedName]map[string]*sliceInfo
	sliceOwner map[types.NamespacedName]types.NamespacedName
	dirty      map[types.NamespacedName]struct{}
	gen        uint64
	needFull   bool
	applied    uint64
	appliedCh  chan struct{}
	kick       chan struct{}

	// syncMu serializes syncs and guards what the kernel holds.
	syncMu        sync.Mutex
	recreatedBase bool
	programmed    map[portName]*programmed
	ids           map[string]uint32
	freeIDs       []uint32
	nextID        uint32
	lastFull      time.Time

	clusterIPs, serviceIPs, firewallIPs, noEndpointServices, noEndpointNodePorts, serviceNodePorts, hairpin *elementStore
	endpointMaps                                                                                            map[string][]*elementStore
}

// New checks cfg and that nft works (in cfg.NetNS). It does not change the
// machine: the first sync does.
func New(cfg Config) (*Proxier, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.ServiceDevice == "" {
		cfg.ServiceDevice = DefaultServiceDevice
	}
	if len(cfg.ServiceDevice) > 15 {
		return nil, fmt.Errorf("serviceproxy: device name %q longer than 15 bytes", cfg.ServiceDevice)
	}
	if cfg.MasqueradeBit == 0 {
		cfg.MasqueradeBit = DefaultMasqueradeBit
	}
	if cfg.MasqueradeBit < 0 || cfg.MasqueradeBit > 31 {
		return nil, fmt.Errorf("serviceproxy: masquerade bit %d not in [0, 31]", cfg.MasqueradeBit)
	}
	if cfg.MinSyncPeriod == 0 {
		cfg.MinSyncPeriod = DefaultMinSyncPeriod
	}
	if cfg.FullSyncPeriod == 0 {
		cfg.FullSyncPeriod = DefaultFullSyncPeriod
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	var cidrs []string
	for _, c := range cfg.ServiceCIDRs {
		if !c.Addr().Is4() {
			return nil, fmt.Errorf("serviceproxy: service CIDR %s: only IPv4 is supported", c)
		}
		cidrs = append(cidrs, c.Masked().String())
	}
	for _, c := range cfg.ClusterCIDRs {
		if !c.Addr().Is4() {
			return nil, fmt.Errorf("serviceproxy: cluster CIDR %s: only IPv4 is supported", c)
		}
	}
	p := &Proxier{
		cfg:          cfg,
		clock:        cfg.Clock,
		masqMark:     fmt.Sprintf("%#08x", 1<<cfg.MasqueradeBit),
		serviceCIDRs: strings.Join(cidrs, ", "),
		services:     map[types.NamespacedName]map[portName]*servicePort{},
		slices:       map[types.NamespacedName]map[string]*sliceInfo{},
		sliceOwner:   map[types.NamespacedName]types.NamespacedName{},
		dirty:        map[types.NamespacedName]struct{}{},
		needFull:     true,
		appliedCh:    make(chan struct{}),
		kick:         make(chan struct{}, 1),
		programmed:   map[portName]*programmed{},
		ids:          map[string]uint32{},

		clusterIPs:          newElementStore(addressSet, clusterIPsSet),
		serviceIPs:          newElementStore(verdictMap, serviceIPsMap),
		firewallIPs:         newElementStore(verdictMap, firewallIPsMap),
		noEndpointServices:  newElementStore(verdictMap, noEndpointServicesMap),
		noEndpointNodePorts: newElementStore(verdictMap, noEndpointNodePortsMap),
		serviceNodePorts:    newElementStore(verdictMap, serviceNodePortsMap),
		hairpin:             newElementStore(addressSet, hairpinSet),
	}
	p.endpointMaps = map[string][]*elementStore{}
	for _, proto := range endpointProtocols {
		for i := range endpointShards {
			p.endpointMaps[proto] = append(p.endpointMaps[proto], newElementStore(endpointMap, endpointMapName(proto, i)))
		}
	}
	var err error
	if p.w, err = nftwriter.New(cfg.Table, cfg.NetNS); err != nil {
		return nil, fmt.Errorf("serviceproxy: %w", err)
	}
	return p, nil
}

// inNS runs fn in the configured network namespace (processes fn starts,
// such as nft, inherit it).
func (p *Proxier) inNS(fn func() error) error {
	return inNetNS(p.cfg.NetNS, fn)
}

func inNetNS(path string, fn func() error) error {
	return nftwriter.InNetNS(path, fn)
}

func (p *Proxier) report(err error) {
	if p.cfg.OnError != nil {
		p.cfg.OnError(err)
	}
}

// UpdateService sets a Service (added or changed). Headless and
// ExternalName Services get no rules.
func (p *Proxier) UpdateService(svc *corev1.Service) {
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	ports := servicePorts(svc)
	p.mu.Lock()
	defer p.mu.Unlock()
	if reflect.DeepEqual(ports, p.services[nn]) {
		return
	}
	if ports == nil {
		delete(p.services, nn)
	} else {
		p.services[nn] = ports
	}
	p.changedLocked(nn)
}

// DeleteService removes the Service namespace/name.
func (p *Proxier) DeleteService(namespace, name string) {
	nn := types.NamespacedName{Namespace: namespace, Name: name}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.services[nn]; !ok {
		return
	}
	delete(p.services, nn)
	p.changedLocked(nn)
}

// UpdateEndpointSlice sets an EndpointSlice (added or changed). It belongs
// to the Service its kubernetes.io/service-name label names; one without
// that label is refused.
func (p *Proxier) UpdateEndpointSlice(slice *discoveryv1.EndpointSlice) error {
	svcName := slice.Labels[discoveryv1.LabelServiceName]
	if svcName == "" {
		return fmt.Errorf("serviceproxy: EndpointSlice %s/%s has no %s label", slice.Namespace, slice.Name, discoveryv1.LabelServiceName)
	}
	nn := types.NamespacedName{Namespace: slice.Namespace, Name: svcName}
	key := types.NamespacedName{Namespace: slice.Namespace, Name: slice.Name}
	si := newSliceInfo(slice)
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.sliceOwner[key]; ok && old != nn {
		p.removeSliceLocked(key)
	}
	byName := p.slices[nn]
	if byName == nil {
		byName = map[string]*sliceInfo{}
		p.slices[nn] = byName
	}
	if reflect.DeepEqual(byName[slice.Name], si) {
		return nil
	}
	byName[slice.Name] = si
	p.sliceOwner[key] = nn
	p.changedLocked(nn)
	return nil
}

// DeleteEndpointSlice removes the EndpointSlice namespace/name.
func (p *Proxier) DeleteEndpointSlice(namespace, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeSliceLocked(types.NamespacedName{Namespace: namespace, Name: name})
}

func (p *Proxier) removeSliceLocked(key types.NamespacedName) {
	nn, ok := p.sliceOwner[key]
	if !ok {
		return
	}
	delete(p.sliceOwner, key)
	delete(p.slices[nn], key.Name)
	if len(p.slices[nn]) == 0 {
		delete(p.slices, nn)
	}
	p.changedLocked(nn)
}

func (p *Proxier) changedLocked(nn types.NamespacedName) {
	p.dirty[nn] = struct{}{}
	p.gen++
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Generation counts the changes handed to the Proxier so far: a change that
// returned before a call to Generation is in every sync whose
// SyncResult.Generation is at least its value.
func (p *Proxier) Generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// WaitSynced waits until every change handed over before the call is in
// the kernel.
func (p *Proxier) WaitSynced(ctx context.Context) error {
	p.mu.Lock()
	want := p.gen
	p.mu.Unlock()
	for {
		p.mu.Lock()
		done, ch := p.applied >= want && !p.needFull, p.appliedCh
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Run keeps the kernel in step with the desired state until ctx ends: a
// full sync at once, then a sync after changes (at most one per
// MinSyncPeriod), a full one every FullSyncPeriod, and a retry every
// RetryPeriod after a failure (reported to OnError). Hand it the state
// known at start (UpdateService, UpdateEndpointSlice) before calling Run,
// so that the first sync does not take away rules that are still wanted.
func (p *Proxier) Run(ctx context.Context) error {
	l := nftwriter.Loop{Clock: p.clock, MinSyncPeriod: p.cfg.MinSyncPeriod, FullSyncPeriod: p.cfg.FullSyncPeriod,
		RetryPeriod: p.cfg.RetryPeriod, Kick: p.kick, OnError: p.cfg.OnError,
		Sync: func(ctx context.Context) (bool, error) {
			res, err := p.sync(ctx)
			return res.Full, err
		},
		FullDue: func() {
			p.mu.Lock()
			p.needFull = true
			p.mu.Unlock()
		}}
	return l.Run(ctx)
}

func (p *Proxier) kickNow() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Sync writes the pending changes now (a full sync if one is due) and
// returns once they are committed.
func (p *Proxier) Sync(ctx context.Context) error {
	_, err := p.sync(ctx)
	return err
}

func (p *Proxier) sync(ctx context.Context) (SyncResult, error) {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	start := p.clock.Now()

	p.mu.Lock()
	full := p.needFull || (!p.lastFull.IsZero() && p.clock.Since(p.lastFull) >= p.cfg.FullSyncPeriod)
	dirty := p.dirty
	p.dirty = map[types.NamespacedName]struct{}{}
	gen := p.gen
	if !full && len(dirty) == 0 {
		p.advanceLocked(gen)
		p.mu.Unlock()
		return SyncResult{Generation: gen}, nil
	}
	p.needFull = false // set again below on failure
	var tx *transaction
	var nServices int
	var err error
	var stale []staleFlow
	if full {
		nServices = len(p.services)
		tx, err = p.buildFull(ctx)
	} else {
		nServices = len(dirty)
		tx, stale = p.buildPartial(dirty)
	}
	p.mu.Unlock()

	if err == nil {
		err = p.commit(ctx, tx)
	}
	if err == nil && full {
		err = p.inNS(p.ensureServiceRoutes)
	}
	if err == nil && !p.cfg.DisableLocalhostNodePorts && full {
		err = p.inNS(func() error { return writeSysctl("net/ipv4/conf/all/route_localnet", "1") })
	}
	if err != nil {
		p.mu.Lock()
		p.needFull = true // what the kernel holds is unknown: rebuild
		p.mu.Unlock()
		return SyncResult{}, fmt.Errorf("serviceproxy: sync: %w", err)
	}
	if len(stale) > 0 {
		if err := p.inNS(func() error { return deleteStaleFlows(stale) }); err != nil {
			p.report(fmt.Errorf("serviceproxy: conntrack: %w", err))
		}
	}
	if full {
		p.recreatedBase = true
		p.lastFull = p.clock.Now()
	}
	res := SyncResult{Full: full, Services: nServices, Generation: gen, Operations: tx.operations(), Duration: p.clock.Since(start)}
	p.mu.Lock()
	p.advanceLocked(gen)
	p.mu.Unlock()
	if p.cfg.OnSync != nil {
		p.cfg.OnSync(res)
	}
	return res, nil
}

func (p *Proxier) advanceLocked(gen uint64) {
	if gen > p.applied || p.applied == 0 {
		p.applied = gen
		close(p.appliedCh)
		p.appliedCh = make(chan struct{})
	}
}

func (p *Proxier) stores() []*elementStore {
	out := []*elementStore{p.clusterIPs, p.serviceIPs, p.firewallIPs, p.noEndpointServices, p.noEndpointNodePorts, p.serviceNodePorts, p.hairpin}
	for _, proto := range endpointProtocols {
		out = append(out, p.endpointMaps[proto]...)
	}
	return out
}

// buildFull rebuilds everything: setup, every Service port, and the removal
// of whatever else the table holds. Called with p.mu held.
func (p *Proxier) buildFull(ctx context.Context) (*transaction, error) {
	existing, err := p.w.ListAll(ctx)
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("list table %s: %w", p.cfg.Table, err)
	}
	for _, s := range p.stores() {
		s.reset()
	}
	clear(p.programmed)
	clear(p.ids)
	p.freeIDs = nil
	p.nextID = 0

	tx := p.w.NewTransaction()
	p.writeSetup(tx)
	b := &builder{}
	// In name order, so that a table built from the same state is the same.
	names := make([]types.NamespacedName, 0, len(p.services))
	for nn := range p.services {
		names = append(names, nn)
	}
	slices.SortFunc(names, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	for _, nn := range names {
		ports := p.services[nn]
		eps := endpointsByPort(nn, p.slices[nn], p.cfg.NodeName)
		pns := make([]portName, 0, len(ports))
		for n := range ports {
			pns = append(pns, n)
		}
		slices.SortFunc(pns, func(a, b portName) int {
			return strings.Compare(a.Port+"/"+string(a.Protocol), b.Port+"/"+string(b.Protocol))
		})
		for _, n := range pns {
			p.programmed[n] = p.writePort(b, ports[n], eps[n])
		}
	}
	wantChains := topChains()
	for _, c := range b.chains {
		wantChains[c] = true
	}
	wantSets := map[string]bool{clusterIPsSet: true, nodePortIPsSet: true, hairpinSet: true, clusterCIDRsSet: true}
	for _, s := range b.sets {
		wantSets[s.Name] = true
	}
	wantMaps := map[string]bool{noEndpointServicesMap: true, noEndpointNodePortsMap: true, firewallIPsMap: true, serviceIPsMap: true, serviceNodePortsMap: true}
	for _, proto := range endpointProtocols {
		for _, s := range p.endpointMaps[proto] {
			wantMaps[s.name] = true
		}
	}
	var staleChains, staleSets, staleMaps []string
	for _, c := range existing["chain"] {
		if !wantChains[c] {
			staleChains = append(staleChains, c)
		}
	}
	for _, s := range existing["set"] {
		if !wantSets[s] {
			staleSets = append(staleSets, s)
		}
	}
	for _, m := range existing["map"] {
		if !wantMaps[m] {
			staleMaps = append(staleMaps, m)
		}
	}
	had := map[string]bool{}
	for _, c := range existing["chain"] {
		had[c] = true
	}
	t := p.write(tx, b, had, staleChains, staleSets, staleMaps)
	t.fresh = len(existing["table"]) == 0 && len(existing["chain"]) == 0
	return t, nil
}

// buildPartial rewrites the Service ports of the dirty Services. Called
// with p.mu held.
func (p *Proxier) buildPartial(dirty map[types.NamespacedName]struct{}) (*transaction, []staleFlow) {
	tx := p.w.NewTransaction()
	b := &builder{}
	oldChains := map[string]bool{}
	oldSets := map[string]bool{}
	var old []*programmed
	for n, pr := range p.programmed {
		if _, ok := dirty[n.NamespacedName]; !ok {
			continue
		}
		old = append(old, pr)
		for _, e := range pr.elems {
			e.store.release(pr.owner, e.key)
		}
		for _, c := range pr.chains {
			oldChains[c] = true
		}
		for _, s := range pr.affinity {
			oldSets[s] = true
		}
		delete(p.programmed, n)
	}
	oldByOwner := map[string]*programmed{}
	for _, pr := range old {
		oldByOwner[pr.owner] = pr
	}
	var current []*programmed
	for nn := range dirty {
		ports := p.services[nn]
		if len(ports) == 0 {
			continue
		}
		eps := endpointsByPort(nn, p.slices[nn], p.cfg.NodeName)
		for n, sp := range ports {
			pr := p.writePort(b, sp, eps[n])
			p.programmed[n] = pr
			current = append(current, pr)
		}
	}
	// Chains whose rules come out as they are in the kernel, and affinity
	// sets that exist, are left alone.
	unchanged := map[string]bool{}
	for _, pr := range current {
		was := oldByOwner[pr.owner]
		if was == nil {
			continue
		}
		for _, c := range pr.chains {
			if oldChains[c] && pr.rules[c] == was.rules[c] {
				unchanged[c] = true
			}
		}
	}
	had := maps.Clone(oldChains)
	for _, c := range b.chains {
		delete(oldChains, c)
	}
	kept := b.sets[:0]
	for _, s := range b.sets {
		if !oldSets[s.Name] {
			kept = append(kept, s)
		}
		delete(oldSets, s.Name)
	}
	b.sets = kept
	b.skip(unchanged)
	for _, pr := range old {
		for _, c := range pr.ids {
			if oldChains[c] {
				p.freeID(c)
			}
		}
	}
	var staleChains, staleSets []string
	for c := range oldChains {
		staleChains = append(staleChains, c)
	}
	for s := range oldSets {
		staleSets = append(staleSets, s)
	}
	return p.write(tx, b, had, staleChains, staleSets, nil), staleFlows(old, current)
}

// transaction is one sync's change to the kernel, applied at once.
type transaction struct {
	// nft holds the chains, rules, sets and element deletions, in the
	// order the kernel needs; nil when only elements change (they go by
	// netlink then: see netlink.go).
	nft *knftables.Transaction
	// elements are the changes of every set and map.
	elements []elementChanges
	// fresh says the table did not exist before this (full) transaction.
	fresh bool
}

// operations counts the nftables operations, an element being one.
func (t *transaction) operations() int {
	n := 0
	if t.nft != nil {
		n = t.nft.NumOperations()
	}
	for _, c := range t.elements {
		n += len(c.adds)
		if t.nft == nil {
			n += len(c.dels)
		}
	}
	return n
}

// write lays b and the element changes into a transaction in the order
// the kernel needs. existing are the chains that may be in the kernel
// already (the others need no flush).
func (p *Proxier) write(tx *knftables.Transaction, b *builder, existing map[string]bool, staleChains, staleSets, staleMaps []string) *transaction {
	t := &transaction{}
	for _, s := range p.stores() {
		t.elements = append(t.elements, s.pending())
	}
	if tx.NumOperations()+len(b.chains)+len(b.sets)+len(b.rules)+len(staleChains)+len(staleSets)+len(staleMaps) == 0 {
		return t
	}
	t.nft = tx
	for _, c := range b.chains {
		tx.Add(&knftables.Chain{Name: c})
		if existing[c] {
			tx.Flush(&knftables.Chain{Name: c})
		}
	}
	for _, s := range b.sets {
		tx.Add(s)
	}
	for _, c := range t.elements {
		for _, k := range c.dels {
			tx.Delete(c.store.element(k))
		}
	}
	for _, r := range b.rules {
		tx.Add(r)
	}
	// Stale chains may jump to each other: empty them all, then delete.
	for _, c := range staleChains {
		tx.Flush(&knftables.Chain{Name: c})
	}
	for _, c := range staleChains {
		tx.Delete(&knftables.Chain{Name: c})
	}
	for _, s := range staleSets {
		tx.Delete(&knftables.Set{Name: s})
	}
	for _, m := range staleMaps {
		tx.Delete(&knftables.Map{Name: m})
	}
	// The element additions come last (commit writes them): they refer
	// only to chains that stay.
	return t
}

// commit applies t: by netlink when only elements change, else through
// nft in one transaction.
func (p *Proxier) commit(ctx context.Context, t *transaction) error {
	if t.nft == nil {
		return p.commitElements(t.elements)
	}
	// knftables writes one command per element; the additions are
	// written one command per set or map instead. Into a table that did
	// not exist, the endpoint maps' elements follow by netlink, after the
	// transaction: nft parses 100,000 of them (10,000 Services) in most of
	// a second, the netlink batch costs a fraction of that, and nothing
	// could use the table before (a takeover or a later full sync keeps
	// them in the one transaction, atomic).
	var w strings.Builder
	var after []elementChanges
	for _, c := range t.elements {
		if t.fresh && c.store.kind == endpointMap && len(c.dels) == 0 {
			after = append(after, c)
			continue
		}
		c.writeAdds(p.w, &w)
	}
	if err := p.w.Run(ctx, t.nft, w.String()); err != nil {
		return err
	}
	if len(after) > 0 {
		return p.commitElements(after)
	}
	return nil
}

// Cleanup removes everything a Proxier with cfg made: its table, its
// device and the routes through it. It is safe to call when there is
// nothing to remove. net.ipv4.conf.all.route_localnet is left as it is
// (other programs may rely on it, as with kube-proxy).
func Cleanup(ctx context.Context, cfg Config) error {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.ServiceDevice == "" {
		cfg.ServiceDevice = DefaultServiceDevice
	}
	var errs []error
	if err := nftwriter.DeleteTable(ctx, cfg.Table, cfg.NetNS); err != nil {
		errs = append(errs, fmt.Errorf("serviceproxy: %w", err))
	}
	if err := inNetNS(cfg.NetNS, func() error { return removeServiceDevice(cfg.ServiceDevice) }); err != nil {
		errs = append(errs, fmt.Errorf("serviceproxy: remove device %s: %w", cfg.ServiceDevice, err))
	}
	return errors.Join(errs...)
}

// Available reports why this machine cannot run a Proxier (no nft binary),
// or nil.
func Available() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("serviceproxy: nft not found (apt-get install nftables): %w", err)
	}
	return nil
}

func writeSysctl(name, value string) error {
	path := "/proc/sys/" + name
	cur, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(cur)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}
