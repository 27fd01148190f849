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
	clientset "k8s.io/client-go/kubernetes"
	discoveryclient "k8s.io/client-go/kubernetes/typed/discovery/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/endpointslice"
	endpointsliceutil "k8s.io/endpointslice/util"
	"k8s.io/klog/v2"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/registry"
)

// SliceReconciler keeps the EndpointSlices of every Service with a selector (Kubernetes'
// endpointslice controller), by running k8s.io/endpointslice's Reconciler: its writes go
// through the registry, its reads come from the informer index.
type SliceReconciler struct {
	base
	events   eventer
	max      int32
	tracker  *endpointsliceutil.EndpointSliceTracker
	triggers *endpointsliceutil.TriggerTimeTracker
}

func newSliceReconciler(b base, events eventer, maxPerSlice int) *SliceReconciler {
	return &SliceReconciler{base: b, events: events, max: int32(maxPerSlice),
		tracker: endpointsliceutil.NewEndpointSliceTracker(), triggers: endpointsliceutil.NewTriggerTimeTracker()}
}

// sliceChanged maps a change of a slice this reconciler manages to its Service, as the
// endpointslice controller's slice handlers do (a deletion it did not expect is forgotten by
// the tracker).
func (r *SliceReconciler) sliceChanged(ev engine.Event) []eventlog.Key {
	var keys []eventlog.Key
	for _, o := range [...]*struct {
		old bool
		l   labels.Set
	}{{true, labelsOf(ev, true)}, {false, labelsOf(ev, false)}} {
		if o.l == nil || o.l[discoveryv1.LabelManagedBy] != SliceManagedBy || o.l[discoveryv1.LabelServiceName] == "" {
			continue
		}
		keys = append(keys, eventlog.Key{Resource: services.Resource, Namespace: ev.Object().Key.Namespace, Name: o.l[discoveryv1.LabelServiceName]})
	}
	if ev.New == nil && ev.Old != nil && len(keys) > 0 {
		if obj, err := ev.Old.Decode(); err == nil {
			r.tracker.HandleDeletion(obj.(*discoveryv1.EndpointSlice))
		}
	}
	return keys
}

func labelsOf(ev engine.Event, old bool) labels.Set {
	o := ev.New
	if old {
		o = ev.Old
	}
	if o == nil {
		return nil
	}
	return o.Labels
}

// Reconcile writes the EndpointSlices of the Service with req's key.
func (r *SliceReconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	key := req.Key
	svc, ok := r.service(key)
	if !ok {
		r.triggers.DeleteService(key.Namespace, key.Name)
		r.tracker.DeleteService(key.Namespace, key.Name)
		return engine.Result{}, nil // the garbage collector deletes the slices it owned
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.Selector == nil {
		return engine.Result{}, nil
	}
	podList := r.selectedPods(svc)
	sel := labels.Set{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: SliceManagedBy}.AsSelectorPreValidated()
	var slices []*discoveryv1.EndpointSlice
	for _, o := range r.ix.Objects(endpointSlices, svc.Namespace, func(o runtime.Object) bool {
		s := o.(*discoveryv1.EndpointSlice)
		return s.DeletionTimestamp == nil && sel.Matches(labels.Set(s.Labels))
	}) {
		slices = append(slices, o.(*discoveryv1.EndpointSlice))
	}
	if r.tracker.StaleSlices(svc, slices) {
		return engine.Result{}, fmt.Errorf("endpointslices of %s/%s: the index is behind this reconciler's writes", key.Namespace, key.Name)
	}
	trigger := r.triggers.ComputeEndpointLastChangeTriggerTime(key.Namespace, svc, podList)
	client := &sliceClient{ctx: ctx, r: r, req: registry.Request{Actor: registry.Reconciler(EndpointSliceName), Cause: req.Cause}}
	rec := endpointslice.NewReconciler(client, nodeLister{r.base}, r.max, r.tracker, nil,
		causedRecorder{r.events, req.Cause}, SliceManagedBy)
	if err := rec.Reconcile(klog.Background(), svc, podList, slices, trigger); err != nil {
		r.events.Event(svc, req.Cause, corev1.EventTypeWarning, "FailedToUpdateEndpointSlices",
			fmt.Sprintf("Error updating Endpoint Slices for Service %s/%s: %v", svc.Namespace, svc.Name, err))
		return engine.Result{}, wrap("endpointslices of", key, err)
	}
	return engine.Result{}, nil
}

// nodeLister is client-go's NodeLister over the informer index.
type nodeLister struct{ b base }

var _ corelisters.NodeLister = nodeLister{}

func (l nodeLister) List(sel labels.Selector) ([]*corev1.Node, error) {
	var out []*corev1.Node
	for _, o := range l.b.ix.Objects(nodes, "", nil) {
		if n := o.(*corev1.Node); sel.Matches(labels.Set(n.Labels)) {
			out = append(out, n)
		}
	}
	return out, nil
}

func (l nodeLister) Get(name string) (*corev1.Node, error) {
	o, ok := l.b.ix.Object(eventlog.Key{Resource: nodes.Resource, Name: name})
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("node"), name)
	}
	return o.(*corev1.Node), nil
}

// causedRecorder is client-go's EventRecorder over the reconciler's recorder, recording the
// reconcile's cause.
type causedRecorder struct {
	ev    eventer
	cause uint64
}

func (c causedRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	c.ev.Event(obj, c.cause, eventtype, reason, message)
}

func (c causedRecorder) Eventf(obj runtime.Object, eventtype, reason, format string, args ...any) {
	c.ev.Event(obj, c.cause, eventtype, reason, fmt.Sprintf(format, args...))
}

func (c causedRecorder) AnnotatedEventf(obj runtime.Object, _ map[string]string, eventtype, reason, format string, args ...any) {
	c.Eventf(obj, eventtype, reason, format, args...)
}

var _ record.EventRecorder = causedRecorder{}

// sliceClient is the part of a clientset the endpointslice Reconciler uses (EndpointSlices'
// create, update and delete), going to the registry with the reconcile's context and cause.
// Any other call panics on the nil embedded interfaces: the Reconciler makes none.
type sliceClient struct {
	clientset.Interface
	ctx context.Context
	r   *SliceReconciler
	req registry.Request
}

func (c *sliceClient) DiscoveryV1() discoveryclient.DiscoveryV1Interface { return discoveryAPI{c: c} }

type discoveryAPI struct {
	discoveryclient.DiscoveryV1Interface
	c *sliceClient
}

func (d discoveryAPI) EndpointSlices(ns string) discoveryclient.EndpointSliceInterface {
	return sliceAPI{c: d.c, ns: ns}
}

type sliceAPI struct {
	discoveryclient.EndpointSliceInterface
	c  *sliceClient
	ns string
}

func (s sliceAPI) Create(_ context.Context, es *discoveryv1.EndpointSlice, _ metav1.CreateOptions) (*discoveryv1.EndpointSlice, error) {
	es = es.DeepCopy()
	es.Namespace = s.ns
	out, err := s.c.r.w.Create(s.c.ctx, s.c.r.sliceKind, es, s.c.req)
	if err != nil {
		return nil, err
	}
	return out.(*discoveryv1.EndpointSlice), nil
}

func (s sliceAPI) Update(_ context.Context, es *discoveryv1.EndpointSlice, _ metav1.UpdateOptions) (*discoveryv1.EndpointSlice, error) {
	es = es.DeepCopy()
	es.Namespace = s.ns
	out, err := s.c.r.w.Update(s.c.ctx, s.c.r.sliceKind, es, s.c.req)
	if err != nil {
		return nil, err
	}
	return out.(*discoveryv1.EndpointSlice), nil
}

func (s sliceAPI) Delete(_ context.Context, name string, opts metav1.DeleteOptions) error {
	_, _, err := s.c.r.w.Delete(s.c.ctx, s.c.r.sliceKind, s.ns, name, opts, s.c.req)
	return err
}
