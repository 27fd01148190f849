package builtin

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// service is core/v1 Service. Its cluster IP and node ports are unique in the cluster: the
// registry's allocator hands them out when a Service is created or changes type.
func service() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "Service"), Resource: "services", Singular: "service", ShortNames: []string{"svc"}, Categories: all,
		Namespaced: true, Subresources: []string{"status", "proxy"},
		Strategy: kinds.Typed[*corev1.Service]{
			Default:              defaults.Service,
			DefaultUpdate:        defaults.ServiceUpdate,
			Validate:             validation.Service,
			ValidateUpdate:       validation.ServiceUpdate,
			ValidateStatusUpdate: validation.MetadataUpdate[*corev1.Service],
			Table:                printers.ServiceTable,
			Fields: func(svc *corev1.Service, s fields.Set) {
				s["spec.clusterIP"] = svc.Spec.ClusterIP
				s["spec.type"] = string(svc.Spec.Type)
			},
			Holds: func(svc *corev1.Service) (ips []string, ports []int32) {
				if svc.Spec.ClusterIP != "" {
					ips = []string{svc.Spec.ClusterIP}
				}
				if needsNodePorts(svc) {
					for _, p := range svc.Spec.Ports {
						ports = append(ports, p.NodePort)
					}
				}
				return ips, ports
			},
			Allocate: allocateService,
		}.Strategy(),
	}
}

func needsNodePorts(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
}

// allocateService gives a Service the cluster IP and node ports its type needs: a new one (old
// nil), or one that replaces old, as Kubernetes' service storage does on create and on update
// (allocateCreate, allocateUpdate): a Service that stops being ExternalName gets a cluster IP
// (the one it asks for, or any), one that becomes NodePort or LoadBalancer gets node ports for
// the ports that have none, and a node port asked for by number must be free. What old holds
// stays its own.
func allocateService(_ context.Context, a kinds.Allocator, svc, old *corev1.Service) error {
	if old != nil && !allocates(svc, old) {
		return nil
	}
	heldIP := ""
	if old != nil {
		var heldPorts []int32
		if old.Spec.Type != corev1.ServiceTypeExternalName {
			heldIP = old.Spec.ClusterIP
		}
		for _, p := range old.Spec.Ports {
			if p.NodePort != 0 {
				heldPorts = append(heldPorts, p.NodePort)
			}
		}
		a.Keep([]string{heldIP}, heldPorts)
	}
	invalid := func(errs ...*field.Error) error {
		return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Service").GroupKind(), svc.Name, errs)
	}
	spec := &svc.Spec
	path := field.NewPath("spec")
	if spec.Type != corev1.ServiceTypeExternalName {
		switch {
		case spec.ClusterIP == corev1.ClusterIPNone:
		case spec.ClusterIP == "":
			ip, err := a.IP("")
			if _, ok := err.(apierrors.APIStatus); err != nil && !ok {
				return apierrors.NewInternalError(err)
			}
			if err != nil {
				return err
			}
			spec.ClusterIP = ip
			spec.ClusterIPs = nil
		default:
			if _, err := a.IP(spec.ClusterIP); err != nil {
				return invalid(field.Invalid(path.Child("clusterIP"), spec.ClusterIP, err.Error()))
			}
		}
		if len(spec.ClusterIPs) == 0 {
			spec.ClusterIPs = []string{spec.ClusterIP}
		}
		if len(spec.IPFamilies) == 0 && spec.ClusterIP != corev1.ClusterIPNone {
			spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		}
		if spec.IPFamilyPolicy == nil {
			p := corev1.IPFamilyPolicySingleStack
			spec.IPFamilyPolicy = &p
		}
	}
	if needsNodePorts(svc) {
		for i := range spec.Ports {
			p := &spec.Ports[i]
			n, err := a.Port(p.NodePort)
			if err != nil {
				return invalid(field.Invalid(path.Child("ports").Index(i).Child("nodePort"), p.NodePort, err.Error()))
			}
			p.NodePort = n
		}
	}
	return nil
}

// allocates reports whether an update of old to svc needs a cluster IP or node port it does not
// hold yet.
func allocates(svc, old *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP != corev1.ClusterIPNone &&
		(old.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP != old.Spec.ClusterIP) {
		return true
	}
	if !needsNodePorts(svc) {
		return false
	}
	held := map[int32]bool{}
	for _, p := range old.Spec.Ports {
		held[p.NodePort] = true
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort == 0 || !held[p.NodePort] {
			return true
		}
	}
	return false
}
