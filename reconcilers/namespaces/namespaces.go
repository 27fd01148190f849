// Package namespaces is the namespace lifecycle reconciler, as kube-controller-manager's
// namespace controller (pkg/controller/namespace, its deleter in
// pkg/controller/namespace/deletion): a namespace being deleted (the registry has marked it
// Terminating) has its content deleted with background propagation, pods first; what is left
// is reported in the namespace's conditions (NamespaceContentRemaining, NamespaceFinalizersRemaining,
// NamespaceDeletionContentFailure, and the discovery ones, which always hold here); once nothing is
// left, its "kubernetes" spec finalizer is removed through the finalize subresource, which removes
// the namespace if no other finalizer is left.
package namespaces

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler, as the actor of its writes.
const Name = "namespace"

// finalizerEstimateSeconds is how long content waiting for finalizers is given before the
// namespace is looked at again, as Kubernetes estimates it.
const finalizerEstimateSeconds = 15

var (
	namespacesGR = schema.GroupResource{Resource: "namespaces"}
	podsGR       = schema.GroupResource{Resource: "pods"}
)

// store is what the reconciler reads: the projection its registry writes through, so that what
// it deleted is gone from its lists.
type store interface {
	Get(key eventlog.Key) (*projections.Object, bool)
	List(q projections.Query) ([]*projections.Object, uint64)
}

// writer is what it writes through.
type writer interface {
	Catalog() *kinds.Catalog
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
}

var (
	_ store  = (*projections.Store)(nil)
	_ writer = (*registry.Registry)(nil)
)

// Config configures the reconciler.
type Config struct {
	// Workers reconciling namespaces concurrently. Default 2.
	Workers int
}

// Reconciler finishes the deletion of namespaces.
type Reconciler struct {
	cfg     Config
	store   store
	w       writer
	now     func() time.Time
	log     *slog.Logger
	nsKind  *kinds.Kind
	podKind *kinds.Kind // nil if the catalog has no pods
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the reconciler on e: it reconciles namespaces (not their deletion), and watches
// the deletion of anything in a terminating namespace, which may be the last thing it waited
// for. It reads the store its registry writes through, so that what it deleted is gone from its
// lists.
func New(e *engine.Engine, cfg Config) (*Reconciler, error) {
	if e.Registry() == nil {
		return nil, errors.New("namespaces: the engine has no registry")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	r := &Reconciler{cfg: cfg, store: e.Store(), w: e.Registry(), now: e.Clock().Now, log: e.Logger()}
	var ok bool
	if r.nsKind, ok = r.w.Catalog().ByGroupResource(namespacesGR); !ok {
		return nil, errors.New("namespaces: the catalog has no namespaces")
	}
	r.podKind, _ = r.w.Catalog().ByGroupResource(podsGR) // nil: nothing to delete first
	e.Register(engine.Registration{
		Name:       Name,
		For:        namespacesGR,
		ForFilter:  func(ev engine.Event) bool { return ev.New != nil },
		Watches:    []engine.Watch{engine.WatchesAll(r.contentDeleted)},
		Workers:    cfg.Workers,
		Reconciler: r,
	})
	return r, nil
}

// contentDeleted returns the namespace of a deleted object if the namespace is terminating.
func (r *Reconciler) contentDeleted(ev engine.Event) []eventlog.Key {
	if ev.New != nil || ev.Old == nil || ev.Old.Key.Namespace == "" {
		return nil
	}
	key := eventlog.Key{Resource: namespacesGR.Resource, Name: ev.Old.Key.Namespace}
	if ns, ok := r.store.Get(key); ok && ns.Fields["status.phase"] == string(corev1.NamespaceTerminating) {
		return []eventlog.Key{key}
	}
	return nil
}

// Reconcile deletes the content of a namespace being deleted and then finalizes it (Kubernetes'
// namespacedResourcesDeleter.Delete). While content is left, it looks again after half the
// estimated time it needs (Kubernetes' requeue), or when content goes.
func (r *Reconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	o, ok := r.store.Get(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	obj, err := o.Decode()
	if err != nil {
		return engine.Result{}, fmt.Errorf("namespaces: %w", err)
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return engine.Result{}, fmt.Errorf("%w: namespaces: %s is a %T", engine.ErrTerminal, req.Key, obj)
	}
	// The registry marks a namespace Terminating when it sets its deletionTimestamp, and keeps the
	// phase its own: there is no phase to correct here.
	if ns.DeletionTimestamp == nil || len(ns.Spec.Finalizers) == 0 {
		return engine.Result{}, nil
	}
	wreq := registry.Request{Actor: registry.Reconciler(Name), Cause: req.Cause}
	estimate, err := r.deleteAllContent(ctx, ns, wreq)
	if err != nil {
		return engine.Result{}, err
	}
	if estimate > 0 {
		return engine.Result{RequeueAfter: time.Duration(estimate/2+1) * time.Second}, nil
	}
	return engine.Result{}, r.finalize(ctx, ns, wreq)
}

// kindDeletion is what one deletion pass over one resource of a namespace left.
type kindDeletion struct {
	// estimate is how many seconds the content left may still need; 0 if none is known.
	estimate int64
	// remaining counts the objects left.
	remaining int
	// finalizers counts the objects left, by finalizer they wait for.
	finalizers map[string]int
}

// deleteAllContent deletes everything in the namespace, pods first, then records what is left
// in its conditions, and returns an estimate of the seconds what is left needs (Kubernetes'
// deleteAllContent, with OrderedNamespaceDeletion, which is GA in 1.34).
func (r *Reconciler) deleteAllContent(ctx context.Context, ns *corev1.Namespace, wreq registry.Request) (int64, error) {
	var errs []error
	u := conditionUpdater{now: metav1.NewTime(r.now().Truncate(time.Second))}
	totals := contentTotals{remaining: map[schema.GroupVersionResource]int{}, finalizers: map[string]int{}}
	estimate := int64(0)
	deletedAt := ns.DeletionTimestamp.Time

	if r.podKind != nil {
		d, err := r.deleteKind(ctx, r.podKind, ns.Name, deletedAt, wreq)
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to delete pods for namespace: %s, err: %w", ns.Name, err))
			u.deleteContentErr(err)
		}
		estimate = max(estimate, d.estimate)
		totals.add(r.podKind.GroupVersionResource(), d)
		if d.remaining > 0 {
			// The rest waits for the pods. As Kubernetes does here, what is left is not counted
			// in the conditions, which say only whether deleting failed.
			r.updateConditions(ctx, ns, &u, wreq)
			return estimate, errors.Join(errs...)
		}
	}
	for _, k := range r.w.Catalog().All() {
		if !k.Namespaced || k == r.podKind {
			continue
		}
		d, err := r.deleteKind(ctx, k, ns.Name, deletedAt, wreq)
		if err != nil {
			// Held, and the other resources are still deleted.
			errs = append(errs, err)
			u.deleteContentErr(err)
		}
		estimate = max(estimate, d.estimate)
		totals.add(k.GroupVersionResource(), d)
	}
	u.contentTotals(totals)
	// Always: conditions that said something was wrong must say when it no longer is.
	r.updateConditions(ctx, ns, &u, wreq)
	return estimate, errors.Join(errs...)
}

// deleteKind deletes every object of kind k in namespace ns (background propagation, so that
// the garbage collector adds no finalizer of its own) and reports what is left (Kubernetes'
// deleteAllContentForGroupVersionResource). Content left with finalizers, or pods still within
// their grace period, is expected; content left otherwise is an error.
func (r *Reconciler) deleteKind(ctx context.Context, k *kinds.Kind, ns string, deletedAt time.Time, wreq registry.Request) (kindDeletion, error) {
	var estimate int64
	if k == r.podKind {
		var err error
		if estimate, err = r.podsEstimate(ns); err != nil {
			return kindDeletion{}, err
		}
		if r.now().Sub(deletedAt) >= time.Duration(estimate)*time.Second {
			estimate = 0
		}
	}
	q := projections.Query{Resource: k.GroupResource(), Namespace: ns}
	objs, _ := r.store.List(q)
	background := metav1.DeletePropagationBackground
	for _, o := range objs {
		_, _, err := r.w.Delete(ctx, k, ns, o.Key.Name, metav1.DeleteOptions{PropagationPolicy: &background}, wreq)
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsMethodNotSupported(err) {
			return kindDeletion{estimate: estimate}, err
		}
	}
	left, _ := r.store.List(q)
	if len(left) == 0 {
		return kindDeletion{}, nil
	}
	finalizers := map[string]int{}
	for _, o := range left {
		obj, err := o.Decode()
		if err != nil {
			return kindDeletion{estimate: estimate}, err
		}
		if m, ok := obj.(metav1.Object); ok {
			for _, f := range m.GetFinalizers() {
				finalizers[f]++
			}
		}
	}
	d := kindDeletion{estimate: estimate, remaining: len(left), finalizers: finalizers}
	switch {
	case estimate != 0:
		return d, nil
	case len(finalizers) > 0:
		// Finalizers are normal: give them (the garbage collector's, say) time.
		d.estimate = finalizerEstimateSeconds
		return d, nil
	}
	return kindDeletion{remaining: len(left)}, fmt.Errorf("unexpected items still remain in namespace: %s for gvr: %v", ns, k.GroupVersionResource())
}

// podsEstimate is the longest termination grace period of the namespace's pods that have not
// finished.
func (r *Reconciler) podsEstimate(ns string) (int64, error) {
	objs, _ := r.store.List(projections.Query{Resource: podsGR, Namespace: ns})
	estimate := int64(0)
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			return 0, err
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if g := pod.Spec.TerminationGracePeriodSeconds; g != nil && *g > estimate {
			estimate = *g
		}
	}
	return estimate, nil
}

// errSkip says a Modify has nothing to change.
var errSkip = errors.New("namespaces: nothing to change")

// updateConditions writes the conditions u gathered into the namespace's status, if they
// change it. As Kubernetes does, failing to write them only gets logged: the next pass writes
// them again.
func (r *Reconciler) updateConditions(ctx context.Context, ns *corev1.Namespace, u *conditionUpdater, wreq registry.Request) {
	u.finish()
	_, err := r.w.Modify(ctx, r.nsKind, "", ns.Name, wreq, registry.UpdateOptions{Subresource: "status"}, func(cur runtime.Object) (runtime.Object, error) {
		n, ok := cur.(*corev1.Namespace)
		if !ok || n.UID != ns.UID || !u.update(&n.Status) {
			return nil, errSkip
		}
		n.ResourceVersion = "" // decided on this revision: retried on a conflict
		return n, nil
	})
	if err != nil && !errors.Is(err, errSkip) && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		r.log.Warn("namespaces: updating the conditions of a terminating namespace", "namespace", ns.Name, "err", err)
	}
}

// finalize removes the "kubernetes" spec finalizer, which removes the namespace when no other
// finalizer is left.
func (r *Reconciler) finalize(ctx context.Context, ns *corev1.Namespace, wreq registry.Request) error {
	wreq.Reason = registry.ReasonFinalize
	_, err := r.w.Modify(ctx, r.nsKind, "", ns.Name, wreq, registry.UpdateOptions{Subresource: "finalize"}, func(cur runtime.Object) (runtime.Object, error) {
		n, ok := cur.(*corev1.Namespace)
		if !ok || n.UID != ns.UID || !slices.Contains(n.Spec.Finalizers, corev1.FinalizerKubernetes) {
			return nil, errSkip
		}
		n.Spec.Finalizers = slices.DeleteFunc(n.Spec.Finalizers, func(f corev1.FinalizerName) bool { return f == corev1.FinalizerKubernetes })
		n.ResourceVersion = "" // decided on this revision: retried on a conflict
		return n, nil
	})
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("namespaces: finalizing %s: %w", ns.Name, err)
}
