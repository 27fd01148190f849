// Package ingressstatus is the reconciler that writes the addresses of logplane's Ingresses:
// every node agent serves the Ingresses of logplane's IngressClasses on the node's own ports
// (dataplane/ingressproxy), so an Ingress's status.loadBalancer.ingress is the nodes'
// addresses, chosen as reconcilers/servicelb chooses them for LoadBalancer Services
// (servicelb.NodeIPs). Ingresses of other controllers' classes are left alone.
package ingressstatus

import (
	"context"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	networkingv1beta1 "k8s.io/api/networking/v1beta1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/servicelb"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler.
const Name = "ingressstatus"

// DefaultController is the spec.controller of logplane's IngressClasses.
const DefaultController = "logplane.io/ingress"

var (
	ingresses      = schema.GroupResource{Group: networkingv1.GroupName, Resource: "ingresses"}
	ingressClasses = schema.GroupResource{Group: networkingv1.GroupName, Resource: "ingressclasses"}
	nodes          = schema.GroupResource{Resource: "nodes"}
)

type writer interface {
	UpdateStatus(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
}

// Config configures the reconciler.
type Config struct {
	// Controller is the spec.controller of the classes whose Ingresses get the nodes'
	// addresses. Default DefaultController.
	Controller string
	// Workers reconciling Ingresses concurrently. Default 2.
	Workers int
}

// Reconciler writes the status of logplane's Ingresses.
type Reconciler struct {
	ix         *informer.Index
	w          writer
	kind       *kinds.Kind
	controller string
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the reconciler on e: it reconciles Ingresses; a change of any node or
// IngressClass queues every Ingress.
func New(e *engine.Engine, cfg Config) (*Reconciler, error) {
	ks, err := e.Kinds(ingresses)
	if err != nil {
		return nil, fmt.Errorf("ingressstatus: %w", err)
	}
	k := ks[0]
	if cfg.Controller == "" {
		cfg.Controller = DefaultController
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	r := &Reconciler{ix: e.Index(), w: e.Registry(), kind: k, controller: cfg.Controller}
	e.Register(engine.Registration{
		Name: Name, For: ingresses, Workers: cfg.Workers, Reconciler: r,
		Watches: []engine.Watch{engine.Watches(nodes, r.all), engine.Watches(ingressClasses, r.all)},
		Reads:   []schema.GroupResource{nodes, ingressClasses},
	})
	return r, nil
}

// all maps a change to every Ingress.
func (r *Reconciler) all(engine.Event) []eventlog.Key {
	var keys []eventlog.Key
	for _, o := range r.ix.Objects(ingresses, "", nil) {
		ing := o.(*networkingv1.Ingress)
		keys = append(keys, eventlog.Key{Group: ingresses.Group, Resource: ingresses.Resource, Namespace: ing.Namespace, Name: ing.Name})
	}
	return keys
}

// Reconcile sets the load balancer ingress of one of logplane's Ingresses to the nodes'
// addresses.
func (r *Reconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	obj, ok := r.ix.Object(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	ing := obj.(*networkingv1.Ingress)
	if ing.DeletionTimestamp != nil || !r.ours(ing) {
		return engine.Result{}, nil
	}
	var want []networkingv1.IngressLoadBalancerIngress
	for _, ip := range servicelb.NodeIPs(r.ix) {
		want = append(want, networkingv1.IngressLoadBalancerIngress{IP: ip})
	}
	if equality.Semantic.DeepEqual(ing.Status.LoadBalancer.Ingress, want) {
		return engine.Result{}, nil
	}
	next := ing.DeepCopy()
	next.Status.LoadBalancer.Ingress = want
	_, err := r.w.UpdateStatus(ctx, r.kind, next, registry.Request{Actor: registry.Reconciler(Name), Cause: req.Cause})
	if apierrors.IsNotFound(err) {
		return engine.Result{}, nil
	}
	if err != nil {
		return engine.Result{}, fmt.Errorf("ingressstatus: %s/%s: %w", ing.Namespace, ing.Name, err)
	}
	return engine.Result{}, nil
}

// ours says whether the node agents serve ing, by the rule dataplane/ingressproxy follows:
// its ingressClassName, else its deprecated class annotation, names one of our classes; or it
// names neither and one of our classes is the default.
func (r *Reconciler) ours(ing *networkingv1.Ingress) bool {
	name := ""
	if ing.Spec.IngressClassName != nil {
		name = *ing.Spec.IngressClassName
	} else if v, ok := ing.Annotations[networkingv1beta1.AnnotationIngressClass]; ok {
		name = v
	}
	for _, o := range r.ix.Objects(ingressClasses, "", nil) {
		ic := o.(*networkingv1.IngressClass)
		if ic.Spec.Controller != r.controller {
			continue
		}
		if name == "" && ic.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true" || name != "" && ic.Name == name {
			return true
		}
	}
	return false
}
