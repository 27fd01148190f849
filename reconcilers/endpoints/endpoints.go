// Package endpoints holds the reconcilers that turn Services and the pods they select into
// Endpoints and EndpointSlices, as kube-controller-manager's endpoint, endpointslice and
// endpointslice-mirroring controllers do: the EndpointSlice reconciler runs the published
// k8s.io/endpointslice reconciler over the informer index and writes through the registry; the
// Endpoints reconciler is a port of pkg/controller/endpoint; the mirroring reconciler copies the
// Endpoints a user writes for a Service without a selector into EndpointSlices.
package endpoints

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	endpointsliceutil "k8s.io/endpointslice/util"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

// Name of the three together, in the list of reconcilers.
const Name = "endpoints"

// Names of the reconcilers (and their actors), as kube-controller-manager names the controllers.
const (
	EndpointsName     = "endpoints-controller"
	EndpointSliceName = "endpointslice-controller"
	MirroringName     = "endpointslicemirroring-controller"
)

// Values of the endpointslice.kubernetes.io/managed-by label, as Kubernetes writes them.
const (
	SliceManagedBy     = "endpointslice-controller.k8s.io"
	MirroringManagedBy = "endpointslicemirroring-controller.k8s.io"
	// EndpointsManagedBy is the endpoints.kubernetes.io/managed-by label of the Endpoints the
	// Endpoints reconciler writes.
	EndpointsManagedBy = "endpoint-controller"
)

// MaxEndpointsPerSlice is kube-controller-manager's --max-endpoints-per-slice default.
const MaxEndpointsPerSlice = 100

var (
	services       = schema.GroupResource{Resource: "services"}
	pods           = schema.GroupResource{Resource: "pods"}
	nodes          = schema.GroupResource{Resource: "nodes"}
	endpoints      = schema.GroupResource{Resource: "endpoints"}
	endpointSlices = schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}
)

// writer is what the reconcilers write through.
type writer interface {
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Update(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
}

// eventer records Events.
type eventer interface {
	Event(obj runtime.Object, cause uint64, eventtype, reason, message string)
}

// Config configures the reconcilers.
type Config struct {
	// Workers per reconciler. Default 4.
	Workers int
	// MaxEndpointsPerSlice bounds the endpoints of one slice. Default 100.
	MaxEndpointsPerSlice int
}

// Reconcilers are the three, for tests.
type Reconcilers struct {
	Endpoints     *EndpointsReconciler
	EndpointSlice *SliceReconciler
	Mirroring     *MirroringReconciler
}

// Setup is the reconcilers' line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// base is what the three share.
type base struct {
	ix        *informer.Index
	w         writer
	svcKind   *kinds.Kind
	epKind    *kinds.Kind
	sliceKind *kinds.Kind
}

// New registers the three reconcilers on e.
func New(e *engine.Engine, cfg Config) (*Reconcilers, error) {
	ks, err := e.Kinds(services, endpoints, endpointSlices)
	if err != nil {
		return nil, fmt.Errorf("endpoints: %w", err)
	}
	svcKind, epKind, sliceKind := ks[0], ks[1], ks[2]
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.MaxEndpointsPerSlice <= 0 {
		cfg.MaxEndpointsPerSlice = MaxEndpointsPerSlice
	}
	b := base{ix: e.Index(), w: e.Registry(), svcKind: svcKind, epKind: epKind, sliceKind: sliceKind}
	epEvents, err := e.EventRecorder(EndpointsName, "endpoint-controller")
	if err != nil {
		return nil, err
	}
	sliceEvents, err := e.EventRecorder(EndpointSliceName, "endpoint-slice-controller")
	if err != nil {
		return nil, err
	}
	mirrorEvents, err := e.EventRecorder(MirroringName, "endpoint-slice-mirroring-controller")
	if err != nil {
		return nil, err
	}
	rs := &Reconcilers{
		Endpoints:     &EndpointsReconciler{base: b, events: epEvents, stale: newStaleTracker(), triggers: endpointsliceutil.NewTriggerTimeTracker()},
		EndpointSlice: newSliceReconciler(b, sliceEvents, cfg.MaxEndpointsPerSlice),
		Mirroring:     &MirroringReconciler{base: b, events: mirrorEvents, max: cfg.MaxEndpointsPerSlice},
	}
	podsToServices := engine.Watches(pods, b.servicesOfPod)
	e.Register(engine.Registration{
		Name: EndpointsName, For: services, Workers: cfg.Workers, Reconciler: rs.Endpoints,
		Watches: []engine.Watch{podsToServices, engine.Watches(endpoints, sameName(services))},
		Reads:   []schema.GroupResource{pods, endpoints},
	})
	e.Register(engine.Registration{
		Name: EndpointSliceName, For: services, Workers: cfg.Workers, Reconciler: rs.EndpointSlice,
		Watches: []engine.Watch{podsToServices, engine.Watches(endpointSlices, rs.EndpointSlice.sliceChanged)},
		Reads:   []schema.GroupResource{pods, nodes, endpointSlices},
	})
	e.Register(engine.Registration{
		Name: MirroringName, For: endpoints, Workers: cfg.Workers, Reconciler: rs.Mirroring,
		Watches: []engine.Watch{engine.Watches(services, sameName(endpoints)),
			engine.Watches(endpointSlices, sliceOf(MirroringManagedBy, endpoints))},
		Reads: []schema.GroupResource{services, endpointSlices},
	})
	return rs, nil
}

// servicesOfPod maps a pod change to the Services of its namespace whose selector matched its
// labels before or after the change.
func (b base) servicesOfPod(ev engine.Event) []eventlog.Key {
	var before, after labels.Set
	if ev.Old != nil {
		before = ev.Old.Labels
	}
	if ev.New != nil {
		after = ev.New.Labels
	}
	ns := ev.Object().Key.Namespace
	var keys []eventlog.Key
	for _, obj := range b.ix.Objects(services, ns, nil) {
		svc := obj.(*corev1.Service)
		if svc.Spec.Selector == nil {
			continue
		}
		sel := labels.Set(svc.Spec.Selector).AsSelectorPreValidated()
		if (ev.Old != nil && sel.Matches(before)) || (ev.New != nil && sel.Matches(after)) {
			keys = append(keys, eventlog.Key{Resource: services.Resource, Namespace: ns, Name: svc.Name})
		}
	}
	return keys
}

// sameName maps a change to the object of resource gr with the same namespace and name.
func sameName(gr schema.GroupResource) func(engine.Event) []eventlog.Key {
	return func(ev engine.Event) []eventlog.Key {
		k := ev.Object().Key
		return []eventlog.Key{{Group: gr.Group, Resource: gr.Resource, Namespace: k.Namespace, Name: k.Name}}
	}
}

// sliceOf maps a change of a slice managed by managedBy to the object of resource gr its
// kubernetes.io/service-name label names.
func sliceOf(managedBy string, gr schema.GroupResource) func(engine.Event) []eventlog.Key {
	return func(ev engine.Event) []eventlog.Key {
		var keys []eventlog.Key
		for _, o := range []*projections.Object{ev.Old, ev.New} {
			if o == nil || o.Labels[discoveryv1.LabelManagedBy] != managedBy || o.Labels[discoveryv1.LabelServiceName] == "" {
				continue
			}
			keys = append(keys, eventlog.Key{Group: gr.Group, Resource: gr.Resource, Namespace: o.Key.Namespace, Name: o.Labels[discoveryv1.LabelServiceName]})
		}
		return keys
	}
}

// service returns the decoded Service with key, if any.
func (b base) service(key eventlog.Key) (*corev1.Service, bool) {
	obj, ok := b.ix.Object(eventlog.Key{Resource: services.Resource, Namespace: key.Namespace, Name: key.Name})
	if !ok {
		return nil, false
	}
	return obj.(*corev1.Service), true
}

// selectedPods returns the pods of svc's namespace its selector matches.
func (b base) selectedPods(svc *corev1.Service) []*corev1.Pod {
	sel := labels.Set(svc.Spec.Selector).AsSelectorPreValidated()
	objs := b.ix.Objects(pods, svc.Namespace, func(o runtime.Object) bool {
		return sel.Matches(labels.Set(o.(*corev1.Pod).Labels))
	})
	out := make([]*corev1.Pod, len(objs))
	for i, o := range objs {
		out[i] = o.(*corev1.Pod)
	}
	return out
}

// ignoreGone treats a namespace going away or an object already gone as done.
func ignoreGone(err error) error {
	if err == nil || apierrors.IsNotFound(err) || apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return nil
	}
	return err
}

func wrap(what string, key eventlog.Key, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s/%s: %w", what, key.Namespace, key.Name, err)
}
