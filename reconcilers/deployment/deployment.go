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
	// Workers reconciling concurrently. Default 4 (the engine's).
	Workers int
}

// Reconciler reconciles Deployments.
type Reconciler struct {
	cfg    Config
	store  lister
	w      writer
	ix     *informer.Index
	now    func() time.Time
	kDep   *kinds.Kind
	kRS    *kinds.Kind
	events EventRecorder
	log    *slog.Logger
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the Deployment reconciler on e, with the recorder of its Events (component
// "deployment-controller"). It reconciles deployments, owns replica sets (an orphan one whose
// labels a deployment selects may be adopted) and looks at pods (a Recreate rollout waits for
// the old ones to be gone).
func New(e *engine.Engine, cfg Config) (*Reconciler, error) {
	ks, err := e.Kinds(deploymentsResource, replicaSetsResource)
	if err != nil {
		return nil, fmt.Errorf("deployment: %w", err)
	}
	kDep, kRS := ks[0], ks[1]
	events, err := e.EventRecorder(Name, "deployment-controller")
	if err != nil {
		return nil, err
	}
	r := &Reconciler{cfg: cfg, store: e.Store(), w: e.Registry(), ix: e.Index(), now: e.Clock().Now, kDep: kDep, kRS: kRS,
		events: events, log: e.Logger()}
	e.Register(engine.Registration{
		Name: Name,
		For:  deploymentsResource,
		Owns: []schema.GroupResource{replicaSetsResource},
		Watches: []engine.Watch{
			engine.Watches(replicaSetsResource, r.orphanChanged),
			engine.Watches(podsResource, r.podChanged),
		},
		Reads:      []schema.GroupResource{podsResource},
		Workers:    cfg.Workers,
		Reconciler: r,
	})
	return r, nil
}

var _ engine.Reconciler = (*Reconciler)(nil)

// orphanChanged returns the deployments that may adopt a replica set that has no controller
// and appeared, changed its labels or lost its controller. (The engine queues the deployments
// controlling it, as Owns.)
func (r *Reconciler) orphanChanged(ev engine.Event) []eventlog.Key {
	old, cur, ch := ev.OldMeta, ev.NewMeta, ev.Change
	if cur != nil && cur.Controller() == nil && (ch.Old == nil || !labels.Equals(ch.Old.Labels, ch.New.Labels) || (old != nil && old.Controller() != nil)) {
		return r.matchingDeployments(ev.Object().Key.Namespace, ch.New.Labels)
	}
	return nil
}

// podChanged returns the deployment of a pod that went or is going, if it is rolling out with
// the Recreate strategy, which waits for the old pods to be gone.
func (r *Reconciler) podChanged(ev engine.Event) []eventlog.Key {
	old, cur, ch := ev.OldMeta, ev.NewMeta, ev.Change
	o := ev.Object()
	if cur != nil && !cur.Deleting && !isTerminalPhase(ch.New.Fields["status.phase"]) {
		return nil
	}
	m := cur
	if m == nil {
		m = old
	}
	if m == nil {
		return nil
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
