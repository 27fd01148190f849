// Package statefulset is the reconciler of StatefulSets, as the statefulset controller of
// kube-controller-manager (pkg/controller/statefulset): a set owns pods named <set>-<ordinal>
// (from spec.ordinals.start), each with the hostname of its name and the subdomain of the
// governing Service (spec.serviceName), the labels statefulset.kubernetes.io/pod-name,
// apps.kubernetes.io/pod-index and controller-revision-hash, and the claims of its
// volumeClaimTemplates, <template>-<set>-<ordinal>, created before the pod. The OrderedReady
// policy creates a pod once every lower ordinal is Running, Ready and available (minReadySeconds)
// and removes pods from the highest ordinal down, one at a time; Parallel creates every missing
// pod in one pass, concurrently (Kubernetes creates them in slow-start batches, kubernetes#117071)
// and deletes without waiting. The template's revisions are ControllerRevisions (package history)
// that `kubectl rollout history` and `undo` read; RollingUpdate replaces pods from the highest
// ordinal down to the partition, at most maxUnavailable at a time, and OnDelete leaves that to
// the user. persistentVolumeClaimRetentionPolicy is kept as Kubernetes does, by owner references
// on the claims (to the set for WhenDeleted=Delete, to the pod of a scaled-down ordinal for
// WhenScaled=Delete) that the garbage collector follows. Status (replicas, readyReplicas,
// currentReplicas, updatedReplicas, availableReplicas, currentRevision, updateRevision,
// observedGeneration, collisionCount) is what `kubectl rollout status` reads.
//
// Pod names are the reconciler's idempotency: a pod is created under its ordinal's name, so a
// reconcile repeated after a restart, or on an index that has not yet seen its own writes, finds
// the name taken and creates nothing twice; deletions carry the pod's uid as a precondition.
package statefulset

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/history"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler, as the actor of its writes.
const Name = "statefulset"

var (
	setsResource   = schema.GroupResource{Group: "apps", Resource: "statefulsets"}
	podsResource   = schema.GroupResource{Resource: "pods"}
	claimsResource = schema.GroupResource{Resource: "persistentvolumeclaims"}
)

// EventRecorder records Kubernetes Events; *recorder.Recorder is one.
type EventRecorder interface {
	Eventf(obj runtime.Object, cause uint64, eventtype, reason, format string, args ...any)
}

// writer is what the reconciler needs of the registry.
type writer interface {
	Catalog() *kinds.Catalog
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
}

var _ writer = (*registry.Registry)(nil)

// Config configures the reconciler.
type Config struct {
	// Workers reconciling StatefulSets. Default 4 (the engine's).
	Workers int
	// Burst bounds the pod writes (creations, deletions, updates) of one reconcile that run at
	// once with the Parallel policy. Default 64.
	Burst int
}

// Controller is the StatefulSet reconciler.
type Controller struct {
	cfg     Config
	w       writer
	ix      *informer.Index
	now     func() time.Time
	pods    *kinds.Kind
	sets    *kinds.Kind
	history *history.History
	events  EventRecorder
	log     *slog.Logger
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the StatefulSet reconciler on e, with the recorder of its Events (component
// "statefulset-controller").
func New(e *engine.Engine, cfg Config) (*Controller, error) {
	if cfg.Burst <= 0 {
		cfg.Burst = 64
	}
	ks, err := e.Kinds(podsResource, setsResource)
	if err != nil {
		return nil, fmt.Errorf("statefulset: %w", err)
	}
	pods, sets := ks[0], ks[1]
	h, err := history.New(e.Index(), e.Registry(), Name)
	if err != nil {
		return nil, err
	}
	rec, err := e.EventRecorder(Name, "statefulset-controller")
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, w: e.Registry(), ix: e.Index(), now: e.Clock().Now, pods: pods, sets: sets,
		history: h, events: rec, log: e.Logger()}
	e.Register(engine.Registration{
		Name: Name,
		For:  setsResource,
		Owns: []schema.GroupResource{podsResource, history.Resource},
		Watches: []engine.Watch{
			engine.Watches(podsResource, c.orphanChanged),
			engine.Watches(history.Resource, c.orphanChanged),
		},
		Reads:      []schema.GroupResource{claimsResource},
		Workers:    cfg.Workers,
		Reconciler: engine.ReconcilerFunc(c.reconcile),
	})
	return c, nil
}

// orphanChanged returns the sets that may adopt a pod or revision that has no controller and
// appeared, changed its labels or lost its controller. (The engine queues the set controlling
// it, as Owns.)
func (c *Controller) orphanChanged(ev engine.Event) []eventlog.Key {
	old, cur, ch := ev.OldMeta, ev.NewMeta, ev.Change
	if cur == nil || cur.Controller() != nil {
		return nil
	}
	if ch.Old != nil && labels.Equals(ch.Old.Labels, ch.New.Labels) && (old == nil || old.Controller() == nil) {
		return nil
	}
	ns := ev.Object().Key.Namespace
	var out []eventlog.Key
	for _, obj := range c.ix.Objects(setsResource, ns, nil) {
		set, ok := obj.(*appsv1.StatefulSet)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(ch.New.Labels)) {
			continue
		}
		out = append(out, eventlog.Key{Group: setsResource.Group, Resource: setsResource.Resource, Namespace: ns, Name: set.Name})
	}
	return out
}

func (c *Controller) request(cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(Name), Cause: cause}
}

func (c *Controller) event(set *appsv1.StatefulSet, cause uint64, typ, reason, format string, args ...any) {
	if c.events != nil {
		c.events.Eventf(set, cause, typ, reason, format, args...)
	}
}
