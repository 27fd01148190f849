// Package nodelifecycle watches node health, as kube-controller-manager's node lifecycle and
// taint eviction controllers do. A node agent renews its Lease in kube-node-lease; a node whose
// lease (or Ready heartbeat) has not been seen to change for the grace period (40 s by default)
// gets its conditions set to Unknown ("Kubelet stopped posting node status."), the
// node.kubernetes.io/unreachable taints (NoSchedule and NoExecute; not-ready when the node
// reports Ready=False itself), and its pods are marked not ready. Pods on a node with NoExecute
// taints they do not tolerate are deleted at once; those that tolerate them for
// tolerationSeconds (300 s by default, from the tolerations the API server adds) are deleted
// when that runs out, counted from the taint's timeAdded, so that their controllers recreate
// them on other nodes. A cordoned node (spec.unschedulable) gets the unschedulable taint. When
// the node reports Ready again its taints go.
//
// Lease renewals are observed in every replica (each follows the whole log), so a replica that
// takes a node over knows its last renewal; a process that starts gives every node a fresh grace
// period, as Kubernetes does, rather than trusting clocks it does not own.
package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler, as the actor of its writes.
const Name = "nodelifecycle"

var (
	nodesResource  = schema.GroupResource{Resource: "nodes"}
	podsResource   = schema.GroupResource{Resource: "pods"}
	leasesResource = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}
)

// Defaults, as kube-controller-manager's.
const (
	DefaultGracePeriod = 40 * time.Second
)

// EventRecorder records Kubernetes Events; *recorder.Recorder is one.
type EventRecorder interface {
	Eventf(obj runtime.Object, cause uint64, eventtype, reason, format string, args ...any)
}

type writer interface {
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
}

var _ writer = (*registry.Registry)(nil)

type lister interface {
	List(q projections.Query) ([]*projections.Object, uint64)
}

// Config configures the reconciler.
type Config struct {
	// GracePeriod a node may go without renewing its lease before it is NotReady. Default 40s.
	GracePeriod time.Duration
	// Workers. Default 4 (the engine's).
	Workers int
}

// Reconciler watches nodes.
type Reconciler struct {
	cfg   Config
	store lister
	w     writer
	ix    *informer.Index
	now   func() time.Time
	kNode *kinds.Kind
	kPod  *kinds.Kind
	log   *slog.Logger
	// nodeEvents records the node controller's Events ("node-controller"), evictionEvents the
	// taint eviction controller's ("taint-eviction-controller").
	nodeEvents, evictionEvents EventRecorder

	mu     sync.Mutex
	probes map[string]time.Time // node → when it was last seen alive (lease renewed, heartbeat)
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the node lifecycle reconciler on e: it reconciles nodes, watches node leases
// and heartbeats (the time they are seen, on e's clock, is a node's last sign of life) and pods
// that land on a node with NoExecute taints.
func New(e *engine.Engine, cfg Config) (*Reconciler, error) {
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	ks, err := e.Kinds(nodesResource, podsResource)
	if err != nil {
		return nil, fmt.Errorf("nodelifecycle: %w", err)
	}
	kNode, kPod := ks[0], ks[1]
	r := &Reconciler{cfg: cfg, store: e.Store(), w: e.Registry(), ix: e.Index(), now: e.Clock().Now, kNode: kNode, kPod: kPod,
		log: e.Logger(), probes: map[string]time.Time{}}
	for _, rec := range []struct {
		to        *EventRecorder
		component string
	}{{&r.nodeEvents, "node-controller"}, {&r.evictionEvents, "taint-eviction-controller"}} {
		if *rec.to, err = e.EventRecorder(Name, rec.component); err != nil {
			return nil, err
		}
	}
	e.Register(engine.Registration{
		Name: Name,
		For:  nodesResource,
		Watches: []engine.Watch{
			engine.Watches(nodesResource, r.nodeChanged),
			engine.Watches(leasesResource, r.leaseChanged),
			engine.Watches(podsResource, r.podChanged),
		},
		Reads:      []schema.GroupResource{podsResource},
		Workers:    cfg.Workers,
		Reconciler: engine.ReconcilerFunc(r.reconcile),
	})
	return r, nil
}

func (r *Reconciler) probe(node string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if at.After(r.probes[node]) {
		r.probes[node] = at
	}
}

// lastProbe is when node was last seen alive; a node never seen gets the current time.
func (r *Reconciler) lastProbe(node string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.probes[node]
	if !ok {
		t = r.now()
		r.probes[node] = t
	}
	return t
}

// leaseChanged notes a node lease's renewal, and returns its node.
func (r *Reconciler) leaseChanged(ev engine.Event) []eventlog.Key {
	o := ev.Object()
	if o.Key.Namespace != corev1.NamespaceNodeLease || ev.New == nil {
		return nil
	}
	r.probe(o.Key.Name, r.now())
	return []eventlog.Key{{Resource: "nodes", Name: o.Key.Name}}
}

// nodeChanged notes a change of a node's Ready heartbeat (the node itself is queued as For).
func (r *Reconciler) nodeChanged(ev engine.Event) []eventlog.Key {
	o := ev.Object()
	if ev.New == nil {
		r.mu.Lock()
		delete(r.probes, o.Key.Name)
		r.mu.Unlock()
	} else if heartbeat(ev.Old) != heartbeat(ev.New) {
		r.probe(o.Key.Name, r.now())
	}
	return nil
}

// podChanged returns the node a pod lands on if it has NoExecute taints: that pod is the taint
// manager's business.
func (r *Reconciler) podChanged(ev engine.Event) []eventlog.Key {
	o := ev.Object()
	node := o.Fields["spec.nodeName"]
	if node == "" || ev.New == nil {
		return nil
	}
	if ev.Old != nil && ev.Old.Fields["spec.nodeName"] == node {
		return nil
	}
	key := eventlog.Key{Resource: "nodes", Name: node}
	if obj, ok := r.ix.Object(key); ok && len(noExecuteTaints(obj.(*corev1.Node))) > 0 {
		return []eventlog.Key{key}
	}
	return nil
}

// heartbeat is the Ready condition's lastHeartbeatTime of a projected node ("" if none).
func heartbeat(o *projections.Object) string {
	if o == nil {
		return ""
	}
	obj, err := o.Decode()
	if err != nil {
		return ""
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return ""
	}
	if c := readyCondition(n); c != nil {
		return c.LastHeartbeatTime.String()
	}
	return ""
}

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func noExecuteTaints(n *corev1.Node) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
}

func (r *Reconciler) request(cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(Name), Cause: cause}
}

func (r *Reconciler) reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	obj, ok := r.ix.Object(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	node := obj.(*corev1.Node)
	now := r.now()
	probe := r.lastProbe(node.Name)
	next := probe.Add(r.cfg.GracePeriod).Sub(now) + 10*time.Millisecond
	var err error
	if next <= 0 {
		if node, err = r.markUnknown(ctx, node, probe, req.Cause); err != nil {
			return engine.Result{}, err
		}
		next = 0
	}
	if node, err = r.syncTaints(ctx, node, req.Cause); err != nil {
		return engine.Result{}, err
	}
	if c := readyCondition(node); c != nil && c.Status == corev1.ConditionUnknown {
		if err := r.markPodsNotReady(ctx, node, req.Cause); err != nil {
			return engine.Result{}, err
		}
	}
	evictIn, err := r.evictPods(ctx, node, req.Cause)
	if err != nil {
		return engine.Result{}, err
	}
	switch {
	case next <= 0:
		next = evictIn
	case evictIn > 0 && evictIn < next:
		next = evictIn
	}
	return engine.Result{RequeueAfter: next}, nil
}

const (
	reasonUnknown      = "NodeStatusUnknown"
	reasonNeverUpdated = "NodeStatusNeverUpdated"
	msgStopped         = "Kubelet stopped posting node status."
	msgNever           = "Kubelet never posted node status."
)

// markUnknown sets the conditions of a node that stopped renewing its lease to Unknown.
func (r *Reconciler) markUnknown(ctx context.Context, node *corev1.Node, probe time.Time, cause uint64) (*corev1.Node, error) {
	if c := readyCondition(node); c != nil && c.Status == corev1.ConditionUnknown {
		return node, nil
	}
	now := metav1.NewTime(r.now())
	out, err := r.w.Modify(ctx, r.kNode, "", node.Name, r.request(cause), registry.UpdateOptions{Subresource: "status"}, func(obj runtime.Object) (runtime.Object, error) {
		n := obj.(*corev1.Node)
		if n.UID != node.UID {
			return nil, errSkip
		}
		if r.lastProbe(n.Name) != probe {
			return nil, errSkip // it came back meanwhile
		}
		ready := readyCondition(n)
		if ready == nil {
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
				Reason: reasonNeverUpdated, Message: msgNever, LastHeartbeatTime: n.CreationTimestamp, LastTransitionTime: now})
		}
		for i := range n.Status.Conditions {
			c := &n.Status.Conditions[i]
			if c.Status == corev1.ConditionUnknown {
				continue
			}
			c.Status, c.Reason, c.Message, c.LastTransitionTime = corev1.ConditionUnknown, reasonUnknown, msgStopped, now
		}
		return n, nil
	})
	if errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return node, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nodelifecycle: marking node %s unknown: %w", node.Name, err)
	}
	n := out.(*corev1.Node)
	r.log.Info("nodelifecycle: node stopped renewing its lease", "node", node.Name, "lastSeen", probe)
	if r.nodeEvents != nil {
		r.nodeEvents.Eventf(n, cause, corev1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", n.Name)
	}
	return n, nil
}

var errSkip = errors.New("nodelifecycle: nothing to do")

// wantTaints are the taints the node's conditions and cordon call for, of the kinds this
// reconciler manages.
func wantTaints(n *corev1.Node) []corev1.Taint {
	var out []corev1.Taint
	if c := readyCondition(n); c != nil {
		switch c.Status {
		case corev1.ConditionUnknown:
			out = append(out, corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule},
				corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute})
		case corev1.ConditionFalse:
			out = append(out, corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule},
				corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute})
		}
	}
	if n.Spec.Unschedulable {
		out = append(out, corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	}
	return out
}

func managed(t corev1.Taint) bool {
	switch t.Key {
	case corev1.TaintNodeUnreachable, corev1.TaintNodeNotReady:
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	case corev1.TaintNodeUnschedulable:
		return t.Effect == corev1.TaintEffectNoSchedule
	}
	return false
}

// syncTaints puts the taints the node calls for and removes the managed ones it no longer does.
func (r *Reconciler) syncTaints(ctx context.Context, node *corev1.Node, cause uint64) (*corev1.Node, error) {
	next := taintsFor(node, r.now())
	if apiequality.Semantic.DeepEqual(next, node.Spec.Taints) {
		return node, nil
	}
	out, err := r.w.Modify(ctx, r.kNode, "", node.Name, r.request(cause), registry.UpdateOptions{}, func(obj runtime.Object) (runtime.Object, error) {
		n := obj.(*corev1.Node)
		if n.UID != node.UID {
			return nil, errSkip
		}
		taints := taintsFor(n, r.now())
		if apiequality.Semantic.DeepEqual(taints, n.Spec.Taints) {
			return nil, errSkip
		}
		n.Spec.Taints = taints
		return n, nil
	})
	if errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return node, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nodelifecycle: tainting node %s: %w", node.Name, err)
	}
	n := out.(*corev1.Node)
	if c := readyCondition(n); c != nil && c.Status == corev1.ConditionTrue && slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool {
		return t.Key == corev1.TaintNodeUnreachable || t.Key == corev1.TaintNodeNotReady
	}) && r.nodeEvents != nil {
		r.nodeEvents.Eventf(n, cause, corev1.EventTypeNormal, "NodeReady", "Node %s status is now: NodeReady", n.Name)
	}
	return n, nil
}

// taintsFor is the node's taints with the managed ones as its state calls for; a taint that
// stays keeps its timeAdded, a NoExecute taint added now gets the current time.
func taintsFor(n *corev1.Node, now time.Time) []corev1.Taint {
	want := wantTaints(n)
	var out []corev1.Taint
	for _, t := range n.Spec.Taints {
		if !managed(t) {
			out = append(out, t)
			continue
		}
		if slices.ContainsFunc(want, func(w corev1.Taint) bool { return w.Key == t.Key && w.Effect == t.Effect }) {
			out = append(out, t)
		}
	}
	for _, w := range want {
		if slices.ContainsFunc(out, func(t corev1.Taint) bool { return w.Key == t.Key && w.Effect == t.Effect }) {
			continue
		}
		if w.Effect == corev1.TaintEffectNoExecute {
			// Rounded up to the second the API keeps, so that no toleration ends early.
			at := metav1.NewTime(now.Add(time.Second - 1).Truncate(time.Second))
			w.TimeAdded = &at
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// podsOn returns the pods bound to a node.
func (r *Reconciler) podsOn(node string) []*corev1.Pod {
	objs, _ := r.store.List(projections.Query{Resource: podsResource, Fields: fields.OneTermEqualSelector("spec.nodeName", node)})
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if obj, ok := r.ix.Object(o.Key); ok {
			if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName == node {
				out = append(out, p)
				continue
			}
		}
		obj, err := o.Decode()
		if err != nil {
			r.log.Error("nodelifecycle: skipping a pod that cannot be read", "pod", o.Key, "err", err)
			continue
		}
		out = append(out, obj.(*corev1.Pod))
	}
	return out
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// markPodsNotReady sets Ready=False on the pods of a node whose agent is gone, as the kubelet
// can no longer say.
func (r *Reconciler) markPodsNotReady(ctx context.Context, node *corev1.Node, cause uint64) error {
	var errs []error
	for _, p := range r.podsOn(node.Name) {
		if terminal(p) || !podReady(p) {
			continue
		}
		uid := p.UID
		_, err := r.w.Modify(ctx, r.kPod, p.Namespace, p.Name, r.request(cause), registry.UpdateOptions{Subresource: "status"}, func(obj runtime.Object) (runtime.Object, error) {
			cur := obj.(*corev1.Pod)
			if cur.UID != uid || cur.Spec.NodeName != node.Name {
				return nil, errSkip
			}
			now := metav1.NewTime(r.now())
			changed := false
			for i := range cur.Status.Conditions {
				c := &cur.Status.Conditions[i]
				if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
					c.Status, c.LastTransitionTime, changed = corev1.ConditionFalse, now, true
				}
			}
			if !changed {
				return nil, errSkip
			}
			return cur, nil
		})
		if errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("nodelifecycle: marking pod %s/%s not ready: %w", p.Namespace, p.Name, err))
			continue
		}
		if r.nodeEvents != nil {
			r.nodeEvents.Eventf(p, cause, corev1.EventTypeWarning, "NodeNotReady", "Node is not ready")
		}
	}
	return errors.Join(errs...)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// evictPods deletes the pods of a node whose NoExecute taints they do not tolerate, or no
// longer do (tolerationSeconds counted from each taint's timeAdded). It returns when to look
// again for the next one, 0 if no eviction is pending.
func (r *Reconciler) evictPods(ctx context.Context, node *corev1.Node, cause uint64) (time.Duration, error) {
	taints := noExecuteTaints(node)
	if len(taints) == 0 {
		return 0, nil
	}
	now := r.now()
	var next time.Duration
	var errs []error
	for _, p := range r.podsOn(node.Name) {
		if p.DeletionTimestamp != nil || terminal(p) {
			continue
		}
		at, ok := evictionTime(p, taints)
		if !ok {
			continue // tolerates them for ever
		}
		if wait := at.Sub(now); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		if err := r.evict(ctx, p, cause); err != nil {
			errs = append(errs, err)
		}
	}
	if next > 0 {
		next += 10 * time.Millisecond
	}
	return next, errors.Join(errs...)
}

// evictionTime is when a pod must go from a node with these NoExecute taints: at once for a
// taint it does not tolerate, the earliest end of its tolerationSeconds otherwise; ok is false
// if it tolerates them all for ever.
func evictionTime(p *corev1.Pod, taints []corev1.Taint) (at time.Time, ok bool) {
	for i := range taints {
		t := &taints[i]
		added := time.Time{}
		if t.TimeAdded != nil {
			added = t.TimeAdded.Time
		}
		var tol *corev1.Toleration
		for j := range p.Spec.Tolerations {
			if p.Spec.Tolerations[j].ToleratesTaint(logr.Discard(), t, false) {
				tol = &p.Spec.Tolerations[j]
				break
			}
		}
		var end time.Time
		switch {
		case tol == nil:
			end = added // not tolerated: now
		case tol.TolerationSeconds == nil:
			continue
		default:
			end = added.Add(time.Duration(max(*tol.TolerationSeconds, 0)) * time.Second)
		}
		if !ok || end.Before(at) {
			at, ok = end, true
		}
	}
	return at, ok
}

// evict deletes a pod the taints no longer allow, marking it as disrupted first.
func (r *Reconciler) evict(ctx context.Context, p *corev1.Pod, cause uint64) error {
	uid := p.UID
	_, err := r.w.Modify(ctx, r.kPod, p.Namespace, p.Name, r.request(cause), registry.UpdateOptions{Subresource: "status"}, func(obj runtime.Object) (runtime.Object, error) {
		cur := obj.(*corev1.Pod)
		if cur.UID != uid {
			return nil, errSkip
		}
		for _, c := range cur.Status.Conditions {
			if c.Type == corev1.DisruptionTarget {
				return nil, errSkip
			}
		}
		cur.Status.Conditions = append(cur.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(r.now()), Reason: "DeletionByTaintManager", Message: "Taint manager: deleting due to NoExecute taint"})
		return cur, nil
	})
	if err != nil && !errors.Is(err, errSkip) {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("nodelifecycle: marking pod %s/%s for eviction: %w", p.Namespace, p.Name, err)
	}
	_, _, err = r.w.Delete(ctx, r.kPod, p.Namespace, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}, r.request(cause))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nodelifecycle: evicting pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if r.evictionEvents != nil {
		r.evictionEvents.Eventf(p, cause, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", p.Namespace, p.Name)
	}
	return nil
}
