// Package deployment is the reconciler of Deployments, as the deployment controller of
// kube-controller-manager: a Deployment owns one ReplicaSet per pod template it has had (named
// after it and the template's pod-template-hash, which labels the ReplicaSet's selector and pods),
// numbered by the deployment.kubernetes.io/revision annotation that `kubectl rollout history`
// reads; a template change rolls out a new ReplicaSet, with the RollingUpdate strategy (at most
// maxSurge pods above and maxUnavailable below the desired count, absolute or percent, 25% by
// default) or Recreate (every old pod gone before a new one starts); a scale during a rollout
// spreads proportionally over the ReplicaSets with pods; minReadySeconds, paused deployments,
// revisionHistoryLimit, progressDeadlineSeconds (Progressing=False, ProgressDeadlineExceeded) and
// the Available and Progressing conditions, the ScalingReplicaSet Events `kubectl describe`
// shows, and the status `kubectl rollout status` reads all behave as on Kubernetes. `kubectl
// rollout undo` is done by kubectl itself, from the ReplicaSets' templates and annotations.
//
// The writes to ReplicaSets record as their cause the deployment's latest spec change: the
// user's command that started the rollout or the scale.
package deployment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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

// Name of the reconciler, as the actor of its writes.
const Name = "deployment"

var (
	deploymentsResource = schema.GroupResource{Group: "apps", Resource: "deployments"}
	replicaSetsResource = schema.GroupResource{Group: "apps", Resource: "replicasets"}
	podsResource        = schema.GroupResource{Resource: "pods"}
	// KeptResources are the resources the informer index must keep decoded.
	KeptResources = []schema.GroupResource{deploymentsResource, replicaSetsResource, podsResource}
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

type lister interface {
	List(q projections.Query) ([]*projections.Object, uint64)
}

// Config configures the reconciler.
type Config struct {
	// Store is the projection read. Required.
	Store *projections.Store
	// Registry writes. Required.
	Registry *registry.Registry
	// Index is the informer index over Store; it must keep KeptResources. Required.
	Index *informer.Index
	// Events records the deployment controller's Events (component "deployment-controller").
	// Nil: none.
	Events EventRecorder
	// Workers reconciling concurrently. Default 4 (the engine's).
	Workers int
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Reconciler reconciles Deployments.
type Reconciler struct {
	cfg    Config
	store  lister
	w      writer
	ix     *informer.Index
	kDep   *kinds.Kind
	kRS    *kinds.Kind
	events EventRecorder
	log    *slog.Logger
}

// New returns the Deployment reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.Index == nil {
		return nil, errors.New("deployment: config needs a Store, a Registry and an Index")
	}
	if err := cfg.Index.KeepsAll(KeptResources); err != nil {
		return nil, fmt.Errorf("deployment: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cat := cfg.Registry.Catalog()
	kDep, ok1 := cat.ByGroupResource(deploymentsResource)
	kRS, ok2 := cat.ByGroupResource(replicaSetsResource)
	if !ok1 || !ok2 {
		return nil, errors.New("deployment: the catalog has no deployments or replicasets")
	}
	return &Reconciler{cfg: cfg, store: cfg.Store, w: cfg.Registry, ix: cfg.Index, kDep: kDep, kRS: kRS,
		events: cfg.Events, log: cfg.Logger}, nil
}

// Registration is how the engine runs the reconciler.
func (r *Reconciler) Registration() engine.Registration {
	return engine.Registration{Name: Name, Primary: deploymentsResource, Map: r.mapChange, Workers: r.cfg.Workers, Reconciler: r}
}

var _ engine.Reconciler = (*Reconciler)(nil)

func (r *Reconciler) mapChange(ch projections.Change) []eventlog.Key {
	old, cur := r.ix.Observe(ch)
	o := ch.New
	if o == nil {
		o = ch.Old
	}
	if o == nil {
		return nil
	}
	gr := schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
	switch gr {
	case deploymentsResource:
		return []eventlog.Key{o.Key}
	case replicaSetsResource:
		var keys []eventlog.Key
		for _, m := range []*informer.Meta{cur, old} {
			if k := deploymentOf(o.Key.Namespace, m); k != nil && (len(keys) == 0 || keys[0] != *k) {
				keys = append(keys, *k)
			}
		}
		if cur != nil && cur.Controller() == nil && (ch.Old == nil || !labels.Equals(ch.Old.Labels, ch.New.Labels) || (old != nil && old.Controller() != nil)) {
			keys = append(keys, r.matchingDeployments(o.Key.Namespace, ch.New.Labels)...)
		}
		return keys
	case podsResource:
		// A Recreate rollout waits for the old pods to be gone.
		if cur != nil && !cur.Deleting && !isTerminalPhase(ch.New.Fields["status.phase"]) {
			return nil
		}
		m := cur
		if m == nil {
			m = old
		}
		ref := m.Controller()
		if ref == nil || ref.Kind != "ReplicaSet" {
			return nil
		}
		rsm, ok := r.ix.Meta(eventlog.Key{Group: "apps", Resource: "replicasets", Namespace: o.Key.Namespace, Name: ref.Name})
		if !ok {
			return nil
		}
		k := deploymentOf(o.Key.Namespace, &rsm)
		if k == nil {
			return nil
		}
		if obj, ok := r.ix.Object(*k); ok {
			if d, ok := obj.(*appsv1.Deployment); ok && d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
				return []eventlog.Key{*k}
			}
		}
	}
	return nil
}

func isTerminalPhase(phase string) bool {
	return phase == string(corev1.PodSucceeded) || phase == string(corev1.PodFailed)
}

// deploymentOf is the key of the deployment controlling the object m describes, if any.
func deploymentOf(ns string, m *informer.Meta) *eventlog.Key {
	if m == nil {
		return nil
	}
	ref := m.Controller()
	if ref == nil || ref.Kind != "Deployment" {
		return nil
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != "apps" {
		return nil
	}
	return &eventlog.Key{Group: "apps", Resource: "deployments", Namespace: ns, Name: ref.Name}
}

// matchingDeployments are the deployments of ns whose selector matches lbls.
func (r *Reconciler) matchingDeployments(ns string, lbls labels.Set) []eventlog.Key {
	var out []eventlog.Key
	for _, obj := range r.ix.Objects(deploymentsResource, ns, nil) {
		d, ok := obj.(*appsv1.Deployment)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(lbls) {
			continue
		}
		out = append(out, eventlog.Key{Group: "apps", Resource: "deployments", Namespace: ns, Name: d.Name})
	}
	return out
}

func (r *Reconciler) event(d *appsv1.Deployment, cause uint64, typ, reason, format string, args ...any) {
	if r.events != nil {
		r.events.Eventf(d, cause, typ, reason, format, args...)
	}
}
