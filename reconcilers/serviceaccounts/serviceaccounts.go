// Package serviceaccounts is the reconciler that gives every namespace its "default"
// ServiceAccount, as Kubernetes' serviceaccount controller does, so that pods, which default to
// it, name an account that exists.
package serviceaccounts

import (
	"context"
	"fmt"

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

// Name of the reconciler.
const Name = "serviceaccount"

// DefaultName is the account every namespace gets.
const DefaultName = "default"

var (
	namespaces      = schema.GroupResource{Resource: "namespaces"}
	serviceaccounts = schema.GroupResource{Resource: "serviceaccounts"}
)

// store is what the reconciler reads.
type store interface {
	Get(key eventlog.Key) (*projections.Object, bool)
}

// writer is what it writes through.
type writer interface {
	Catalog() *kinds.Catalog
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
}

// Config configures the reconciler.
type Config struct {
	// Workers reconciling namespaces concurrently. Default 2.
	Workers int
}

// Reconciler ensures the default ServiceAccount of each namespace.
type Reconciler struct {
	store  store
	w      writer
	saKind *kinds.Kind
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the reconciler on e: it reconciles namespaces, and watches deleted default
// accounts, which it makes again.
func New(e *engine.Engine, cfg Config) (*Reconciler, error) {
	ks, err := e.Kinds(serviceaccounts)
	if err != nil {
		return nil, fmt.Errorf("serviceaccounts: %w", err)
	}
	k := ks[0]
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	r := &Reconciler{store: e.Store(), w: e.Registry(), saKind: k}
	e.Register(engine.Registration{
		Name:       Name,
		For:        namespaces,
		Watches:    []engine.Watch{engine.Watches(serviceaccounts, defaultDeleted)},
		Workers:    cfg.Workers,
		Reconciler: r,
	})
	return r, nil
}

// defaultDeleted returns the namespace of a deleted default account.
func defaultDeleted(ev engine.Event) []eventlog.Key {
	if ev.New == nil && ev.Old != nil && ev.Old.Key.Name == DefaultName {
		return []eventlog.Key{{Resource: namespaces.Resource, Name: ev.Old.Key.Namespace}}
	}
	return nil
}

// Reconcile creates the namespace's default ServiceAccount if it is missing.
func (r *Reconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	ns, ok := r.store.Get(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	if phase := ns.Fields["status.phase"]; phase == string(corev1.NamespaceTerminating) {
		return engine.Result{}, nil
	}
	name := req.Key.Name
	if _, ok := r.store.Get(eventlog.Key{Resource: serviceaccounts.Resource, Namespace: name, Name: DefaultName}); ok {
		return engine.Result{}, nil
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: DefaultName, Namespace: name}}
	_, err := r.w.Create(ctx, r.saKind, sa, registry.Request{Actor: registry.Reconciler(Name), Cause: req.Cause})
	if apierrors.IsAlreadyExists(err) || apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
		return engine.Result{}, nil // made meanwhile, or the namespace is going away
	}
	return engine.Result{}, err
}
