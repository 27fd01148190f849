package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

var (
	podsResource       = schema.GroupResource{Resource: "pods"}
	nodesResource      = schema.GroupResource{Resource: "nodes"}
	namespacesResource = schema.GroupResource{Resource: "namespaces"}
)

// lister is what loading the cluster cache needs of the projection.
type lister interface {
	List(q projections.Query) ([]*projections.Object, uint64)
}

var _ lister = (*projections.Store)(nil)

// cluster is the scheduler's picture of the nodes and of what is placed on them, kept from the
// projection's changes: every node, every pod bound to a node and not terminated, the pods
// the scheduler has assumed on a node while their binding is in flight, and the namespaces'
// labels (which the namespaceSelectors of pod affinity terms select on). Assumed pods are what
// let the scheduler place the next pod at once, without waiting for the previous binding to come
// back through the log. All of it is guarded by mu; placement decisions are made under it.
type cluster struct {
	log *slog.Logger

	mu      sync.Mutex
	ready   bool
	readyCh chan struct{}              // closed once the first listing is in
	buffer  []projections.Change       // changes seen before the first listing is in
	applied uint64                     // sequence of the last change applied
	advance chan struct{}              // closed and replaced when applied grows
	nodes   map[string]*placement.Node // by name, known or only referred to by pods
	list    []*placement.Node          // known nodes sorted by name; nil when it must be rebuilt
	pods    map[string]*placed         // pods accounted on a node, by namespace/name
	ns      placement.Namespaces       // namespace labels, by name
}

// placed is where a pod is accounted.
type placed struct {
	node    string
	pod     *placement.Pod
	uid     types.UID
	assumed bool // the scheduler's binding is in flight; no revision bound to node seen yet
}

func newCluster(log *slog.Logger) *cluster {
	return &cluster{
		log:     log,
		readyCh: make(chan struct{}),
		advance: make(chan struct{}),
		nodes:   map[string]*placement.Node{},
		pods:    map[string]*placed{},
		ns:      placement.Namespaces{},
	}
}

// Load loads the projection's namespaces, nodes and pods: the cache is an engine.Cache, whose
// engine passes it the projection's changes (Observe) from before it calls Load.
func (c *cluster) Load(s *projections.Store) { c.load(s) }

// load lists the namespaces, nodes and pods. Changes observed while it lists are held back and
// applied after, each resource from its own listing's sequence, so nothing is missed and nothing
// applied twice.
func (c *cluster) load(src lister) {
	namespaces, nsAt := src.List(projections.Query{Resource: namespacesResource})
	nodes, nodesAt := src.List(projections.Query{Resource: nodesResource})
	pods, podsAt := src.List(projections.Query{Resource: podsResource})
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range namespaces {
		c.applyNamespace(projections.Change{Seq: o.Seq, New: o})
	}
	for _, o := range nodes {
		c.applyNode(projections.Change{Seq: o.Seq, New: o})
	}
	for _, o := range pods {
		c.applyPod(projections.Change{Seq: o.Seq, New: o})
	}
	c.applied = max(nsAt, nodesAt, podsAt)
	for _, ch := range c.buffer {
		switch resourceOf(ch) {
		case namespacesResource:
			if ch.Seq > nsAt {
				c.applyNamespace(ch)
			}
		case nodesResource:
			if ch.Seq > nodesAt {
				c.applyNode(ch)
			}
		case podsResource:
			if ch.Seq > podsAt {
				c.applyPod(ch)
			}
		}
		c.applied = max(c.applied, ch.Seq)
	}
	c.buffer = nil
	c.ready = true
	close(c.readyCh)
	c.bump()
}

func resourceOf(ch projections.Change) schema.GroupResource {
	o := ch.New
	if o == nil {
		o = ch.Old
	}
	if o == nil {
		return schema.GroupResource{}
	}
	return schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
}

// Observe applies a change of the projection (engine.Cache).
func (c *cluster) Observe(ch projections.Change) {
	gr := resourceOf(ch)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready {
		if gr == nodesResource || gr == podsResource || gr == namespacesResource {
			c.buffer = append(c.buffer, ch)
		}
		return
	}
	switch gr {
	case namespacesResource:
		c.applyNamespace(ch)
	case nodesResource:
		c.applyNode(ch)
	case podsResource:
		c.applyPod(ch)
	}
	c.applied = ch.Seq
	c.bump()
}

// bump wakes those waiting for the applied sequence to grow. Called with mu held.
func (c *cluster) bump() {
	close(c.advance)
	c.advance = make(chan struct{})
}

// waitReady returns once the first listing is in.
func (c *cluster) waitReady(ctx context.Context) error {
	select {
	case <-c.readyCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("scheduler: waiting for the cluster cache: %w", ctx.Err())
	}
}

// waitApplied returns once the cache has applied the change at seq (or a later one).
func (c *cluster) waitApplied(ctx context.Context, seq uint64) error {
	for {
		c.mu.Lock()
		applied, ch := c.applied, c.advance
		c.mu.Unlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("scheduler: waiting for the cluster cache to reach %d (at %d): %w", seq, applied, ctx.Err())
		}
	}
}

func (c *cluster) applyNode(ch projections.Change) {
	if ch.New == nil {
		name := ch.Old.Key.Name
		if nd := c.nodes[name]; nd != nil {
			if nd.PodCount() > 0 {
				nd.SetNode(nil) // keep the accounting of its pods, which still exist
			} else {
				delete(c.nodes, name)
			}
		}
		c.list = nil
		return
	}
	obj, err := ch.New.Decode()
	n, ok := obj.(*corev1.Node)
	if err != nil || !ok {
		c.log.Error("scheduler: cannot read node; keeping what was known of it", "node", ch.New.Key.Name, "seq", ch.Seq, "err", err)
		return
	}
	if nd := c.nodes[n.Name]; nd != nil {
		nd.SetNode(n)
	} else {
		c.nodes[n.Name] = placement.NewNode(n.Name, n)
	}
	c.list = nil
}

// applyNamespace keeps a namespace's labels, which the projection carries without decoding.
func (c *cluster) applyNamespace(ch projections.Change) {
	if ch.New == nil {
		delete(c.ns, ch.Old.Key.Name)
		return
	}
	c.ns[ch.New.Key.Name] = ch.New.Labels
}

func podKey(k eventlog.Key) string { return k.Namespace + "/" + k.Name }

// applyPod accounts a pod revision: on its node if it is bound there and not terminated,
// nowhere otherwise. An assumed pod keeps its assumption while its revisions are still unbound.
func (c *cluster) applyPod(ch projections.Change) {
	o := ch.New
	if o == nil {
		c.unaccount(podKey(ch.Old.Key))
		return
	}
	key := podKey(o.Key)
	if unchangedPlacement(ch) {
		return
	}
	obj, err := o.Decode()
	p, ok := obj.(*corev1.Pod)
	if err != nil || !ok {
		c.log.Error("scheduler: cannot read pod; keeping what was known of it", "pod", key, "seq", ch.Seq, "err", err)
		return
	}
	cur := c.pods[key]
	if cur != nil && cur.assumed && cur.uid == p.UID && p.Spec.NodeName == "" && !placement.Terminated(p) {
		return // our binding is still in flight
	}
	c.unaccount(key)
	if p.Spec.NodeName == "" || placement.Terminated(p) {
		return
	}
	c.account(key, p.Spec.NodeName, placement.NewPod(p), p.UID, false)
}

// unchangedPlacement reports, without decoding, whether a pod revision changes nothing the cache
// keeps: a status change (as the node agent writes) that neither binds, moves nor ends the pod.
func unchangedPlacement(ch projections.Change) bool {
	if ch.Old == nil || ch.New == nil || ch.New.Event.GetReason() != "status" {
		return false
	}
	of, nf := ch.Old.Fields, ch.New.Fields
	return of["spec.nodeName"] == nf["spec.nodeName"] &&
		terminalPhase(of["status.phase"]) == terminalPhase(nf["status.phase"]) &&
		ch.Old.Event.GetRef().GetUid() == ch.New.Event.GetRef().GetUid()
}

func terminalPhase(phase string) bool {
	return phase == string(corev1.PodSucceeded) || phase == string(corev1.PodFailed)
}

// account places the pod with key on node, wherever it was accounted before.
func (c *cluster) account(key, node string, p *placement.Pod, uid types.UID, assumed bool) {
	c.unaccount(key)
	nd := c.nodes[node]
	if nd == nil {
		nd = placement.NewNode(node, nil)
		c.nodes[node] = nd
	}
	nd.Add(p)
	c.pods[key] = &placed{node: node, pod: p, uid: uid, assumed: assumed}
}

func (c *cluster) unaccount(key string) {
	cur := c.pods[key]
	if cur == nil {
		return
	}
	delete(c.pods, key)
	if nd := c.nodes[cur.node]; nd != nil {
		nd.Remove(key)
		if nd.Node == nil && nd.PodCount() == 0 {
			delete(c.nodes, cur.node)
		}
	}
}

// known returns the nodes known by their object, sorted by name. Called with mu held.
func (c *cluster) known() []*placement.Node {
	if c.list == nil {
		c.list = make([]*placement.Node, 0, len(c.nodes))
		for _, nd := range c.nodes {
			if nd.Node != nil {
				c.list = append(c.list, nd)
			}
		}
		slices.SortFunc(c.list, func(a, b *placement.Node) int { return strings.Compare(a.Name, b.Name) })
	}
	return c.list
}

// schedule places p and, if a node fits, assumes it there until the binding comes back or is
// forgotten.
func (c *cluster) schedule(p *placement.Pod) placement.Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.pods[p.Key]; cur != nil {
		if cur.uid == p.Pod.UID {
			// Already assumed (a binding in flight for it) or bound: place it nowhere else.
			return placement.Decision{Node: cur.node}
		}
		// An earlier pod of that name, assumed while it was deleted and made again.
		c.unaccount(p.Key)
	}
	d := placement.Place(c.known(), c.ns, p)
	if d.Node != "" {
		c.account(p.Key, d.Node, p, p.Pod.UID, true)
	}
	return d
}

// forget drops the assumption of the pod with key and uid, after its binding failed. A pod
// whose binding came back meanwhile stays where it is.
func (c *cluster) forget(key string, uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.pods[key]; cur != nil && cur.assumed && cur.uid == uid {
		c.unaccount(key)
	}
}

// assumedOn returns the node a pod is assumed or bound on, if any.
func (c *cluster) assumedOn(key string, uid types.UID) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.pods[key]
	if cur == nil || cur.uid != uid {
		return "", false
	}
	return cur.node, true
}
