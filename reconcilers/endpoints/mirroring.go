package endpoints

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/utils/net"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/registry"
)

// maxEndpointsPerSubset is the most addresses of one Endpoints subset that are mirrored
// (kube-controller-manager's --mirroring-max-endpoints-per-subset default).
const maxEndpointsPerSubset = 1000

// MirroringReconciler mirrors the Endpoints of Services without a selector into EndpointSlices
// (Kubernetes' endpointslicemirroring controller): what a user writes as Endpoints reaches the
// consumers of slices (the service proxy, cluster DNS).
type MirroringReconciler struct {
	base
	events eventer
	max    int
}

// Reconcile mirrors the Endpoints with req's key, or deletes what was mirrored from it.
func (r *MirroringReconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	wreq := registry.Request{Actor: registry.Reconciler(MirroringName), Cause: req.Cause}
	key := req.Key
	existing := r.mirrored(key)
	var ep *corev1.Endpoints
	if obj, ok := r.ix.Object(key); ok {
		ep = obj.(*corev1.Endpoints)
	}
	svc, hasSvc := r.service(key)
	if ep == nil || ep.Labels[discoveryv1.LabelSkipMirror] == "true" ||
		ep.Annotations["control-plane.alpha.kubernetes.io/leader"] != "" ||
		!hasSvc || svc.Spec.Selector != nil {
		for _, s := range existing {
			if _, _, err := r.w.Delete(ctx, r.sliceKind, s.Namespace, s.Name, metav1.DeleteOptions{}, wreq); ignoreGone(err) != nil {
				return engine.Result{}, wrap("deleting mirrored endpointslice of", key, err)
			}
		}
		return engine.Result{}, nil
	}

	type group struct {
		ports     []discoveryv1.EndpointPort
		addrType  discoveryv1.AddressType
		endpoints []discoveryv1.Endpoint
	}
	desired := map[string]*group{}
	invalid, skipped := 0, 0
	for _, subset := range RepackSubsets(append([]corev1.EndpointSubset(nil), ep.DeepCopy().Subsets...)) {
		ports := make([]discoveryv1.EndpointPort, 0, len(subset.Ports))
		for _, p := range subset.Ports {
			ports = append(ports, discoveryv1.EndpointPort{Name: &p.Name, Port: &p.Port, Protocol: &p.Protocol, AppProtocol: p.AppProtocol})
		}
		added := 0
		add := func(a corev1.EndpointAddress, ready bool) {
			if added >= maxEndpointsPerSubset {
				skipped++
				return
			}
			e, at := addressToEndpoint(a, ready)
			if e == nil {
				invalid++
				return
			}
			added++
			k := portsKey(ports, at)
			g := desired[k]
			if g == nil {
				g = &group{ports: ports, addrType: at}
				desired[k] = g
			}
			g.endpoints = append(g.endpoints, *e)
		}
		for _, a := range subset.Addresses {
			add(a, true)
		}
		for _, a := range subset.NotReadyAddresses {
			add(a, false)
		}
	}
	if invalid > 0 {
		r.events.Event(ep, req.Cause, corev1.EventTypeWarning, "InvalidIPAddress",
			fmt.Sprintf("Skipped %d invalid IP addresses when mirroring to EndpointSlices", invalid))
	}
	if skipped > 0 {
		r.events.Event(ep, req.Cause, corev1.EventTypeWarning, "TooManyAddressesToMirror",
			fmt.Sprintf("A max of %d addresses can be mirrored to EndpointSlices per Endpoints subset. %d addresses were skipped", maxEndpointsPerSubset, skipped))
	}

	byKey := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		k := portsKey(s.Ports, s.AddressType)
		byKey[k] = append(byKey[k], s)
	}
	keys := make([]string, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := desired[k]
		have := byKey[k]
		delete(byKey, k)
		for i := 0; i < len(g.endpoints) || i == 0; i += r.max {
			chunk := g.endpoints[i:min(i+r.max, len(g.endpoints))]
			want := newMirroredSlice(ep, g.ports, g.addrType, chunk)
			if len(have) == 0 {
				if _, err := r.w.Create(ctx, r.sliceKind, want, wreq); ignoreGone(err) != nil {
					return engine.Result{}, wrap("mirroring endpoints", key, err)
				}
				continue
			}
			cur := have[0]
			have = have[1:]
			if equality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) && equality.Semantic.DeepEqual(cur.Labels, want.Labels) &&
				equality.Semantic.DeepEqual(cur.Annotations, want.Annotations) {
				continue
			}
			next := cur.DeepCopy()
			next.Endpoints, next.Labels, next.Annotations, next.OwnerReferences = want.Endpoints, want.Labels, want.Annotations, want.OwnerReferences
			if _, err := r.w.Update(ctx, r.sliceKind, next, wreq); ignoreGone(err) != nil {
				return engine.Result{}, wrap("mirroring endpoints", key, err)
			}
		}
		byKey[k] = have
	}
	for _, rest := range byKey {
		for _, s := range rest {
			if _, _, err := r.w.Delete(ctx, r.sliceKind, s.Namespace, s.Name, metav1.DeleteOptions{}, wreq); ignoreGone(err) != nil {
				return engine.Result{}, wrap("deleting mirrored endpointslice of", key, err)
			}
		}
	}
	return engine.Result{}, nil
}

// mirrored returns the slices mirrored from the Endpoints with key, in name order.
func (r *MirroringReconciler) mirrored(key eventlog.Key) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, o := range r.ix.Objects(endpointSlices, key.Namespace, func(o runtime.Object) bool {
		s := o.(*discoveryv1.EndpointSlice)
		return s.DeletionTimestamp == nil && s.Labels[discoveryv1.LabelManagedBy] == MirroringManagedBy &&
			s.Labels[discoveryv1.LabelServiceName] == key.Name
	}) {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func portsKey(ports []discoveryv1.EndpointPort, at discoveryv1.AddressType) string {
	parts := make([]string, 0, len(ports)+1)
	for _, p := range ports {
		var name, proto, app string
		var port int32
		if p.Name != nil {
			name = *p.Name
		}
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		if p.AppProtocol != nil {
			app = *p.AppProtocol
		}
		if p.Port != nil {
			port = *p.Port
		}
		parts = append(parts, fmt.Sprintf("%s/%s/%d/%s", name, proto, port, app))
	}
	sort.Strings(parts)
	return string(at) + "|" + strings.Join(parts, ",")
}

func addressToEndpoint(a corev1.EndpointAddress, ready bool) (*discoveryv1.Endpoint, discoveryv1.AddressType) {
	ip := utilnet.ParseIPSloppy(a.IP)
	if ip == nil {
		return nil, ""
	}
	at := discoveryv1.AddressTypeIPv4
	if ip.To4() == nil {
		at = discoveryv1.AddressTypeIPv6
	}
	e := &discoveryv1.Endpoint{Addresses: []string{ip.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}, TargetRef: a.TargetRef, NodeName: a.NodeName}
	if a.Hostname != "" {
		h := a.Hostname
		e.Hostname = &h
	}
	return e, at
}

func newMirroredSlice(ep *corev1.Endpoints, ports []discoveryv1.EndpointPort, at discoveryv1.AddressType, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: ep.Name + "-", Namespace: ep.Namespace,
			Labels: map[string]string{}, Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ep, schema.GroupVersionKind{Version: "v1", Kind: "Endpoints"})},
		},
		AddressType: at, Ports: ports, Endpoints: append([]discoveryv1.Endpoint{}, eps...),
	}
	for k, v := range ep.Labels {
		s.Labels[k] = v
	}
	s.Labels[discoveryv1.LabelServiceName] = ep.Name
	s.Labels[discoveryv1.LabelManagedBy] = MirroringManagedBy
	for k, v := range ep.Annotations {
		if k == corev1.EndpointsLastChangeTriggerTime || k == corev1.LastAppliedConfigAnnotation {
			continue
		}
		s.Annotations[k] = v
	}
	return s
}
