// Package daemonset is the reconciler of DaemonSets, a port of kube-controller-manager's daemon
// set controller (k8s.io/kubernetes pkg/controller/daemon): one pod per eligible node, a node
// being eligible when the pod's nodeSelector and required node affinity match it and the pod
// tolerates its NoSchedule and NoExecute taints (k8s.io/component-helpers, as Kubernetes), with
// the tolerations Kubernetes adds to every daemon pod (not-ready and unreachable NoExecute;
// disk-, memory- and pid-pressure and unschedulable NoSchedule; network-unavailable for
// hostNetwork pods). Pods are placed through the scheduler, as Kubernetes does: each gets the
// required node affinity `matchFields metadata.name In [node]`, not spec.nodeName.
//
// It adopts orphan pods its selector matches, deletes the pods of nodes that stopped being
// eligible (keeping those that tolerate the node's NoExecute taints), replaces failed pods with
// a per-node back-off, rolls template changes out with RollingUpdate (maxUnavailable or
// maxSurge) or OnDelete, records each template as a ControllerRevision (the
// controller-revision-hash label, revision numbers that `kubectl rollout history/undo` read,
// revisionHistoryLimit) and labels pods with pod-template-generation, and reports status
// (desiredNumberScheduled, currentNumberScheduled, numberMisscheduled, numberReady,
// numberAvailable, updatedNumberScheduled, numberUnavailable, observedGeneration,
// collisionCount).
//
// One difference: the pods of a node that no longer exists are deleted here, at once; in
// Kubernetes the pod garbage collector deletes them (after 40 s), and logplane has none.
package daemonset

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/expectations"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler, as the actor of its writes.
const Name = "daemonset"

// Defaults, as kube-controller-manager's.
const (
	// DefaultBurstReplicas bounds the pods one reconcile creates or deletes (BurstReplicas).
	DefaultBurstReplicas = 250
	// DefaultFailedPodBackOff and MaxFailedPodBackOff bound the delay before a failed daemon pod
	// of a node is deleted again (its replacement having failed too).
	DefaultFailedPodBackOff = time.Second
	MaxFailedPodBackOff     = 15 * time.Minute
	backoffGCInterval       = time.Minute
)

// Reasons of the Events, as Kubernetes'.
const (
	reasonSelectingAll = "SelectingAll"
	reasonFailedPod    = "FailedDaemonPod"
	reasonSucceededPod = "SucceededDaemonPod"
)

var (
	podsResource      = schema.GroupResource{Resource: "pods"}
	nodesResource     = schema.GroupResource{Resource: "nodes"}
	daemonSetResource = schema.GroupResource{Group: "apps", Resource: "daemonsets"}
	revisionsResource = schema.GroupResource{Group: "apps", Resource: "controllerrevisions"}
)

// EventRecorder records Kubernetes Events; *recorder.Recorder is one.
type EventRecorder interface {
	Eventf(obj runtime.Object, cause uint64, eventtype, reason, format string, args ...any)
}

// writer is what the reconciler needs of the registry.
type writer interface {
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
}

var _ writer = (*registry.Registry)(nil)

// Config configures the reconciler.
type Config struct {
	// Workers reconciling DaemonSets. Default 4 (the engine's).
	Workers int
	// BurstReplicas bounds the pods one reconcile creates or deletes. Default
	// DefaultBurstReplicas.
	BurstReplicas int
	// BackOff and MaxBackOff bound the per-node delay between deletions of failed daemon pods.
	// Defaults DefaultFailedPodBackOff and MaxFailedPodBackOff.
	BackOff, MaxBackOff time.Duration
}

// Controller is the DaemonSet reconciler.
type Controller struct {
	cfg       Config
	w         writer
	ix        *informer.Index
	clock     clock.Clock
	pods      *kinds.Kind
	sets      *kinds.Kind
	revisions *kinds.Kind
	events    EventRecorder
	log       *slog.Logger
	exp       *expectations.Expectations
	backoff   *flowcontrol.Backoff
	nodes     *nodeEligibility
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the DaemonSet reconciler on e, with the recorder of its Events (component
// "daemonset-controller").
func New(e *engine.Engine, cfg Config) (*Controller, error) {
	if cfg.BurstReplicas <= 0 {
		cfg.BurstReplicas = DefaultBurstReplicas
	}
	if cfg.BackOff <= 0 {
		cfg.BackOff = DefaultFailedPodBackOff
	}
	if cfg.MaxBackOff <= 0 {
		cfg.MaxBackOff = MaxFailedPodBackOff
	}
	ks, err := e.Kinds(podsResource, daemonSetResource, revisionsResource)
	if err != nil {
		return nil, fmt.Errorf("daemonset: %w", err)
	}
	pods, sets, revisions := ks[0], ks[1], ks[2]
	rec, err := e.EventRecorder(Name, "daemonset-controller")
	if err != nil {
		return nil, err
	}
	clk := e.Clock()
	c := &Controller{cfg: cfg, w: e.Registry(), ix: e.Index(), clock: clk, pods: pods, sets: sets, revisions: revisions,
		events: rec, log: e.Logger(), exp: expectations.New(clk),
		backoff: flowcontrol.NewFakeBackOff(cfg.BackOff, cfg.MaxBackOff, clk), nodes: newNodeEligibility()}
	e.Register(engine.Registration{
		Name:  Name,
		For:   daemonSetResource,
		Owns:  []schema.GroupResource{podsResource, revisionsResource},
		Reads: []schema.GroupResource{nodesResource},
		Watches: []engine.Watch{
			engine.Watches(podsResource, c.podChanged),
			engine.Watches(nodesResource, c.nodeChanged),
		},
		Workers:    cfg.Workers,
		Reconciler: engine.ReconcilerFunc(c.reconcile),
	})
	e.Add(func(ctx context.Context) error {
		t := clk.NewTicker(backoffGCInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C():
				c.backoff.GC()
			}
		}
	})
	return c, nil
}

// setKey is the key of the daemon set ns/name.
func setKey(ns, name string) eventlog.Key {
	return eventlog.Key{Group: daemonSetResource.Group, Resource: daemonSetResource.Resource, Namespace: ns, Name: name}
}

// ownerSet returns the key of the daemon set that ref names, nil if it names none.
func ownerSet(ns string, ref *metav1.OwnerReference) *eventlog.Key {
	if ref == nil || ref.Kind != "DaemonSet" {
		return nil
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != daemonSetResource.Group {
		return nil
	}
	k := setKey(ns, ref.Name)
	return &k
}

// podChanged notes what a pod's change tells the expectations of the daemon set controlling
// it, and returns the daemon sets that may adopt it (an orphan that appeared or changed its
// labels). The engine queues the set controlling it, as Owns.
func (c *Controller) podChanged(ev engine.Event) []eventlog.Key {
	old, cur := ev.OldMeta, ev.NewMeta
	o := ev.Object()
	var oldSet, curSet *eventlog.Key
	if old != nil {
		oldSet = ownerSet(o.Key.Namespace, old.Controller())
	}
	if cur != nil {
		curSet = ownerSet(o.Key.Namespace, cur.Controller())
	}
	switch {
	case cur != nil && old == nil && curSet != nil:
		c.exp.CreationObserved(*curSet)
	case cur != nil && cur.Deleting && old != nil && !old.Deleting && curSet != nil:
		c.exp.DeletionObserved(*curSet, o.Key)
	case cur == nil && old != nil && oldSet != nil && !old.Deleting:
		c.exp.DeletionObserved(*oldSet, o.Key)
	}
	if cur == nil || cur.Controller() != nil {
		return nil
	}
	if ev.Old != nil && labels.Equals(ev.Old.Labels, ev.New.Labels) && (old == nil || old.Controller() == nil) {
		return nil
	}
	var keys []eventlog.Key
	for _, obj := range c.ix.Objects(daemonSetResource, o.Key.Namespace, nil) {
		ds, ok := obj.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(ev.New.Labels)) {
			continue
		}
		keys = append(keys, setKey(ds.Namespace, ds.Name))
	}
	return keys
}

// nodeChanged queues every daemon set when a node appears, goes, or changes what decides which
// daemon pods it runs (its labels, taints, name): as Kubernetes' addNode, updateNode (which
// compares labels and taints) and deleteNode. Heartbeats and status reports queue nothing.
func (c *Controller) nodeChanged(ev engine.Event) []eventlog.Key {
	name := ev.Object().Key.Name
	if ev.New == nil {
		c.nodes.forget(name)
	} else {
		obj, ok := c.ix.Object(ev.New.Key)
		n, isNode := obj.(*corev1.Node)
		if !ok || !isNode || !c.nodes.changed(n) {
			return nil
		}
	}
	return c.ix.Keys(daemonSetResource)
}

// nodeEligibility remembers, per node, what daemon set eligibility depends on, to tell the
// node changes that matter from heartbeats.
type nodeEligibility struct {
	mu    sync.Mutex
	nodes map[string]nodeFacts
}

type nodeFacts struct {
	labels map[string]string
	taints []corev1.Taint
}

func newNodeEligibility() *nodeEligibility {
	return &nodeEligibility{nodes: map[string]nodeFacts{}}
}

func (e *nodeEligibility) changed(n *corev1.Node) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	old, ok := e.nodes[n.Name]
	if ok && labels.Equals(old.labels, n.Labels) && apiequality.Semantic.DeepEqual(old.taints, n.Spec.Taints) {
		return false
	}
	e.nodes[n.Name] = nodeFacts{labels: n.Labels, taints: n.Spec.Taints}
	return true
}

func (e *nodeEligibility) forget(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.nodes, name)
}
