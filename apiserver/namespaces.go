package apiserver

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

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
	svcKind, ok := s.kinds("services")
	if !ok {
		return nil
	}
	if _, err := s.reg.GetObject(ctx, svcKind, metav1.NamespaceDefault, "kubernetes", registry.ReadOptions{ResourceVersion: "0"}); err == nil {
		return nil
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
	return nil
}

// defaultServiceCIDRName names the ServiceCIDR of the configured range, as Kubernetes names it.
const defaultServiceCIDRName = "kubernetes"
