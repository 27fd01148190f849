package apiserver

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// InitialNamespaces exist from the start, as on Kubernetes.
var InitialNamespaces = []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease}

var systemActor = registry.Request{Actor: registry.System("apiserver"), FieldManager: "logplane-apiserver"}

func (s *Server) kinds(resource string) (*kinds.Kind, bool) {
	k, ok := s.catalog.ByGroupResource(schema.GroupResource{Resource: resource})
	return k, ok
}

// bootstrap creates the initial namespaces and the kubernetes Service if they do not exist.
func (s *Server) bootstrap(ctx context.Context) error {
	nsKind, ok := s.kinds("namespaces")
	if !ok {
		return nil
	}
	for _, name := range InitialNamespaces {
		if _, err := s.reg.GetObject(ctx, nsKind, "", name, registry.ReadOptions{ResourceVersion: "0"}); err == nil {
			continue
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if _, err := s.reg.Create(ctx, nsKind, ns, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("apiserver: creating namespace %s: %w", name, err)
		}
	}
	// The default ServiceCIDR, from the configured range, before the first Service takes an
	// address from it (Kubernetes' defaultservicecidr controller).
	if cidrKind, ok := s.catalog.ByGroupResource(registry.ServiceCIDRs); ok {
		if _, err := s.reg.GetObject(ctx, cidrKind, "", defaultServiceCIDRName, registry.ReadOptions{ResourceVersion: "0"}); err != nil {
			cidr := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: defaultServiceCIDRName},
				Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{registry.ServiceCIDR.String()}}}
			if _, err := s.reg.Create(ctx, cidrKind, cidr, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("apiserver: creating the default ServiceCIDR: %w", err)
			}
		}
	}
	if err := s.defaultIngressClass(ctx); err != nil {
		return err
	}
	if err := s.defaultStorageClass(ctx); err != nil {
		return err
	}
	svcKind, ok := s.kinds("services")
	if !ok {
		return nil
	}
	if err := s.kubeDNSService(ctx, svcKind); err != nil {
		return err
	}
	if _, err := s.reg.GetObject(ctx, svcKind, metav1.NamespaceDefault, "kubernetes", registry.ReadOptions{ResourceVersion: "0"}); err == nil {
		return s.kubernetesEndpoints(ctx)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: registry.ServiceCIDR.Addr().Next().String(),
			Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(6443)}},
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
	if _, err := s.reg.Create(ctx, svcKind, svc, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("apiserver: creating the kubernetes service: %w", err)
	}
	return s.kubernetesEndpoints(ctx)
}

// kubernetesEndpoints adds this server's advertised address to the Endpoints and the
// EndpointSlice of the `kubernetes` Service, as kube-apiserver's endpoint reconciler does
// (the Endpoints carry endpointslice.kubernetes.io/skip-mirror: the server writes the slice
// itself). Addresses of other API servers already there are kept.
func (s *Server) kubernetesEndpoints(ctx context.Context) error {
	ap := s.cfg.AdvertiseAddress
	if !ap.IsValid() {
		return nil
	}
	epKind, ok1 := s.kinds("endpoints")
	sliceKind, ok2 := s.catalog.ByGroupResource(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"})
	if !ok1 || !ok2 {
		return nil
	}
	ip, port := ap.Addr().Unmap().String(), int32(ap.Port())
	err := s.upsert(ctx, epKind, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault}},
		func(obj runtime.Object) error {
			ep := obj.(*corev1.Endpoints)
			if ep.Labels == nil {
				ep.Labels = map[string]string{}
			}
			ep.Labels[discoveryv1.LabelSkipMirror] = "true"
			var addrs []corev1.EndpointAddress
			for _, ss := range ep.Subsets {
				addrs = append(addrs, ss.Addresses...)
			}
			if !slices.ContainsFunc(addrs, func(a corev1.EndpointAddress) bool { return a.IP == ip }) {
				addrs = append(addrs, corev1.EndpointAddress{IP: ip})
			}
			ep.Subsets = []corev1.EndpointSubset{{Addresses: addrs,
				Ports: []corev1.EndpointPort{{Name: "https", Port: port, Protocol: corev1.ProtocolTCP}}}}
			return nil
		})
	if err != nil {
		return fmt.Errorf("apiserver: writing the kubernetes endpoints: %w", err)
	}
	err = s.upsert(ctx, sliceKind, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault}},
		func(obj runtime.Object) error {
			es := obj.(*discoveryv1.EndpointSlice)
			es.Labels = map[string]string{discoveryv1.LabelServiceName: "kubernetes"}
			es.AddressType = discoveryv1.AddressTypeIPv4
			if ap.Addr().Unmap().Is6() {
				es.AddressType = discoveryv1.AddressTypeIPv6
			}
			if !slices.ContainsFunc(es.Endpoints, func(e discoveryv1.Endpoint) bool { return slices.Contains(e.Addresses, ip) }) {
				es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
			}
			name, proto := "https", corev1.ProtocolTCP
			es.Ports = []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}}
			return nil
		})
	if err != nil {
		return fmt.Errorf("apiserver: writing the kubernetes endpointslice: %w", err)
	}
	return nil
}

// upsert applies mutate to the object named as fresh is, or to fresh when there is none, and
// writes the result.
func (s *Server) upsert(ctx context.Context, k *kinds.Kind, fresh runtime.Object, mutate func(runtime.Object) error) error {
	m, err := meta.Accessor(fresh)
	if err != nil {
		return err
	}
	_, err = s.reg.Modify(ctx, k, m.GetNamespace(), m.GetName(), systemActor, registry.UpdateOptions{
		CreateIfMissing: func(ctx context.Context) (runtime.Object, error) {
			if err := mutate(fresh); err != nil {
				return nil, err
			}
			return s.reg.Create(ctx, k, fresh, systemActor)
		},
	}, func(obj runtime.Object) (runtime.Object, error) { return obj, mutate(obj) })
	return err
}

// KubeDNSAddr is the kube-dns Service's cluster IP: the tenth address of the Service range, as
// kubeadm gives it.
func KubeDNSAddr() netip.Addr {
	a := registry.ServiceCIDR.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	return a
}

// kubeDNSService creates the kube-dns Service in kube-system if it does not exist: the address
// of the cluster DNS that every node agent serves (docs/dns.md). It has no selector; each agent
// writes the EndpointSlice of its own server, and internalTrafficPolicy Local keeps every
// node's queries on its own server, as NodeLocal DNSCache does.
func (s *Server) kubeDNSService(ctx context.Context, svcKind *kinds.Kind) error {
	if _, err := s.reg.GetObject(ctx, svcKind, metav1.NamespaceSystem, "kube-dns", registry.ReadOptions{ResourceVersion: "0"}); err == nil {
		return nil
	}
	local := corev1.ServiceInternalTrafficPolicyLocal
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: KubeDNSAddr().String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
			},
			SessionAffinity:       corev1.ServiceAffinityNone,
			InternalTrafficPolicy: &local,
		},
	}
	if _, err := s.reg.Create(ctx, svcKind, svc, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("apiserver: creating the kube-dns service: %w", err)
	}
	return nil
}

// defaultServiceCIDRName names the ServiceCIDR of the configured range, as Kubernetes names it.
const defaultServiceCIDRName = "kubernetes"

// Logplane's IngressClass: served by the node agents' Ingress proxy (dataplane/ingressproxy),
// the cluster's default class.
const (
	DefaultIngressClassName       = "logplane"
	DefaultIngressClassController = "logplane.io/ingress"
)

// defaultIngressClass creates the IngressClass "logplane", marked the default class, if it
// does not exist (once deleted or unmarked by a user, it is created again at the next start,
// as the default RBAC policy is).
func (s *Server) defaultIngressClass(ctx context.Context) error {
	k, ok := s.catalog.ByGroupResource(schema.GroupResource{Group: networkingv1.GroupName, Resource: "ingressclasses"})
	if !ok {
		return nil
	}
	if _, err := s.reg.GetObject(ctx, k, "", DefaultIngressClassName, registry.ReadOptions{ResourceVersion: "0"}); err == nil {
		return nil
	}
	ic := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: DefaultIngressClassName,
			Annotations: map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}},
		Spec: networkingv1.IngressClassSpec{Controller: DefaultIngressClassController},
	}
	if _, err := s.reg.Create(ctx, k, ic, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("apiserver: creating the default IngressClass: %w", err)
	}
	return nil
}
