// Package addressrepair is the repair loop of Services' cluster IPs and node ports, ported from
// Kubernetes' RepairIPAddress (pkg/registry/core/service/ipallocator/controller/repairip.go)
// and the node port repair (portallocator/controller/repair.go). The registry takes each
// address by creating an object of its own in the log (an IPAddress, a ServiceNodePort) before
// it writes the Service, and deletes it when the Service gives the address back; this loop
// mends what a crash between the two, or an operator, leaves behind:
//
//   - a Service whose cluster IP or node port has no object (a Service written before
//     allocation used objects, or whose object was deleted) gets one (ClusterIPNotAllocated,
//     PortNotAllocated); a value another Service's object holds is reported
//     (ClusterIPAlreadyAllocated, PortAlreadyAllocated), one outside every range too
//     (ClusterIPOutOfRange, PortOutOfRange);
//   - an object whose Service does not exist is deleted once older than a grace period (60 s,
//     as Kubernetes: the Service may still be being written), one whose Service does not hold
//     the value is deleted (IPAddressWrongReference), after 5 s if it is newer than the Service.
package addressrepair

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// Names of the reconcilers: one over Services, one over each kind of allocation object.
const (
	ServicesName    = "addressrepair-services"
	IPAddressesName = "addressrepair-ipaddresses"
	NodePortsName   = "addressrepair-nodeports"
)

// Grace periods, as Kubernetes' repair loop has them.
const (
	// LeakGrace is how old an object whose Service does not exist must be before it is deleted:
	// the Service it was taken for may still be being written.
	LeakGrace = 60 * time.Second
	// NewerGrace is how long an object newer than the Service it names, which does not hold it,
	// is left alone: a failed write may still be giving it back.
	NewerGrace = 5 * time.Second
)

var services = schema.GroupResource{Resource: "services"}

// Config configures the reconcilers.
type Config struct {
	// Workers of each reconciler. Default 2.
	Workers int
}

// Setup is the package's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// Repair holds the three reconcilers.
type Repair struct {
	store  *projections.Store
	reg    *registry.Registry
	now    func() time.Time
	events *recorder.Recorder
	svc    *kinds.Kind
	ip     *kinds.Kind
}

// New registers the reconcilers on e.
func New(e *engine.Engine, cfg Config) (*Repair, error) {
	if e.Registry() == nil {
		return nil, errors.New("addressrepair: the engine has no registry")
	}
	cat := e.Registry().Catalog()
	svc, ok1 := cat.ByGroupResource(services)
	ip, ok2 := cat.ByGroupResource(registry.IPAddresses)
	if !ok1 || !ok2 || svc.Strategy.Holds == nil {
		return nil, errors.New("addressrepair: the catalog has no services or ipaddresses")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	events, err := e.Recorder(recorder.Config{Actor: registry.Reconciler(ServicesName),
		Source: corev1.EventSource{Component: "ipallocator-repair-controller"}, SpamFilter: true})
	if err != nil {
		return nil, err
	}
	r := &Repair{store: e.Store(), reg: e.Registry(), now: e.Clock().Now, events: events, svc: svc, ip: ip}
	e.Register(engine.Registration{
		Name: ServicesName, For: services, Workers: cfg.Workers,
		Watches: []engine.Watch{
			engine.Watches(registry.IPAddresses, parentOfIPAddress),
			engine.Watches(registry.ServiceNodePorts, parentOfNodePort),
		},
		Reconciler: engine.ReconcilerFunc(r.reconcileService),
	})
	e.Register(engine.Registration{
		Name: IPAddressesName, For: registry.IPAddresses, Workers: cfg.Workers,
		Watches:    []engine.Watch{engine.Watches(services, r.heldBy(registry.IPAddresses))},
		Reconciler: engine.ReconcilerFunc(r.reconcileIPAddress),
	})
	e.Register(engine.Registration{
		Name: NodePortsName, For: registry.ServiceNodePorts, Workers: cfg.Workers,
		Watches:    []engine.Watch{engine.Watches(services, r.heldBy(registry.ServiceNodePorts))},
		Reconciler: engine.ReconcilerFunc(r.reconcileNodePort),
	})
	return r, nil
}

// parentOfIPAddress maps a deleted IPAddress to the Service it named.
func parentOfIPAddress(ev engine.Event) []eventlog.Key {
	if ev.New != nil || ev.Old == nil {
		return nil
	}
	obj, err := ev.Old.Decode()
	ip, ok := obj.(*networkingv1.IPAddress)
	if err != nil || !ok || ip.Spec.ParentRef == nil || ip.Spec.ParentRef.Resource != services.Resource {
		return nil
	}
	return []eventlog.Key{{Resource: services.Resource, Namespace: ip.Spec.ParentRef.Namespace, Name: ip.Spec.ParentRef.Name}}
}

// parentOfNodePort maps a deleted node port object to the Service it named.
func parentOfNodePort(ev engine.Event) []eventlog.Key {
	if ev.New != nil || ev.Old == nil {
		return nil
	}
	ns, name := registry.NodePortParent(ev.Old)
	return []eventlog.Key{{Resource: services.Resource, Namespace: ns, Name: name}}
}

// heldBy maps a change of a Service to the objects of gr for the values it held before and
// holds after.
func (r *Repair) heldBy(gr schema.GroupResource) func(engine.Event) []eventlog.Key {
	return func(ev engine.Event) []eventlog.Key {
		var keys []eventlog.Key
		for _, o := range []*projections.Object{ev.Old, ev.New} {
			if o == nil {
				continue
			}
			obj, err := o.Decode()
			if err != nil {
				continue
			}
			ips, ports := r.svc.Strategy.Holds(obj)
			if gr == registry.IPAddresses {
				for _, ip := range ips {
					if ip != corev1.ClusterIPNone {
						keys = append(keys, eventlog.Key{Group: gr.Group, Resource: gr.Resource, Name: ip})
					}
				}
			} else {
				for _, p := range ports {
					keys = append(keys, registry.NodePortKey(p))
				}
			}
		}
		return keys
	}
}

func (r *Repair) request(cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(ServicesName), Cause: cause, FieldManager: registry.IPAllocatorName}
}

// reconcileService makes sure each value the Service holds has its object, naming it.
func (r *Repair) reconcileService(ctx context.Context, req engine.Request) (engine.Result, error) {
	o, ok := r.store.Get(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	obj, err := o.Decode()
	if err != nil {
		return engine.Result{}, nil // an undecodable revision: nothing to repair from
	}
	svc, ok := obj.(*corev1.Service)
	if !ok || svc.DeletionTimestamp != nil {
		return engine.Result{}, nil
	}
	parent := networkingv1.ParentReference{Resource: services.Resource, Namespace: svc.Namespace, Name: svc.Name}
	ips, ports := r.svc.Strategy.Holds(svc)
	var errs []error
	for _, ip := range ips {
		if ip == corev1.ClusterIPNone || ip == "" {
			continue
		}
		errs = append(errs, r.repairIP(ctx, svc, ip, parent, req.Cause))
	}
	for _, p := range ports {
		if p == 0 {
			continue
		}
		errs = append(errs, r.repairPort(ctx, svc, p, parent, req.Cause))
	}
	return engine.Result{}, errors.Join(errs...)
}

func (r *Repair) repairIP(ctx context.Context, svc *corev1.Service, ip string, parent networkingv1.ParentReference, cause uint64) error {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		r.events.Eventf(svc, cause, corev1.EventTypeWarning, "ClusterIPNotValid", "Cluster IP %s is not a valid IP; please recreate Service", ip)
		return nil
	}
	if !r.reg.ServiceCIDRContains(addr) {
		r.events.Eventf(svc, cause, corev1.EventTypeWarning, "ClusterIPOutOfRange", "Cluster IP [IPv4]: %s is not within any configured Service CIDR; please recreate service", ip)
		return nil
	}
	o, ok := r.store.Get(eventlog.Key{Group: registry.IPAddresses.Group, Resource: registry.IPAddresses.Resource, Name: ip})
	if !ok {
		r.events.Eventf(svc, cause, corev1.EventTypeWarning, "ClusterIPNotAllocated", "Cluster IP [IPv4]: %s is not allocated; repairing", ip)
		return r.createIP(ctx, ip, parent, cause)
	}
	obj, err := o.Decode()
	held, ok := obj.(*networkingv1.IPAddress)
	if err != nil || !ok {
		return nil // unreadable: its own reconcile leaves it too
	}
	switch ref := held.Spec.ParentRef; {
	case ref == nil || ref.Group != "" || ref.Resource != services.Resource || !managedByAllocator(held):
		r.events.Eventf(svc, cause, corev1.EventTypeWarning, "ClusterIPNotAllocated", "the ClusterIP [IPv4]: %s for Service %s/%s has a wrong reference; repairing", ip, svc.Namespace, svc.Name)
		return r.recreateIP(ctx, held, parent, cause)
	case ref.Namespace != svc.Namespace || ref.Name != svc.Name:
		other, ok := r.service(ref.Namespace, ref.Name)
		if !ok {
			r.events.Eventf(svc, cause, corev1.EventTypeWarning, "ClusterIPNotAllocated", "the ClusterIP [IPv4]: %s for Service %s/%s has a wrong reference; repairing", ip, svc.Namespace, svc.Name)
			return r.recreateIP(ctx, held, parent, cause)
		}
		if holds(r.svc, other, ip, 0) {
			r.events.Eventf(svc, cause, corev1.EventTypeWarning, "ClusterIPAlreadyAllocated", "Cluster IP [IPv4]:%s was assigned to multiple services; please recreate service", ip)
		}
	}
	return nil
}

func managedByAllocator(ip *networkingv1.IPAddress) bool {
	return ip.Labels[networkingv1.LabelManagedBy] == registry.IPAllocatorName && ip.Labels[networkingv1.LabelIPAddressFamily] != ""
}

func (r *Repair) createIP(ctx context.Context, ip string, parent networkingv1.ParentReference, cause uint64) error {
	obj := &networkingv1.IPAddress{
		ObjectMeta: metav1.ObjectMeta{Name: ip, Labels: map[string]string{
			networkingv1.LabelIPAddressFamily: string(corev1.IPv4Protocol), networkingv1.LabelManagedBy: registry.IPAllocatorName}},
		Spec: networkingv1.IPAddressSpec{ParentRef: &parent},
	}
	_, err := r.reg.Create(ctx, r.ip, obj, r.request(cause))
	if apierrors.IsAlreadyExists(err) {
		return nil // taken meanwhile: the next reconcile looks at who holds it
	}
	return err
}

func (r *Repair) recreateIP(ctx context.Context, held *networkingv1.IPAddress, parent networkingv1.ParentReference, cause uint64) error {
	if err := r.deleteIP(ctx, held, cause); err != nil {
		return err
	}
	return r.createIP(ctx, held.Name, parent, cause)
}

// deleteIP deletes the revision of the IPAddress that was looked at, no other.
func (r *Repair) deleteIP(ctx context.Context, held *networkingv1.IPAddress, cause uint64) error {
	rv := held.ResourceVersion
	_, _, err := r.reg.Delete(ctx, r.ip, "", held.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &held.UID, ResourceVersion: &rv}}, r.request(cause))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (r *Repair) repairPort(ctx context.Context, svc *corev1.Service, p int32, parent networkingv1.ParentReference, cause uint64) error {
	if p < registry.NodePortMin || p > registry.NodePortMax {
		r.events.Eventf(svc, cause, corev1.EventTypeWarning, "PortOutOfRange", "Port %d is not within the port range %d-%d; please recreate service", p, registry.NodePortMin, registry.NodePortMax)
		return nil
	}
	o, ok := r.store.Get(registry.NodePortKey(p))
	if !ok {
		r.events.Eventf(svc, cause, corev1.EventTypeWarning, "PortNotAllocated", "Port %d is not allocated; repairing", p)
		err := r.reg.CreateNodePort(ctx, p, parent, r.request(cause))
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	ns, name := registry.NodePortParent(o)
	if ns == svc.Namespace && name == svc.Name {
		return nil
	}
	if other, ok := r.service(ns, name); ok && holds(r.svc, other, "", p) {
		r.events.Eventf(svc, cause, corev1.EventTypeWarning, "PortAlreadyAllocated", "Port %d was assigned to multiple services; please recreate service", p)
		return nil
	}
	// The object names a Service that does not hold the port: it is this one's.
	r.events.Eventf(svc, cause, corev1.EventTypeWarning, "PortNotAllocated", "Port %d is not allocated; repairing", p)
	if err := r.deleteNodePort(ctx, o, cause); err != nil {
		return err
	}
	err := r.reg.CreateNodePort(ctx, p, parent, r.request(cause))
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (r *Repair) deleteNodePort(ctx context.Context, o *projections.Object, cause uint64) error {
	err := r.reg.DeleteNodePort(ctx, eventlog.Record{Seq: o.Seq, Event: o.Event}, r.request(cause))
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // changed meanwhile: its own reconcile looks again
	}
	return err
}

func (r *Repair) service(ns, name string) (*corev1.Service, bool) {
	o, ok := r.store.Get(eventlog.Key{Resource: services.Resource, Namespace: ns, Name: name})
	if !ok {
		return nil, false
	}
	obj, err := o.Decode()
	svc, isSvc := obj.(*corev1.Service)
	return svc, err == nil && isSvc
}

// holds reports whether svc holds cluster IP ip ("" for none) or node port p (0 for none).
func holds(k *kinds.Kind, svc *corev1.Service, ip string, p int32) bool {
	ips, ports := k.Strategy.Holds(svc)
	for _, v := range ips {
		if ip != "" && v == ip {
			return true
		}
	}
	for _, v := range ports {
		if p != 0 && v == p {
			return true
		}
	}
	return false
}

// reconcileIPAddress deletes an IPAddress of the allocator that no Service holds.
func (r *Repair) reconcileIPAddress(ctx context.Context, req engine.Request) (engine.Result, error) {
	o, ok := r.store.Get(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	obj, err := o.Decode()
	ip, isIP := obj.(*networkingv1.IPAddress)
	if err != nil || !isIP {
		return engine.Result{}, nil // unreadable: nothing to judge it by
	}
	if ip.Labels[networkingv1.LabelManagedBy] != registry.IPAllocatorName {
		return engine.Result{}, nil // not the allocator's
	}
	ref := ip.Spec.ParentRef
	if ref == nil || ref.Group != "" || ref.Resource != services.Resource {
		r.events.Eventf(ip, req.Cause, corev1.EventTypeWarning, "IPAddressNotAllocated", "IPAddress %s appears to have been modified, not referencing a Service %v: cleaning up", ip.Name, ref)
		return engine.Result{}, r.deleteIP(ctx, ip, req.Cause)
	}
	after, missing := r.orphaned(ip.CreationTimestamp.Time, ref.Namespace, ref.Name, ip.Name, 0)
	switch {
	case after > 0:
		return engine.Result{RequeueAfter: after}, nil
	case after == 0:
		return engine.Result{}, nil
	case missing:
		r.events.Eventf(ip, req.Cause, corev1.EventTypeWarning, "IPAddressNotAllocated", "IPAddress: %s for Service %s/%s appears to have leaked: cleaning up", ip.Name, ref.Namespace, ref.Name)
	default:
		r.events.Eventf(ip, req.Cause, corev1.EventTypeWarning, "IPAddressWrongReference", "IPAddress: %s for Service %s/%s has a wrong reference; cleaning up", ip.Name, ref.Namespace, ref.Name)
	}
	return engine.Result{}, r.deleteIP(ctx, ip, req.Cause)
}

// reconcileNodePort deletes a node port object that no Service holds.
func (r *Repair) reconcileNodePort(ctx context.Context, req engine.Request) (engine.Result, error) {
	o, ok := r.store.Get(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	p, err := strconv.ParseInt(req.Key.Name, 10, 32)
	if err != nil {
		return engine.Result{}, r.deleteNodePort(ctx, o, req.Cause)
	}
	ns, name := registry.NodePortParent(o)
	after, _ := r.orphaned(o.Event.GetTime().AsTime(), ns, name, "", int32(p))
	if after > 0 {
		return engine.Result{RequeueAfter: after}, nil
	}
	if after == 0 {
		return engine.Result{}, nil
	}
	r.events.RefEvent(corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: ns, Name: name}, req.Cause,
		corev1.EventTypeWarning, "PortNotAllocated", fmt.Sprintf("Port %d appears to have leaked: cleaning up", p))
	return engine.Result{}, r.deleteNodePort(ctx, o, req.Cause)
}

// orphaned decides about an object created at created naming Service ns/name as the holder of
// ip or p: 0 if the Service holds it (nothing to do), > 0 to look again after that long (it
// may still be being written or given back), < 0 to delete it; missing says the Service does
// not exist.
func (r *Repair) orphaned(created time.Time, ns, name, ip string, p int32) (after time.Duration, missing bool) {
	age := r.now().Sub(created)
	svc, ok := r.service(ns, name)
	if !ok {
		if age > LeakGrace {
			return -1, true
		}
		return LeakGrace - age + time.Second, true
	}
	if holds(r.svc, svc, ip, p) {
		return 0, false
	}
	if created.After(svc.CreationTimestamp.Time) && age < NewerGrace {
		return NewerGrace - age + time.Second, false
	}
	return -1, false
}
