// Package replicaset is the reconciler of ReplicaSets and ReplicationControllers, as the
// replicaset and replication controllers of kube-controller-manager: it keeps spec.replicas
// active pods matching the selector, adopting orphan pods that match (a bare pod with the right
// labels is counted, not duplicated) and releasing owned pods that stopped matching; it creates
// missing pods in slow-start batches and deletes surplus ones in the order Kubernetes picks them
// (unscheduled, pending, not ready, doubled up on a node, ready for less time, restarted more,
// newest first), at most BurstReplicas per reconcile, remembering what it asked for until the
// projection shows it (expectations) so that a reconcile running before its creations come back
// does not create them twice; and it reports status (replicas, fullyLabeledReplicas,
// readyReplicas, availableReplicas, observedGeneration, the ReplicaFailure condition) and the
// SuccessfulCreate, SuccessfulDelete and FailedCreate Events.
//
// A ReplicationController is handled as the ReplicaSet it converts to, as Kubernetes does.
// Every pod written records as its cause the event that asked for it: the replica set's spec
// change, or the loss of the pod it replaces.
package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

// Names of the reconcilers, as actors of their writes.
const (
	ReplicaSetName            = "replicaset"
	ReplicationControllerName = "replicationcontroller"
)

// Resources the reconcilers read; the informer index must keep them decoded.
var (
	podsResource         = schema.GroupResource{Resource: "pods"}
	replicaSetsResource  = schema.GroupResource{Group: "apps", Resource: "replicasets"}
	controllersResource  = schema.GroupResource{Resource: "replicationcontrollers"}
	KeptResources        = []schema.GroupResource{podsResource, replicaSetsResource, controllersResource}
	defaultBurstReplicas = 500
)

// EventRecorder records Kubernetes Events; *recorder.Recorder is one.
type EventRecorder interface {
	Eventf(obj runtime.Object, cause uint64, eventtype, reason, format string, args ...any)
}

// writer is what the reconcilers need of the registry.
type writer interface {
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
}

var _ writer = (*registry.Registry)(nil)

// Config configures the reconcilers.
type Config struct {
	// Registry writes pods and statuses. Required.
	Registry *registry.Registry
	// Index is the informer index over the projection the reconcilers read; it must keep
	// KeptResources. Required.
	Index *informer.Index
	// Events records the Events of ReplicaSets (component "replicaset-controller") and
	// ControllerEvents those of ReplicationControllers ("replication-controller"). Nil: none.
	Events, ControllerEvents EventRecorder
	// BurstReplicas bounds the pods created or deleted by one reconcile. Default 500, as
	// kube-controller-manager.
	BurstReplicas int
	// Workers per reconciler. Default 4 (the engine's).
	Workers int
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Controller holds both reconcilers; they share the expectations and the cause bookkeeping.
type Controller struct {
	cfg   Config
	w     writer
	ix    *informer.Index
	pods  *kinds.Kind
	exp   *expectations
	log   *slog.Logger
	kinds []*setKind

	mu        sync.Mutex
	podLosses map[eventlog.Key]uint64 // set → sequence of the latest loss of one of its pods
	batches   map[eventlog.Key]int    // set → size of the last batch of its last creations
}

// New returns the controller of ReplicaSets and ReplicationControllers.
func New(cfg Config) (*Controller, error) {
	if cfg.Registry == nil || cfg.Index == nil {
		return nil, errors.New("replicaset: config needs a Registry and an Index")
	}
	if err := cfg.Index.KeepsAll(KeptResources); err != nil {
		return nil, fmt.Errorf("replicaset: %w", err)
	}
	if cfg.BurstReplicas <= 0 {
		cfg.BurstReplicas = defaultBurstReplicas
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cat := cfg.Registry.Catalog()
	pods, ok := cat.ByGroupResource(podsResource)
	if !ok {
		return nil, errors.New("replicaset: the catalog has no pods")
	}
	c := &Controller{cfg: cfg, w: cfg.Registry, ix: cfg.Index, pods: pods,
		exp: newExpectations(cfg.Now), log: cfg.Logger, podLosses: map[eventlog.Key]uint64{}, batches: map[eventlog.Key]int{}}
	rs, ok1 := cat.ByGroupResource(replicaSetsResource)
	rc, ok2 := cat.ByGroupResource(controllersResource)
	if !ok1 || !ok2 {
		return nil, errors.New("replicaset: the catalog has no replicasets or replicationcontrollers")
	}
	c.kinds = []*setKind{replicaSetKind(rs, cfg.Events), controllerKind(rc, cfg.ControllerEvents)}
	return c, nil
}

// Registrations returns the two reconcilers for an engine: replicaset and
// replicationcontroller.
func (c *Controller) Registrations() []engine.Registration {
	out := make([]engine.Registration, 0, len(c.kinds))
	for _, kd := range c.kinds {
		out = append(out, engine.Registration{
			Name:    kd.name,
			Primary: kd.k.GroupResource(),
			Map:     func(ch projections.Change) []eventlog.Key { return c.mapChange(kd, ch) },
			Workers: c.cfg.Workers,
			Reconciler: engine.ReconcilerFunc(func(ctx context.Context, req engine.Request) (engine.Result, error) {
				return c.reconcile(ctx, kd, req)
			}),
		})
	}
	return out
}

// mapChange turns a change into the keys of kd's sets it concerns, and notes what it tells the
// expectations and causes.
func (c *Controller) mapChange(kd *setKind, ch projections.Change) []eventlog.Key {
	old, cur := c.ix.Observe(ch)
	o := ch.New
	if o == nil {
		o = ch.Old
	}
	if o == nil {
		return nil
	}
	gr := schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
	switch gr {
	case kd.k.GroupResource():
		return []eventlog.Key{o.Key}
	case podsResource:
	default:
		return nil
	}
	var keys []eventlog.Key
	var oldSet, curSet *eventlog.Key
	if old != nil {
		oldSet = kd.ownerKey(o.Key.Namespace, old.Controller())
	}
	if cur != nil {
		curSet = kd.ownerKey(o.Key.Namespace, cur.Controller())
	}
	switch {
	case cur != nil && old == nil && curSet != nil:
		c.exp.creationObserved(*curSet)
	case cur != nil && cur.Deleting && old != nil && !old.Deleting && curSet != nil:
		c.exp.deletionObserved(*curSet, o.Key)
		c.notePodLoss(*curSet, ch.Seq)
	case cur == nil && old != nil && oldSet != nil:
		c.exp.deletionObserved(*oldSet, o.Key)
		if !old.Deleting {
			c.notePodLoss(*oldSet, ch.Seq)
		}
	}
	if cur != nil && curSet != nil && phaseOf(ch.New) != phaseOf(ch.Old) && isTerminalPhase(phaseOf(ch.New)) {
		c.notePodLoss(*curSet, ch.Seq)
	}
	if curSet != nil {
		keys = append(keys, *curSet)
	}
	if oldSet != nil && (curSet == nil || *oldSet != *curSet) {
		keys = append(keys, *oldSet)
	}
	// An orphan pod that appeared or whose labels changed may be adopted by any set of kd whose
	// selector matches it.
	if cur != nil && cur.Controller() == nil && (ch.Old == nil || !labels.Equals(ch.Old.Labels, ch.New.Labels) || (old != nil && old.Controller() != nil)) {
		keys = append(keys, c.matchingSets(kd, o.Key.Namespace, ch.New.Labels)...)
	}
	return keys
}
