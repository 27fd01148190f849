// Package netpolicy enforces NetworkPolicy (networking.k8s.io/v1) on one
// node with nftables. It takes the desired state as Kubernetes objects
// (NetworkPolicies, the pods and the namespaces) and programs one table of
// its own through dataplane/nftwriter, the writer it shares with
// serviceproxy: structure (a chain per policy and direction, its rules,
// its sets) as one nft transaction written with sigs.k8s.io/knftables, and
// changes of set elements only (a pod started, stopped or relabelled, a
// namespace relabelled) as one netlink batch.
//
// The semantics are Kubernetes' (the NetworkPolicy API reference and
// k8s.io/api/networking/v1): a pod selected by a policy of type Ingress
// (Egress) accepts only the connections some such policy's ingress (egress)
// rules allow, the union of them; a pod no policy selects stays open; peers
// are podSelector (in the policy's namespace), namespaceSelector, both
// (pods in the namespaces), or ipBlock with except; ports by number, range
// (endPort) or name (resolved on the destination pod's containers);
// replies and related packets of an allowed connection pass (ct state
// established,related). Both directions are checked on the node's forward
// hook, where pod-to-pod traffic over the bridge passes (with
// br_netfilter: the Enforcer sets net.bridge.bridge-nf-call-iptables),
// after Service DNAT: traffic between a pod and its own
// node is not filtered, so probes keep working.
//
// Updates are incremental: a change of a policy rewrites only its chains
// and sets (and the dispatch chains when policies come or go, or change
// type or selection); a change of a pod or namespace moves set elements
// only. It knows nothing of the event log: the node agent feeds it
// (nodeagent.FollowNetworkPolicies).
package netpolicy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/knftables"

	"github.com/logplane/logplane/dataplane/nftwriter"
)

// Defaults of Config.
const (
	DefaultTable          = "logplane-policy"
	DefaultMinSyncPeriod  = 10 * time.Millisecond
	DefaultFullSyncPeriod = time.Hour
	DefaultRetryPeriod    = time.Second
)

// Config configures an Enforcer.
type Config struct {
	// Table is the nftables table (family ip) the Enforcer owns.
	// Default: DefaultTable.
	Table string
	// NetNS is the path of the network namespace to program ("" is the
	// process's own).
	NetNS string
	// MinSyncPeriod: changes closer together than this are written
	// together. Default: DefaultMinSyncPeriod.
	MinSyncPeriod time.Duration
	// FullSyncPeriod: how often Run rewrites the whole table.
	FullSyncPeriod time.Duration
	// RetryPeriod: how long Run waits after a failed sync.
	RetryPeriod time.Duration
	// Clock drives Run's timers. Default: the real clock.
	Clock clock.WithTicker
	// OnSync, if set, is called after each successful sync.
	OnSync func(SyncResult)
	// OnError, if set, is called with the errors Run meets (it retries).
	OnError func(error)
}

// SyncResult describes one committed sync.
type SyncResult struct {
	// Full is true for a rewrite of the whole table.
	Full bool
	// Policies is the number of policies whose chains were written.
	Policies int
	// Elements is the number of set elements added or deleted.
	Elements int
	// Netlink is true when the sync changed elements only, by netlink.
	Netlink bool
	// Generation is the last change (see Generation) the sync contains.
	Generation uint64
	// Duration is the time from the start of the sync to the commit.
	Duration time.Duration
}

// Enforcer programs a node's NetworkPolicy rules.
type Enforcer struct {
	cfg   Config
	clock clock.WithTicker
	w     *nftwriter.Writer

	syncMu sync.Mutex // serializes syncs

	mu         sync.Mutex
	pods       map[types.NamespacedName]*podInfo
	namespaces map[string]labels.Set
	policies   map[types.NamespacedName]*compiled
	specs      map[types.NamespacedName]*networkingv1.NetworkPolicySpec
	nextID     uint64
	// contrib[policy][pod] are the elements pod brings to policy's sets.
	contrib map[types.NamespacedName]map[types.NamespacedName][]elemRef
	// refs[set][key] counts the contributions of each wanted element.
	refs    map[string]map[string]int
	touched map[string]map[string]struct{}
	// dirty are the policies whose chains and sets must be rewritten.
	dirty         map[types.NamespacedName]struct{}
	dispatchDirty bool
	needFull      bool
	// What the kernel holds (as of the last commit).
	inKernel  map[string]map[string]struct{}
	kernelPol map[types.NamespacedName]*compiled
	// kernelSets counts the policies in the kernel that use each set.
	kernelSets map[string]int

	gen, applied uint64
	appliedCh    chan struct{}
	kick         chan struct{}
	lastFull     time.Time
}

// New checks cfg and that nft works. It does not change the machine.
func New(cfg Config) (*Enforcer, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
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
	w, err := nftwriter.New(cfg.Table, cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("netpolicy: %w", err)
	}
	return &Enforcer{
		cfg: cfg, clock: cfg.Clock, w: w,
		pods:       map[types.NamespacedName]*podInfo{},
		namespaces: map[string]labels.Set{},
		policies:   map[types.NamespacedName]*compiled{},
		specs:      map[types.NamespacedName]*networkingv1.NetworkPolicySpec{},
		contrib:    map[types.NamespacedName]map[types.NamespacedName][]elemRef{},
		refs:       map[string]map[string]int{},
		touched:    map[string]map[string]struct{}{},
		dirty:      map[types.NamespacedName]struct{}{},
		inKernel:   map[string]map[string]struct{}{},
		kernelPol:  map[types.NamespacedName]*compiled{},
		kernelSets: map[string]int{},
		needFull:   true,
		appliedCh:  make(chan struct{}),
		kick:       make(chan struct{}, 1),
	}, nil
}

// UpdatePolicy sets a NetworkPolicy (added or changed). A policy whose
// selectors do not parse is refused (validation refuses it before).
func (e *Enforcer) UpdatePolicy(np *networkingv1.NetworkPolicy) error {
	key := types.NamespacedName{Namespace: np.Namespace, Name: np.Name}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.specs[key]; ok && reflect.DeepEqual(old, &np.Spec) {
		return nil
	}
	id := e.nextID
	if old := e.policies[key]; old != nil {
		id = old.id
	}
	c, err := compile(np, id)
	if err != nil {
		return fmt.Errorf("netpolicy: NetworkPolicy %s: %w", key, err)
	}
	if id == e.nextID {
		e.nextID++
	}
	old := e.policies[key]
	// The dispatch chains jump to the policy's chains for the addresses
	// in its selection's set.
	if old == nil || old.ingress != c.ingress || old.egress != c.egress || old.selSet != c.selSet {
		e.dispatchDirty = true
	}
	e.dropPolicyLocked(key)
	e.policies[key] = c
	e.specs[key] = np.Spec.DeepCopy()
	byPod := map[types.NamespacedName][]elemRef{}
	for pk, pod := range e.pods {
		if refs := c.contributions(pod, e.nsLabels(pod.namespace), nil); len(refs) > 0 {
			byPod[pk] = refs
			e.acquireLocked(refs)
		}
	}
	e.contrib[key] = byPod
	e.dirty[key] = struct{}{}
	e.changedLocked()
	return nil
}

// DeletePolicy removes the NetworkPolicy namespace/name.
func (e *Enforcer) DeletePolicy(namespace, name string) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.policies[key]; !ok {
		return
	}
	e.dropPolicyLocked(key)
	delete(e.policies, key)
	delete(e.specs, key)
	e.dirty[key] = struct{}{}
	e.dispatchDirty = true
	e.changedLocked()
}

func (e *Enforcer) dropPolicyLocked(key types.NamespacedName) {
	for _, refs := range e.contrib[key] {
		e.releaseLocked(refs)
	}
	delete(e.contrib, key)
}

// UpdatePod sets a pod (added or changed). Pods without an IPv4 address,
// on the host's network, or finished, take no part.
func (e *Enforcer) UpdatePod(pod *corev1.Pod) {
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	pi := newPodInfo(pod)
	e.mu.Lock()
	defer e.mu.Unlock()
	if reflect.DeepEqual(pi, e.pods[key]) {
		return
	}
	if pi == nil {
		delete(e.pods, key)
	} else {
		e.pods[key] = pi
	}
	e.podChangedLocked(key)
}

// DeletePod removes the pod namespace/name.
func (e *Enforcer) DeletePod(namespace, name string) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.pods[key]; !ok {
		return
	}
	delete(e.pods, key)
	e.podChangedLocked(key)
}

// UpdateNamespace sets a namespace's labels (for namespaceSelectors).
// Until it is known, a namespace has the label Kubernetes gives every
// namespace, kubernetes.io/metadata.name.
func (e *Enforcer) UpdateNamespace(ns *corev1.Namespace) {
	set := labels.Set(maps.Clone(ns.Labels))
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.namespaces[ns.Name]; ok && maps.Equal(old, set) {
		return
	}
	e.namespaces[ns.Name] = set
	e.namespaceChangedLocked(ns.Name)
}

// DeleteNamespace forgets a namespace's labels.
func (e *Enforcer) DeleteNamespace(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.namespaces[name]; !ok {
		return
	}
	delete(e.namespaces, name)
	e.namespaceChangedLocked(name)
}

func (e *Enforcer) nsLabels(name string) labels.Set {
	if l, ok := e.namespaces[name]; ok {
		return l
	}
	return labels.Set{corev1.LabelMetadataName: name}
}

func (e *Enforcer) namespaceChangedLocked(name string) {
	for pk, pod := range e.pods {
		if pod.namespace == name {
			e.recomputePodLocked(pk)
		}
	}
	e.changedLocked()
}

func (e *Enforcer) podChangedLocked(key types.NamespacedName) {
	e.recomputePodLocked(key)
	e.changedLocked()
}

// recomputePodLocked recomputes what pod key brings to every policy.
func (e *Enforcer) recomputePodLocked(key types.NamespacedName) {
	pod := e.pods[key]
	var nsl labels.Set
	if pod != nil {
		nsl = e.nsLabels(pod.namespace)
	}
	for pk, c := range e.policies {
		byPod := e.contrib[pk]
		old := byPod[key]
		var refs []elemRef
		if pod != nil {
			refs = c.contributions(pod, nsl, nil)
		}
		if slices.Equal(old, refs) {
			continue
		}
		e.acquireLocked(refs)
		e.releaseLocked(old)
		if len(refs) == 0 {
			delete(byPod, key)
		} else {
			byPod[key] = refs
		}
	}
}

func (e *Enforcer) acquireLocked(refs []elemRef) {
	for _, r := range refs {
		m := e.refs[r.set]
		if m == nil {
			m = map[string]int{}
			e.refs[r.set] = m
		}
		m[r.key]++
		e.touchLocked(r)
	}
}

func (e *Enforcer) releaseLocked(refs []elemRef) {
	for _, r := range refs {
		m := e.refs[r.set]
		if m[r.key]--; m[r.key] <= 0 {
			delete(m, r.key)
			if len(m) == 0 {
				delete(e.refs, r.set)
			}
		}
		e.touchLocked(r)
	}
}

func (e *Enforcer) touchLocked(r elemRef) {
	m := e.touched[r.set]
	if m == nil {
		m = map[string]struct{}{}
		e.touched[r.set] = m
	}
	m[r.key] = struct{}{}
}

func (e *Enforcer) changedLocked() {
	e.gen++
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Generation counts the changes handed over so far: a change that
// returned before a call to Generation is in every sync whose
// SyncResult.Generation is at least its value.
func (e *Enforcer) Generation() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gen
}

// WaitSynced waits until every change handed over before the call is in
// the kernel.
func (e *Enforcer) WaitSynced(ctx context.Context) error {
	e.mu.Lock()
	want := e.gen
	e.mu.Unlock()
	for {
		e.mu.Lock()
		done, ch := e.applied >= want && !e.needFull, e.appliedCh
		e.mu.Unlock()
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
// known at start before calling Run.
func (e *Enforcer) Run(ctx context.Context) error {
	l := nftwriter.Loop{Clock: e.clock, MinSyncPeriod: e.cfg.MinSyncPeriod, FullSyncPeriod: e.cfg.FullSyncPeriod,
		RetryPeriod: e.cfg.RetryPeriod, Kick: e.kick, OnError: e.cfg.OnError,
		Sync: func(ctx context.Context) (bool, error) {
			res, err := e.sync(ctx)
			return res.Full, err
		},
		FullDue: func() {
			e.mu.Lock()
			e.needFull = true
			e.mu.Unlock()
		}}
	return l.Run(ctx)
}

// Sync writes the pending changes now (a full sync if one is due) and
// returns once they are committed.
func (e *Enforcer) Sync(ctx context.Context) error {
	_, err := e.sync(ctx)
	return err
}

// plan is one sync's change to the kernel.
type plan struct {
	tx       *knftables.Transaction // nil: elements only, by netlink
	adds     map[string][]string
	dels     map[string][]string
	policies int
}

func (e *Enforcer) sync(ctx context.Context) (SyncResult, error) {
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	start := e.clock.Now()
	e.mu.Lock()
	full := e.needFull || (!e.lastFull.IsZero() && e.clock.Since(e.lastFull) >= e.cfg.FullSyncPeriod)
	gen := e.gen
	if !full && len(e.dirty) == 0 && !e.dispatchDirty && len(e.touched) == 0 {
		e.advanceLocked(gen)
		e.mu.Unlock()
		return SyncResult{Generation: gen}, nil
	}
	e.needFull = false
	var pl *plan
	if full {
		pl = e.buildFull()
	} else {
		pl = e.buildPartial()
	}
	e.mu.Unlock()

	err := e.commit(ctx, pl)
	if err == nil && full {
		err = e.w.Do(bridgeNetfilter)
	}
	if err != nil {
		e.mu.Lock()
		e.needFull = true // what the kernel holds is unknown: rewrite it
		e.mu.Unlock()
		return SyncResult{}, fmt.Errorf("netpolicy: sync: %w", err)
	}
	if full {
		e.lastFull = e.clock.Now()
	}
	n := 0
	for _, k := range pl.adds {
		n += len(k)
	}
	for _, k := range pl.dels {
		n += len(k)
	}
	res := SyncResult{Full: full, Policies: pl.policies, Elements: n, Netlink: pl.tx == nil, Generation: gen, Duration: e.clock.Since(start)}
	e.mu.Lock()
	e.advanceLocked(gen)
	e.mu.Unlock()
	if e.cfg.OnSync != nil {
		e.cfg.OnSync(res)
	}
	return res, nil
}

func (e *Enforcer) advanceLocked(gen uint64) {
	if gen > e.applied || e.applied == 0 {
		e.applied = gen
		close(e.appliedCh)
		e.appliedCh = make(chan struct{})
	}
}

func (e *Enforcer) sortedPolicies() []*compiled {
	out := slices.Collect(maps.Values(e.policies))
	slices.SortFunc(out, func(a, b *compiled) int {
		return strings.Compare(a.namespace+"/"+a.name, b.namespace+"/"+b.name)
	})
	return out
}

func ptr[T any](v T) *T { return &v }

// writeBase adds the base chains and the isolation sets.
func (e *Enforcer) writeBase(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{Comment: ptr("logplane: NetworkPolicy")})
	for _, s := range []string{ingressIsolated, egressIsolated} {
		tx.Add(&knftables.Set{Name: s, Type: addressType})
	}
	// Egress first, then ingress: an accept ends one base chain only, so a
	// connection must pass both; a drop in either is final.
	for _, b := range []struct{ chain, dispatch, set, addr, prio string }{
		{egressChain, egressPolicies, egressIsolated, "ip saddr", "0"},
		{ingressChain, ingressPolicies, ingressIsolated, "ip daddr", "1"},
	} {
		tx.Add(&knftables.Chain{Name: b.dispatch})
		tx.Add(&knftables.Chain{Name: b.chain, Type: ptr(knftables.FilterType), Hook: ptr(knftables.ForwardHook), Priority: ptr(knftables.BaseChainPriority(b.prio))})
		tx.Add(&knftables.Rule{Chain: b.chain, Rule: "ct state established,related accept"})
		tx.Add(&knftables.Rule{Chain: b.chain, Rule: b.addr + " @" + b.set + " jump " + b.dispatch})
	}
}

// writeDispatch rewrites the dispatch chains: a jump to each policy's
// chain for the pods it selects, then drop.
func (e *Enforcer) writeDispatch(tx *knftables.Transaction) {
	tx.Flush(&knftables.Chain{Name: ingressPolicies})
	tx.Flush(&knftables.Chain{Name: egressPolicies})
	for _, c := range e.sortedPolicies() {
		if c.ingress {
			tx.Add(&knftables.Rule{Chain: ingressPolicies, Rule: fmt.Sprintf("ip daddr @%s jump p%d-in", c.sel(), c.id)})
		}
		if c.egress {
			tx.Add(&knftables.Rule{Chain: egressPolicies, Rule: fmt.Sprintf("ip saddr @%s jump p%d-out", c.sel(), c.id)})
		}
	}
	tx.Add(&knftables.Rule{Chain: ingressPolicies, Rule: "drop"})
	tx.Add(&knftables.Rule{Chain: egressPolicies, Rule: "drop"})
}

func (e *Enforcer) writePolicy(tx *knftables.Transaction, c *compiled, old *compiled, newSets map[string]bool) {
	comment := c.namespace + "/" + c.name
	for _, name := range slices.Sorted(maps.Keys(c.chains)) {
		tx.Add(&knftables.Chain{Name: name, Comment: ptr(comment)})
		if old != nil {
			if _, had := old.chains[name]; had {
				tx.Flush(&knftables.Chain{Name: name})
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.sets)) {
		if newSets[name] {
			tx.Add(&knftables.Set{Name: name, Type: c.sets[name]})
			delete(newSets, name) // written once
		}
	}
}

func (e *Enforcer) writeRules(tx *knftables.Transaction, c *compiled) {
	for _, name := range slices.Sorted(maps.Keys(c.chains)) {
		for _, r := range c.chains[name] {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
}

// buildFull rewrites the whole table in one transaction: created if
// missing, deleted and written anew, so that whatever an earlier run left
// is gone and no packet ever sees a half-written table. Called with e.mu.
func (e *Enforcer) buildFull() *plan {
	tx := e.w.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	e.writeBase(tx)
	pols := e.sortedPolicies()
	clear(e.kernelSets)
	newSets := map[string]bool{}
	for _, c := range pols {
		for s := range c.sets {
			e.kernelSets[s]++
			newSets[s] = true
		}
	}
	for _, c := range pols {
		e.writePolicy(tx, c, nil, newSets)
	}
	e.writeDispatch(tx)
	for _, c := range pols {
		e.writeRules(tx, c)
	}
	pl := &plan{tx: tx, adds: map[string][]string{}, policies: len(pols)}
	clear(e.inKernel)
	for set, keys := range e.refs {
		in := map[string]struct{}{}
		for k := range keys {
			pl.adds[set] = append(pl.adds[set], k)
			in[k] = struct{}{}
		}
		e.inKernel[set] = in
	}
	clear(e.touched)
	clear(e.dirty)
	e.dispatchDirty = false
	e.kernelPol = maps.Clone(e.policies)
	return pl
}

// buildPartial writes the dirty policies and the touched elements. Called
// with e.mu held.
func (e *Enforcer) buildPartial() *plan {
	pl := &plan{adds: map[string][]string{}, dels: map[string][]string{}}
	var tx *knftables.Transaction
	staleSets := map[string]bool{}
	var staleChains []string
	newSets := map[string]bool{}
	if len(e.dirty) > 0 || e.dispatchDirty {
		tx = e.w.NewTransaction()
		keys := slices.SortedFunc(maps.Keys(e.dirty), func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
		// Sets shared with other policies stay while one uses them.
		for _, k := range keys {
			if c := e.policies[k]; c != nil {
				for s := range c.sets {
					if e.kernelSets[s] == 0 {
						newSets[s] = true
					}
					e.kernelSets[s]++
				}
			}
		}
		for _, k := range keys {
			if old := e.kernelPol[k]; old != nil {
				for s := range old.sets {
					if e.kernelSets[s]--; e.kernelSets[s] <= 0 {
						delete(e.kernelSets, s)
						staleSets[s] = true
					}
				}
			}
		}
		created := maps.Clone(newSets)
		for _, k := range keys {
			old, c := e.kernelPol[k], e.policies[k]
			if c != nil {
				e.writePolicy(tx, c, old, newSets)
			}
			if old != nil {
				for name := range old.chains {
					if c == nil || !hasKey(c.chains, name) {
						staleChains = append(staleChains, name)
					}
				}
			}
		}
		if e.dispatchDirty {
			e.writeDispatch(tx)
		}
		pl.policies = len(keys)
		// Element deletions of sets that stay, before the rules.
		e.elementChanges(pl, staleSets, created)
		for set, keys := range pl.dels {
			for _, k := range keys {
				tx.Delete(&knftables.Element{Set: set, Key: strings.Split(k, " . ")})
			}
		}
		for _, k := range keys {
			if c := e.policies[k]; c != nil {
				e.writeRules(tx, c)
			}
		}
		slices.Sort(staleChains)
		for _, name := range staleChains {
			tx.Flush(&knftables.Chain{Name: name})
		}
		for _, name := range staleChains {
			tx.Delete(&knftables.Chain{Name: name})
		}
		for _, s := range slices.Sorted(maps.Keys(staleSets)) {
			tx.Delete(&knftables.Set{Name: s})
		}
		for _, k := range keys {
			if c := e.policies[k]; c != nil {
				e.kernelPol[k] = c
			} else {
				delete(e.kernelPol, k)
			}
		}
	} else {
		e.elementChanges(pl, nil, nil)
	}
	pl.tx = tx
	clear(e.dirty)
	e.dispatchDirty = false
	return pl
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}

// elementChanges moves the touched elements into pl and records them as
// in the kernel. Elements of stale sets are forgotten (the sets go);
// those of new sets are all additions.
func (e *Enforcer) elementChanges(pl *plan, stale, created map[string]bool) {
	for set := range stale {
		delete(e.inKernel, set)
		delete(e.touched, set)
	}
	for set, keys := range e.touched {
		in := e.inKernel[set]
		if in == nil {
			in = map[string]struct{}{}
			e.inKernel[set] = in
		}
		want := e.refs[set]
		for k := range keys {
			_, have := in[k]
			_, wanted := want[k]
			switch {
			case wanted && !have:
				pl.adds[set] = append(pl.adds[set], k)
				in[k] = struct{}{}
			case !wanted && have:
				if !created[set] {
					pl.dels[set] = append(pl.dels[set], k)
				}
				delete(in, k)
			}
		}
		if len(in) == 0 {
			delete(e.inKernel, set)
		}
	}
	clear(e.touched)
}

// commit applies pl: by netlink when only elements change, else through
// nft in one transaction.
func (e *Enforcer) commit(ctx context.Context, pl *plan) error {
	if pl.tx == nil {
		if len(pl.adds) == 0 && len(pl.dels) == 0 {
			return nil
		}
		var batch []nftwriter.SetChange
		for _, del := range []bool{true, false} {
			m := pl.adds
			if del {
				m = pl.dels
			}
			for _, set := range slices.Sorted(maps.Keys(m)) {
				elems := make([]nftables.SetElement, 0, len(m[set]))
				for _, k := range m[set] {
					key, err := nftwriter.EncodeFields(strings.Split(k, " . "))
					if err != nil {
						return fmt.Errorf("element %q of %s: %w", k, set, err)
					}
					elems = append(elems, nftables.SetElement{Key: key})
				}
				batch = append(batch, nftwriter.SetChange{Set: set, Delete: del, Elems: elems})
			}
		}
		return e.w.CommitElements(batch)
	}
	var b strings.Builder
	for _, set := range slices.Sorted(maps.Keys(pl.adds)) {
		elems := make([]nftwriter.Element, len(pl.adds[set]))
		for i, k := range pl.adds[set] {
			elems[i] = nftwriter.Element{Key: k}
		}
		e.w.ElementsText(&b, set, elems)
	}
	return e.w.Run(ctx, pl.tx, b.String())
}

// bridgeNetfilter makes bridged IPv4 traffic (pod to pod on the node's
// bridge) pass the ip family's hooks, where the policies are: without it,
// pods on one bridge would reach each other whatever the policies say.
func bridgeNetfilter() error {
	const path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	cur, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("br_netfilter not loaded, traffic between pods on a bridge would bypass NetworkPolicy (modprobe br_netfilter): %w", err)
	}
	if strings.TrimSpace(string(cur)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("sysctl net.bridge.bridge-nf-call-iptables=1: %w", err)
	}
	return nil
}

// Cleanup removes the table an Enforcer with cfg made. It is safe to call
// when there is none.
func Cleanup(ctx context.Context, cfg Config) error {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if err := nftwriter.DeleteTable(ctx, cfg.Table, cfg.NetNS); err != nil {
		return fmt.Errorf("netpolicy: %w", err)
	}
	return nil
}
