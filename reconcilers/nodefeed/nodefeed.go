// Package nodefeed keeps each node's feed: the objects one node may read, derived from the log
// as Kubernetes' Node authorizer derives them from its graph (plugin/pkg/auth/authorizer/node),
// and republished, as the log holds them (Secrets sealed), on a stream of the node's own
// (eventlog.Log.PublishFeed). A node's credential reads only that stream, so what the node
// authorizer decides per request is here decided once per change, by the control plane.
//
// A node N may read: the pods bound to it (spec.nodeName = N); the Secrets, ConfigMaps,
// ServiceAccounts and PersistentVolumeClaims those pods use, and the PersistentVolumes bound to
// those claims; its own Lease; the claims selected for it (volume.kubernetes.io/selected-node)
// and the volumes of the local provisioner on it, which its agent provisions, grows and
// reclaims; and what every node reads cluster-wide to program its machine and to run its pods:
// Nodes, Namespaces, Services, Endpoints, EndpointSlices, NetworkPolicies, RuntimeClasses,
// StorageClasses, Ingresses and IngressClasses, and the TLS Secrets Ingresses name (every
// agent runs the Ingress proxy). A pod that leaves the node, and what it alone used, is removed
// from the feed.
//
// It runs in the workloads set, in the replica holding partition 0 (a singleton: one writer per
// feed keeps each object's revisions in order). At start, and whenever it gains partition 0, it
// reads every feed back and corrects it: a restart converges.
package nodefeed

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	storagehelpers "k8s.io/component-helpers/storage/volume"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler.
const Name = "nodefeed"

// Feeds is where the feeds are kept (eventlog.Log).
type Feeds interface {
	PublishFeed(ctx context.Context, node string, pos uint64, entries []eventlog.FeedEntry) error
	ReadFeed(ctx context.Context, node string) (map[eventlog.Key]uint64, uint64, error)
	ServeFeedRequests(ctx context.Context, fn func(ctx context.Context, node string) (uint64, bool)) error
}

// Config configures the reconciler.
type Config struct {
	// Feeds keeps the feeds. Required: without it, Setup sets up nothing.
	Feeds Feeds
	// MarkEvery is how often a node whose feed had nothing new is told the log's position
	// anyway. A node that wrote something its feed does not carry (an Event) is told at once,
	// so that its wait for its own write ends. Default 1s.
	MarkEvery time.Duration
}

// clusterWide are the resources every node reads whole.
var clusterWide = map[schema.GroupResource]bool{
	{Resource: "nodes"}:      true,
	{Resource: "namespaces"}: true,
	{Resource: "services"}:   true,
	{Resource: "endpoints"}:  true,
	{Group: "discovery.k8s.io", Resource: "endpointslices"}:   true,
	{Group: "networking.k8s.io", Resource: "networkpolicies"}: true,
	{Group: "networking.k8s.io", Resource: "ingresses"}:       true,
	{Group: "networking.k8s.io", Resource: "ingressclasses"}:  true,
	{Group: "node.k8s.io", Resource: "runtimeclasses"}:        true,
	{Group: "storage.k8s.io", Resource: "storageclasses"}:     true,
}

var (
	podsGR    = schema.GroupResource{Resource: "pods"}
	claimsGR  = schema.GroupResource{Resource: "persistentvolumeclaims"}
	volumesGR = schema.GroupResource{Resource: "persistentvolumes"}
	ingressGR = schema.GroupResource{Group: "networking.k8s.io", Resource: "ingresses"}
	leasesGR  = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}
)

// everyNode holds an object for every node (an Ingress's TLS Secret).
const everyNode = "*"

// Setup registers the reconciler: a cache of the graph and the loop that publishes.
func Setup(cfg Config) engine.Setup {
	return func(_ context.Context, e *engine.Engine) error {
		if cfg.Feeds == nil {
			return nil
		}
		if cfg.MarkEvery == 0 {
			cfg.MarkEvery = time.Second
		}
		f := &feeder{cfg: cfg, e: e, store: e.Store(), wake: make(chan struct{}, 1), hellos: make(chan hello)}
		e.AddCache(f)
		e.Add(f.run)
		e.Add(func(ctx context.Context) error { return cfg.Feeds.ServeFeedRequests(ctx, f.request) })
		return nil
	}
}

type feeder struct {
	cfg   Config
	e     *engine.Engine
	store *projections.Store

	mu     sync.Mutex
	queue  []projections.Change
	loaded bool
	wake   chan struct{}
	hellos chan hello
}

// hello is a node asking for its feed (a starting agent, whose Node may not exist yet).
type hello struct {
	node string
	done chan uint64
}

// request makes node's feed current and returns its position; false if this replica does not
// feed the nodes.
func (f *feeder) request(ctx context.Context, node string) (uint64, bool) {
	if parts := f.e.Partitions(); parts != nil && !parts.OwnsPartition(0) {
		return 0, false
	}
	h := hello{node: node, done: make(chan uint64, 1)}
	select {
	case f.hellos <- h:
	case <-ctx.Done():
		return 0, false
	}
	select {
	case pos := <-h.done:
		return pos, true
	case <-ctx.Done():
		return 0, false
	}
}

// Load is called once the engine has subscribed.
func (f *feeder) Load(*projections.Store) {
	f.mu.Lock()
	f.loaded = true
	f.mu.Unlock()
	f.signal()
}

// Observe queues a change for the loop.
func (f *feeder) Observe(c projections.Change) {
	f.mu.Lock()
	f.queue = append(f.queue, c)
	f.mu.Unlock()
	f.signal()
}

func (f *feeder) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// graph is what the loop knows: which pod is on which node, what each uses, and who holds what.
type graph struct {
	nodes   map[string]*nodeFeed
	podNode map[eventlog.Key]string
	podRefs map[eventlog.Key][]eventlog.Key
	// claimUsers are the pods using each claim, whose PersistentVolume follows the claim.
	claimUsers map[eventlog.Key]map[eventlog.Key]bool
	claimPV    map[eventlog.Key]eventlog.Key
	// holders counts, per object, the pods of each node (or Ingresses, for everyNode) using it.
	holders map[eventlog.Key]map[string]int
	ingRefs map[eventlog.Key][]eventlog.Key
	// assigned is the node that provisions, grows and reclaims each claim selected for it and
	// each local volume it made (assignedNode).
	assigned map[eventlog.Key]string
	pos      uint64 // the last change handled
}

type nodeFeed struct {
	synced  bool
	pos     uint64 // what its feed was last told
	pending []eventlog.FeedEntry
	// fresh are keys queued in pending since the last publish, to send each once.
	fresh map[eventlog.Key]int
	// wrote: the node wrote something since the last publish; it waits to see it passed.
	wrote bool
}

func (f *feeder) run(ctx context.Context) error {
	ticker := time.NewTicker(f.cfg.MarkEvery)
	defer ticker.Stop()
	var g *graph
	var hellos []hello
	for {
		marks := false
		select {
		case <-ctx.Done():
			return nil
		case <-f.wake:
		case <-ticker.C:
			marks = true
		case h := <-f.hellos:
			hellos = append(hellos, h)
		}
		if parts := f.e.Partitions(); parts != nil && !parts.OwnsPartition(0) {
			g = nil // another replica feeds the nodes; resync when this one takes over
			f.mu.Lock()
			f.queue = nil
			f.mu.Unlock()
			continue
		}
		f.mu.Lock()
		loaded := f.loaded
		queue := f.queue
		f.queue = nil
		f.mu.Unlock()
		if !loaded {
			continue
		}
		if g == nil {
			g = f.build()
		}
		for _, c := range queue {
			g.handle(f.store, c)
		}
		for _, h := range hellos {
			g.node(h.node)
		}
		if err := f.publish(ctx, g, marks); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.e.Logger().Warn("nodefeed: publishing", "err", err)
			g = nil // start again from the store: level-triggered
			continue
		}
		for _, h := range hellos {
			h.done <- g.nodes[h.node].pos
		}
		hellos = hellos[:0]
	}
}

// build makes the graph from the store: every node needs a resync.
func (f *feeder) build() *graph {
	g := &graph{nodes: map[string]*nodeFeed{}, podNode: map[eventlog.Key]string{}, podRefs: map[eventlog.Key][]eventlog.Key{},
		claimUsers: map[eventlog.Key]map[eventlog.Key]bool{}, claimPV: map[eventlog.Key]eventlog.Key{},
		holders: map[eventlog.Key]map[string]int{}, ingRefs: map[eventlog.Key][]eventlog.Key{}, assigned: map[eventlog.Key]string{}}
	g.pos = f.store.Applied()
	nodes, _ := f.store.List(projections.Query{Resource: schema.GroupResource{Resource: "nodes"}})
	for _, n := range nodes {
		g.node(n.Key.Name)
	}
	claims, _ := f.store.List(projections.Query{Resource: claimsGR})
	for _, c := range claims {
		g.noteClaim(c)
		g.assign(f.store, c.Key, assignedNode(c), false)
	}
	volumes, _ := f.store.List(projections.Query{Resource: volumesGR})
	for _, v := range volumes {
		g.assign(f.store, v.Key, assignedNode(v), false)
	}
	pods, _ := f.store.List(projections.Query{Resource: podsGR})
	for _, p := range pods {
		if node := p.Fields["spec.nodeName"]; node != "" {
			g.bind(f.store, p, node, false)
		}
	}
	ings, _ := f.store.List(projections.Query{Resource: ingressGR})
	for _, o := range ings {
		g.setIngress(f.store, o.Key, ingressRefs(o), false)
	}
	return g
}

func (g *graph) node(name string) *nodeFeed {
	n := g.nodes[name]
	if n == nil {
		n = &nodeFeed{fresh: map[eventlog.Key]int{}}
		g.nodes[name] = n
	}
	return n
}

// emit queues the current state of key (from the store; its removal if it is gone) for node.
func (g *graph) emit(s *projections.Store, node string, key eventlog.Key) {
	n := g.node(node)
	if !n.synced {
		return // the resync sends everything
	}
	e := eventlog.FeedEntry{Key: key, Rev: g.pos}
	if o, ok := s.Get(key); ok {
		ev := o.Stored
		if ev == nil {
			ev = o.Event
		}
		e.Rev, e.Data = o.Seq, eventlog.AppendEvent(nil, ev)
	}
	if i, ok := n.fresh[key]; ok {
		n.pending[i] = e
		return
	}
	n.fresh[key] = len(n.pending)
	n.pending = append(n.pending, e)
}

// remove queues key's removal from node's feed.
func (g *graph) remove(node string, key eventlog.Key) {
	n := g.node(node)
	if !n.synced {
		return
	}
	e := eventlog.FeedEntry{Key: key, Rev: g.pos}
	if i, ok := n.fresh[key]; ok {
		n.pending[i] = e
		return
	}
	n.fresh[key] = len(n.pending)
	n.pending = append(n.pending, e)
}

func (g *graph) emitAll(s *projections.Store, key eventlog.Key) {
	for name := range g.nodes {
		g.emit(s, name, key)
	}
}

// hold counts one more user of key on node (everyNode: all), queuing it for the nodes that did
// not have it.
func (g *graph) hold(s *projections.Store, node string, key eventlog.Key, emit bool) {
	h := g.holders[key]
	if h == nil {
		h = map[string]int{}
		g.holders[key] = h
	}
	h[node]++
	if !emit || h[node] > 1 {
		return
	}
	if node == everyNode {
		for name := range g.nodes {
			if h[name] == 0 {
				g.emit(s, name, key)
			}
		}
		return
	}
	if h[everyNode] == 0 {
		g.emit(s, node, key)
	}
}

// release counts one user of key on node fewer, removing it from the feeds that lose it.
func (g *graph) release(node string, key eventlog.Key) {
	h := g.holders[key]
	if h == nil || h[node] == 0 {
		return
	}
	h[node]--
	if h[node] > 0 {
		return
	}
	delete(h, node)
	if len(h) == 0 {
		delete(g.holders, key)
	}
	if node == everyNode {
		for name := range g.nodes {
			if h[name] == 0 {
				g.remove(name, key)
			}
		}
		return
	}
	if h[everyNode] == 0 {
		g.remove(node, key)
	}
}

// refsOf is what a pod uses, its claims' PersistentVolumes included.
func (g *graph) refsOf(p *projections.Object) []eventlog.Key {
	obj, err := p.Decode()
	if err != nil {
		return nil
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	refs := podRefs(pod)
	for _, r := range refs {
		if r.Resource == "persistentvolumeclaims" {
			if pv, ok := g.claimPV[r]; ok {
				refs = append(refs, pv)
			}
		}
	}
	return refs
}

// bind records pod p on node with what it uses.
func (g *graph) bind(s *projections.Store, p *projections.Object, node string, emit bool) {
	g.node(node)
	g.podNode[p.Key] = node
	refs := g.refsOf(p)
	g.podRefs[p.Key] = refs
	for _, r := range refs {
		if r.Resource == "persistentvolumeclaims" {
			u := g.claimUsers[r]
			if u == nil {
				u = map[eventlog.Key]bool{}
				g.claimUsers[r] = u
			}
			u[p.Key] = true
		}
		g.hold(s, node, r, emit)
	}
}

// unbind forgets pod key on its node, and what it used.
func (g *graph) unbind(key eventlog.Key) {
	node, ok := g.podNode[key]
	if !ok {
		return
	}
	for _, r := range g.podRefs[key] {
		if u := g.claimUsers[r]; u != nil {
			delete(u, key)
			if len(u) == 0 {
				delete(g.claimUsers, r)
			}
		}
		g.release(node, r)
	}
	delete(g.podNode, key)
	delete(g.podRefs, key)
}

func (g *graph) noteClaim(o *projections.Object) bool {
	obj, err := o.Decode()
	if err != nil {
		return false
	}
	pvc, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return false
	}
	old, had := g.claimPV[o.Key]
	if pvc.Spec.VolumeName == "" {
		delete(g.claimPV, o.Key)
		return had
	}
	pv := eventlog.Key{Resource: "persistentvolumes", Name: pvc.Spec.VolumeName}
	g.claimPV[o.Key] = pv
	return !had || old != pv
}

func ingressRefs(o *projections.Object) []eventlog.Key {
	obj, err := o.Decode()
	if err != nil {
		return nil
	}
	ing, ok := obj.(*networkingv1.Ingress)
	if !ok {
		return nil
	}
	var out []eventlog.Key
	for _, t := range ing.Spec.TLS {
		if t.SecretName != "" {
			k := eventlog.Key{Resource: "secrets", Namespace: ing.Namespace, Name: t.SecretName}
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

func (g *graph) setIngress(s *projections.Store, key eventlog.Key, refs []eventlog.Key, emit bool) {
	for _, r := range refs {
		g.hold(s, everyNode, r, emit)
	}
	for _, r := range g.ingRefs[key] {
		g.release(everyNode, r)
	}
	if len(refs) == 0 {
		delete(g.ingRefs, key)
	} else {
		g.ingRefs[key] = refs
	}
}

// handle folds one change of the log into the graph and queues what the feeds need.
func (g *graph) handle(s *projections.Store, c projections.Change) {
	o := c.New
	if o == nil {
		o = c.Old
	}
	if o == nil {
		return
	}
	if c.Seq > g.pos {
		g.pos = c.Seq
	}
	if a := o.Event.GetActor(); a.GetKind() == eventv1.ActorKind_ACTOR_KIND_NODE {
		if n := g.nodes[a.GetName()]; n != nil {
			n.wrote = true
		}
	}
	key := o.Key
	gr := schema.GroupResource{Group: key.Group, Resource: key.Resource}
	switch {
	case gr == podsGR:
		old := g.podNode[key]
		node := ""
		if c.New != nil {
			node = c.New.Fields["spec.nodeName"]
		}
		if old != "" && old != node {
			g.unbind(key)
			g.remove(old, key)
		}
		if node != "" {
			if old != node {
				g.bind(s, c.New, node, true)
			}
			g.emit(s, node, key)
		}
		return
	case gr.Resource == "nodes" && gr.Group == "":
		if c.New != nil {
			g.node(key.Name)
		}
	case gr == claimsGR:
		if c.New != nil && g.noteClaim(c.New) || c.New == nil {
			if c.New == nil {
				delete(g.claimPV, key)
			}
			// The claim's volume changed: its pods use the new one.
			for p := range g.claimUsers[key] {
				if po, ok := s.Get(p); ok {
					node := g.podNode[p]
					g.unbind(p)
					g.bind(s, po, node, true)
				}
			}
		}
	case gr == ingressGR:
		var refs []eventlog.Key
		if c.New != nil {
			refs = ingressRefs(c.New)
		}
		g.setIngress(s, key, refs, true)
	}
	if gr == claimsGR || gr == volumesGR {
		node := ""
		if c.New != nil {
			node = assignedNode(c.New)
		}
		g.assign(s, key, node, true)
	}
	if clusterWide[gr] {
		g.emitAll(s, key)
		return
	}
	if gr == leasesGR && key.Namespace == "kube-node-lease" {
		if _, ok := g.nodes[key.Name]; ok {
			g.emit(s, key.Name, key)
		}
		return
	}
	h := g.holders[key]
	if h[everyNode] > 0 {
		g.emitAll(s, key)
		return
	}
	for node := range h {
		g.emit(s, node, key)
	}
}

// publish sends what each feed has pending (resyncing feeds that need it) and, with marks, tells
// the feeds that had nothing the position handled.
func (f *feeder) publish(ctx context.Context, g *graph, marks bool) error {
	for name, n := range g.nodes {
		if !n.synced {
			if err := f.resync(ctx, g, name, n); err != nil {
				return err
			}
			continue
		}
		if len(n.pending) == 0 && (!marks && !n.wrote || n.pos >= g.pos) {
			continue
		}
		n.wrote = false
		if err := f.cfg.Feeds.PublishFeed(ctx, name, g.pos, n.pending); err != nil {
			return err
		}
		n.pending, n.pos = n.pending[:0], g.pos
		clear(n.fresh)
	}
	return nil
}

// resync makes node's feed what the graph says it should hold.
func (f *feeder) resync(ctx context.Context, g *graph, name string, n *nodeFeed) error {
	held, _, err := f.cfg.Feeds.ReadFeed(ctx, name)
	if err != nil {
		return err
	}
	want := map[eventlog.Key]bool{}
	for gr := range clusterWide {
		objs, _ := f.store.List(projections.Query{Resource: gr})
		for _, o := range objs {
			want[o.Key] = true
		}
	}
	pods, _ := f.store.List(projections.Query{Resource: podsGR, Fields: fields.OneTermEqualSelector("spec.nodeName", name)})
	for _, p := range pods {
		want[p.Key] = true
	}
	for key, h := range g.holders {
		if h[name] > 0 || h[everyNode] > 0 {
			want[key] = true
		}
	}
	want[eventlog.Key{Group: leasesGR.Group, Resource: leasesGR.Resource, Namespace: "kube-node-lease", Name: name}] = true
	n.synced = true
	n.pending, n.fresh = n.pending[:0], map[eventlog.Key]int{}
	for key := range want {
		o, ok := f.store.Get(key)
		if !ok {
			continue
		}
		if held[key] == o.Seq {
			continue
		}
		g.emit(f.store, name, key)
	}
	for key := range held {
		if _, ok := f.store.Get(key); !ok || !want[key] {
			g.remove(name, key)
		}
	}
	if err := f.cfg.Feeds.PublishFeed(ctx, name, g.pos, n.pending); err != nil {
		n.synced = false
		return fmt.Errorf("nodefeed: resync of node %s: %w", name, err)
	}
	n.pending, n.pos = n.pending[:0], g.pos
	clear(n.fresh)
	return nil
}

// assign holds a claim or volume for the node its local provisioner works on, releasing it from
// the node it was assigned to before.
func (g *graph) assign(s *projections.Store, key eventlog.Key, node string, emit bool) {
	old := g.assigned[key]
	if old == node {
		return
	}
	if node != "" {
		g.assigned[key] = node
		g.hold(s, node, key, emit)
	} else {
		delete(g.assigned, key)
	}
	if old != "" {
		g.release(old, key)
	}
}

// assignedNode is the node whose agent provisions a claim (the node the scheduler selected for
// it, volume.kubernetes.io/selected-node) or owns a volume of the local provisioner (the one
// node of its required node affinity), or "".
func assignedNode(o *projections.Object) string {
	obj, err := o.Decode()
	if err != nil {
		return ""
	}
	switch v := obj.(type) {
	case *corev1.PersistentVolumeClaim:
		return v.Annotations[storagehelpers.AnnSelectedNode]
	case *corev1.PersistentVolume:
		return registry.LocalVolumeNode(v)
	}
	return ""
}

// CanRead reports whether node may read the object at key, from store alone (the control plane's
// projection): what the API server checks before it opens a Secret for a node. It answers as the
// feed does for Secrets and the other objects pods use; for the resources every node reads, yes.
func CanRead(store *projections.Store, node string, key eventlog.Key) bool {
	gr := schema.GroupResource{Group: key.Group, Resource: key.Resource}
	if clusterWide[gr] {
		return true
	}
	if gr == podsGR {
		o, ok := store.Get(key)
		return ok && o.Fields["spec.nodeName"] == node
	}
	if gr == leasesGR {
		return key.Namespace == "kube-node-lease" && key.Name == node
	}
	if gr == claimsGR || gr == volumesGR {
		if o, ok := store.Get(key); ok && assignedNode(o) == node {
			return true
		}
	}
	g := &graph{claimPV: map[eventlog.Key]eventlog.Key{}}
	pods, _ := store.List(projections.Query{Resource: podsGR, Fields: fields.OneTermEqualSelector("spec.nodeName", node)})
	for _, p := range pods {
		obj, err := p.Decode()
		if err != nil {
			continue
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			continue
		}
		for _, r := range podRefs(pod) {
			if r == key {
				return true
			}
			if r.Resource == "persistentvolumeclaims" && gr.Resource == "persistentvolumes" {
				if c, ok := store.Get(r); ok && g.noteClaim(c) && g.claimPV[r] == key {
					return true
				}
			}
		}
	}
	if gr.Resource == "secrets" && gr.Group == "" {
		ings, _ := store.List(projections.Query{Resource: ingressGR, Namespace: key.Namespace})
		for _, o := range ings {
			if slices.Contains(ingressRefs(o), key) {
				return true
			}
		}
	}
	return false
}
