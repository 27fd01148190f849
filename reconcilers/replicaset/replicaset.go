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
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/expectations"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

// Names of the reconcilers, as actors of their writes.
const (
	ReplicaSetName            = "replicaset"
	ReplicationControllerName = "replicationcontroller"
)

var (
	podsResource         = schema.GroupResource{Resource: "pods"}
	replicaSetsResource  = schema.GroupResource{Group: "apps", Resource: "replicasets"}
	controllersResource  = schema.GroupResource{Resource: "replicationcontrollers"}
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
	// BurstReplicas bounds the pods created or deleted by one reconcile. Default 500, as
	// kube-controller-manager.
	BurstReplicas int
	// Workers per reconciler. Default 4 (the engine's).
	Workers int
}

// Controller holds both reconcilers; they share the expectations and the cause bookkeeping.
type Controller struct {
	cfg   Config
	w     writer
	ix    *informer.Index
	now   func() time.Time
	pods  *kinds.Kind
	exp   *expectations.Expectations
	log   *slog.Logger
	kinds []*setKind

	mu        sync.Mutex
	podLosses map[eventlog.Key]uint64 // set → sequence of the latest loss of one of its pods
	batches   map[eventlog.Key]int    // set → size of the last batch of its last creations
}

// Setup is the reconcilers' line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the reconcilers of ReplicaSets and ReplicationControllers on e, with the
// recorders of their Events (components "replicaset-controller" and "replication-controller").
func New(e *engine.Engine, cfg Config) (*Controller, error) {
	ks, err := e.Kinds(podsResource, replicaSetsResource, controllersResource)
	if err != nil {
		return nil, fmt.Errorf("replicaset: %w", err)
	}
	pods, rs, rc := ks[0], ks[1], ks[2]
	if cfg.BurstReplicas <= 0 {
		cfg.BurstReplicas = defaultBurstReplicas
	}
	c := &Controller{cfg: cfg, w: e.Registry(), ix: e.Index(), now: e.Clock().Now, pods: pods,
		exp: expectations.New(e.Clock()), log: e.Logger(), podLosses: map[eventlog.Key]uint64{}, batches: map[eventlog.Key]int{}}
	rsEvents, err := e.EventRecorder(ReplicaSetName, "replicaset-controller")
	if err != nil {
		return nil, err
	}
	rcEvents, err := e.EventRecorder(ReplicationControllerName, "replication-controller")
	if err != nil {
		return nil, err
	}
	c.kinds = []*setKind{replicaSetKind(rs, rsEvents), controllerKind(rc, rcEvents)}
	for _, kd := range c.kinds {
		e.Register(engine.Registration{
			Name:    kd.name,
			For:     kd.k.GroupResource(),
			Owns:    []schema.GroupResource{podsResource},
			Watches: []engine.Watch{engine.Watches(podsResource, func(ev engine.Event) []eventlog.Key { return c.podChanged(kd, ev) })},
			Workers: cfg.Workers,
			Reconciler: engine.ReconcilerFunc(func(ctx context.Context, req engine.Request) (engine.Result, error) {
				return c.reconcile(ctx, kd, req)
			}),
		})
	}
	return c, nil
}

// podChanged notes what a pod's change tells the expectations and causes of kd's sets, and
// returns the sets that may adopt it. (The engine queues the sets controlling it, as Owns.)
func (c *Controller) podChanged(kd *setKind, ev engine.Event) []eventlog.Key {
	ch, old, cur := ev.Change, ev.OldMeta, ev.NewMeta
	o := ev.Object()
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
		c.exp.CreationObserved(*curSet)
	case cur != nil && cur.Deleting && old != nil && !old.Deleting && curSet != nil:
		c.exp.DeletionObserved(*curSet, o.Key)
		c.notePodLoss(*curSet, ch.Seq)
	case cur == nil && old != nil && oldSet != nil:
		c.exp.DeletionObserved(*oldSet, o.Key)
		if !old.Deleting {
			c.notePodLoss(*oldSet, ch.Seq)
		}
	}
	if cur != nil && curSet != nil && phaseOf(ch.New) != phaseOf(ch.Old) && isTerminalPhase(phaseOf(ch.New)) {
		c.notePodLoss(*curSet, ch.Seq)
	}
	// An orphan pod that appeared or whose labels changed may be adopted by any set of kd whose
	// selector matches it.
	if cur != nil && cur.Controller() == nil && (ch.Old == nil || !labels.Equals(ch.Old.Labels, ch.New.Labels) || (old != nil && old.Controller() != nil)) {
		keys = append(keys, c.matchingSets(kd, o.Key.Namespace, ch.New.Labels)...)
	}
	return keys
}
