// Package servicelb is the reconciler that gives LoadBalancer Services on bare machines their
// addresses, as k3s's ServiceLB does: status.loadBalancer.ingress is the nodes' addresses (the
// service proxy serves the port there, with no extra pods), and a Service whose port another
// LoadBalancer Service already holds stays pending with a Warning event.
package servicelb

import (
	"context"
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler.
const Name = "servicelb"

// ReasonPortInUse is the Warning a Service gets while another holds one of its ports.
const ReasonPortInUse = "PortInUse"

var (
	services = schema.GroupResource{Resource: "services"}
	nodes    = schema.GroupResource{Resource: "nodes"}
)

type writer interface {
	UpdateStatus(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
}

// Config configures the reconciler.
type Config struct {
	// Workers reconciling Services concurrently. Default 2.
	Workers int
}

// Reconciler writes LoadBalancer Services' status.
type Reconciler struct {
	ix     *informer.Index
	w      writer
	kind   *kinds.Kind
	events *recorder.Recorder
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the reconciler on e: it reconciles Services; a change of any node or of any
// LoadBalancer Service queues every LoadBalancer Service (addresses and ports are shared).
func New(e *engine.Engine, cfg Config) (*Reconciler, error) {
	ks, err := e.Kinds(services)
	if err != nil {
		return nil, fmt.Errorf("servicelb: %w", err)
	}
	k := ks[0]
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	events, err := e.EventRecorder(Name, "service-lb-controller")
	if err != nil {
		return nil, err
	}
	r := &Reconciler{ix: e.Index(), w: e.Registry(), kind: k, events: events}
	e.Register(engine.Registration{
		Name: Name, For: services, Workers: cfg.Workers, Reconciler: r,
		Watches: []engine.Watch{engine.Watches(nodes, r.all), engine.Watches(services, r.all)},
		Reads:   []schema.GroupResource{nodes},
	})
	return r, nil
}

// all maps a change to every LoadBalancer Service.
func (r *Reconciler) all(engine.Event) []eventlog.Key {
	var keys []eventlog.Key
	for _, o := range r.ix.Objects(services, "", isLB) {
		s := o.(*corev1.Service)
		keys = append(keys, eventlog.Key{Resource: services.Resource, Namespace: s.Namespace, Name: s.Name})
	}
	return keys
}

func isLB(o runtime.Object) bool {
	s := o.(*corev1.Service)
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerClass == nil
}

// older says whether a holds its ports before b: the older Service, then by namespace and name.
func older(a, b *corev1.Service) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// Reconcile sets the Service's load balancer ingress to the nodes' addresses, or empties it
// while one of its ports is held by an older LoadBalancer Service.
func (r *Reconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	obj, ok := r.ix.Object(req.Key)
	if !ok || !isLB(obj) {
		return engine.Result{}, nil
	}
	svc := obj.(*corev1.Service)
	var holder *corev1.Service
	var taken corev1.ServicePort
	for _, o := range r.ix.Objects(services, "", isLB) {
		other := o.(*corev1.Service)
		if (other.Namespace == svc.Namespace && other.Name == svc.Name) || !older(other, svc) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if slices.ContainsFunc(other.Spec.Ports, func(q corev1.ServicePort) bool { return q.Port == p.Port && q.Protocol == p.Protocol }) {
				holder, taken = other, p
				break
			}
		}
		if holder != nil {
			break
		}
	}
	var want []corev1.LoadBalancerIngress
	if holder != nil {
		r.events.Event(svc, req.Cause, corev1.EventTypeWarning, ReasonPortInUse,
			fmt.Sprintf("port %d/%s is in use by LoadBalancer Service %s/%s on the nodes' addresses", taken.Port, taken.Protocol, holder.Namespace, holder.Name))
	} else {
		want = nodeAddresses(r.ix)
	}
	if equality.Semantic.DeepEqual(svc.Status.LoadBalancer.Ingress, want) {
		return engine.Result{}, nil
	}
	next := svc.DeepCopy()
	next.Status.LoadBalancer.Ingress = want
	_, err := r.w.UpdateStatus(ctx, r.kind, next, registry.Request{Actor: registry.Reconciler(Name), Cause: req.Cause})
	if apierrors.IsNotFound(err) {
		return engine.Result{}, nil
	}
	if err != nil {
		return engine.Result{}, fmt.Errorf("servicelb: %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return engine.Result{}, nil
}

// nodeAddresses are the ingress entries of the nodes' addresses (NodeIPs).
func nodeAddresses(ix *informer.Index) []corev1.LoadBalancerIngress {
	var out []corev1.LoadBalancerIngress
	vip := corev1.LoadBalancerIPModeVIP
	for _, ip := range NodeIPs(ix) {
		out = append(out, corev1.LoadBalancerIngress{IP: ip, IPMode: &vip})
	}
	return out
}

// NodeIPs are the addresses at which the nodes serve load-balanced ports (LoadBalancer
// Services here, Ingresses in reconcilers/ingressstatus): of every node not being deleted,
// its ExternalIP, else its InternalIP (ServiceLB's choice), each once, sorted. The index must
// read nodes.
func NodeIPs(ix *informer.Index) []string {
	seen := map[string]bool{}
	var ips []string
	for _, o := range ix.Objects(nodes, "", nil) {
		n := o.(*corev1.Node)
		if n.DeletionTimestamp != nil {
			continue
		}
		var internal, external []string
		for _, a := range n.Status.Addresses {
			switch a.Type {
			case corev1.NodeExternalIP:
				external = append(external, a.Address)
			case corev1.NodeInternalIP:
				internal = append(internal, a.Address)
			}
		}
		if len(external) == 0 {
			external = internal
		}
		for _, ip := range external {
			if !seen[ip] {
				seen[ip] = true
				ips = append(ips, ip)
			}
		}
	}
	sort.Strings(ips)
	return ips
}
