// Package rootcacert is the reconciler that publishes the cluster's CA certificate in every
// namespace, as Kubernetes' root CA certificate publisher
// (pkg/controller/certificates/rootcacertpublisher) does: each namespace that is not
// terminating gets a ConfigMap "kube-root-ca.crt" whose key "ca.crt" holds the certificate (PEM)
// that verifies the API server, with Kubernetes' description annotation. The ConfigMap is made
// again when deleted and put back when changed. Pods read it through projected service account
// volumes; clients in pods verify the API server with it.
package rootcacert

import (
	"context"
	"errors"
	"fmt"
	"maps"

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
const Name = "root-ca-cert-publisher"

// What it publishes, as Kubernetes names it.
const (
	// ConfigMapName is the ConfigMap every namespace gets.
	ConfigMapName = "kube-root-ca.crt"
	// Key is the ConfigMap's key holding the certificate.
	Key = "ca.crt"
	// DescriptionAnnotation and Description say what the ConfigMap is for.
	DescriptionAnnotation = "kubernetes.io/description"
	Description           = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. " +
		"No other usage is guaranteed across distributions of Kubernetes clusters."
)

var (
	namespaces = schema.GroupResource{Resource: "namespaces"}
	configmaps = schema.GroupResource{Resource: "configmaps"}
)

// store is what the reconciler reads.
type store interface {
	Get(key eventlog.Key) (*projections.Object, bool)
}

// writer is what it writes through.
type writer interface {
	Catalog() *kinds.Catalog
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
}

var _ writer = (*registry.Registry)(nil)

// Config configures the reconciler.
type Config struct {
	// CA is the PEM certificate (or bundle) that verifies the API server. If it is empty, LoadCA
	// reads it when the reconciler is set up (it may wait for it); one of them is required.
	CA     []byte
	LoadCA func(ctx context.Context) ([]byte, error)
	// Workers reconciling namespaces concurrently. Default 2.
	Workers int
}

// Reconciler publishes the root CA certificate in every namespace.
type Reconciler struct {
	store  store
	w      writer
	cmKind *kinds.Kind
	data   map[string]string
}

// Setup is the reconciler's line in the list of reconcilers (package sets): it reads the CA
// with cfg.LoadCA if cfg.CA is empty.
func Setup(cfg Config) engine.Setup {
	return func(ctx context.Context, e *engine.Engine) error {
		if len(cfg.CA) == 0 && cfg.LoadCA != nil {
			ca, err := cfg.LoadCA(ctx)
			if err != nil {
				return err
			}
			cfg.CA = ca
		}
		_, err := New(e, cfg)
		return err
	}
}

// New registers the reconciler publishing cfg.CA on e: it reconciles namespaces, and watches
// every change of a namespace's kube-root-ca.crt ConfigMap (deleted: made again; changed: put
// back). It is an error if cfg.CA is empty.
func New(e *engine.Engine, cfg Config) (*Reconciler, error) {
	if len(cfg.CA) == 0 {
		return nil, errors.New("rootcacert: no root CA certificate to publish")
	}
	ks, err := e.Kinds(configmaps)
	if err != nil {
		return nil, fmt.Errorf("rootcacert: %w", err)
	}
	k := ks[0]
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	r := &Reconciler{store: e.Store(), w: e.Registry(), cmKind: k, data: map[string]string{Key: string(cfg.CA)}}
	e.Register(engine.Registration{
		Name:       Name,
		For:        namespaces,
		Watches:    []engine.Watch{engine.Watches(configmaps, configMapChanged)},
		Workers:    cfg.Workers,
		Reconciler: r,
	})
	return r, nil
}

// configMapChanged returns the namespace of a kube-root-ca.crt ConfigMap that changed.
func configMapChanged(ev engine.Event) []eventlog.Key {
	if o := ev.Object(); o.Key.Name == ConfigMapName {
		return []eventlog.Key{{Resource: namespaces.Resource, Name: o.Key.Namespace}}
	}
	return nil
}

// errSkip says a Modify has nothing to change.
var errSkip = errors.New("rootcacert: nothing to change")

// Reconcile makes the namespace's kube-root-ca.crt ConfigMap if it is missing, and puts its
// data and description back if they differ (Kubernetes' syncNamespace). Terminating namespaces
// are left alone.
func (r *Reconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	ns, ok := r.store.Get(req.Key)
	if !ok || ns.Fields["status.phase"] == string(corev1.NamespaceTerminating) {
		return engine.Result{}, nil
	}
	name := req.Key.Name
	wreq := registry.Request{Actor: registry.Reconciler(Name), Cause: req.Cause}
	o, ok := r.store.Get(eventlog.Key{Resource: configmaps.Resource, Namespace: name, Name: ConfigMapName})
	if !ok {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: name,
				Annotations: map[string]string{DescriptionAnnotation: Description}},
			Data: maps.Clone(r.data),
		}
		_, err := r.w.Create(ctx, r.cmKind, cm, wreq)
		// Made meanwhile (its change brings us back), or the namespace is gone or terminating.
		if err == nil || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) || apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return engine.Result{}, nil
		}
		return engine.Result{}, fmt.Errorf("rootcacert: creating %s/%s: %w", name, ConfigMapName, err)
	}
	obj, err := o.Decode()
	if err != nil {
		return engine.Result{}, fmt.Errorf("rootcacert: %w", err)
	}
	if cm, ok := obj.(*corev1.ConfigMap); ok && r.current(cm) {
		return engine.Result{}, nil
	}
	_, err = r.w.Modify(ctx, r.cmKind, name, ConfigMapName, wreq, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		cm, ok := cur.(*corev1.ConfigMap)
		if !ok {
			return nil, fmt.Errorf("rootcacert: %T is no ConfigMap", cur)
		}
		if r.current(cm) {
			return nil, errSkip
		}
		cm.Data = maps.Clone(r.data)
		if cm.Annotations == nil {
			cm.Annotations = map[string]string{}
		}
		cm.Annotations[DescriptionAnnotation] = Description
		cm.ResourceVersion = "" // decided on this revision: retried on a conflict
		return cm, nil
	})
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return engine.Result{}, nil // a deletion brings us back
	}
	return engine.Result{}, fmt.Errorf("rootcacert: updating %s/%s: %w", name, ConfigMapName, err)
}

// current says whether cm holds exactly the certificate and a description, as Kubernetes
// checks (any non-empty description will do).
func (r *Reconciler) current(cm *corev1.ConfigMap) bool {
	return maps.Equal(cm.Data, r.data) && cm.Annotations[DescriptionAnnotation] != ""
}
