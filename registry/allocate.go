package registry

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
)

// ServiceCIDR is the range Services' cluster IPs are allocated from; its first address is the
// "kubernetes" Service's.
var ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")

// NodePortRange is the range NodePorts are allocated from.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// allocate gives a Service the cluster IP and node ports its type needs: a new one (old nil),
// or one that replaces old, as Kubernetes' service storage does on create and on update
// (allocateCreate, allocateUpdate): a Service that stops being ExternalName gets a cluster IP
// (the one it asks for, or any), one that becomes NodePort or LoadBalancer gets node ports for
// the ports that have none, and a node port asked for by number must be free. What a Service
// gives up (ExternalName again, fewer ports) is free again as soon as its change is applied:
// addresses in use are those of the Services in the projection, plus those handed out by this
// process a moment ago.
func (r *Registry) allocate(ctx context.Context, k *kinds.Kind, obj, old runtime.Object) error {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil
	}
	oldSvc, _ := old.(*corev1.Service)
	if oldSvc != nil && !allocates(svc, oldSvc) {
		return nil
	}
	r.allocMu.Lock()
	defer r.allocMu.Unlock()
	usedIPs := map[string]bool{}
	usedPorts := map[int32]bool{}
	objs, _ := r.store.List(projections.Query{Resource: k.GroupResource()})
	for _, o := range objs {
		if oldSvc != nil && o.Key.Namespace == oldSvc.Namespace && o.Key.Name == oldSvc.Name {
			continue // the Service being updated: what it holds is checked against old below
		}
		if ip := o.Fields["spec.clusterIP"]; ip != "" {
			usedIPs[ip] = true
		}
		if len(o.Event.GetObject()) > 0 && (o.Fields["spec.type"] == string(corev1.ServiceTypeNodePort) || o.Fields["spec.type"] == string(corev1.ServiceTypeLoadBalancer)) {
			if obj, err := o.Decode(); err == nil {
				for _, p := range obj.(*corev1.Service).Spec.Ports {
					usedPorts[p.NodePort] = true
				}
			}
		}
	}
	for ip := range r.recentIPs {
		usedIPs[ip] = true
	}
	for p := range r.recentPorts {
		usedPorts[p] = true
	}
	// What old holds stays its own.
	heldIP := ""
	heldPorts := map[int32]bool{}
	if oldSvc != nil {
		if oldSvc.Spec.Type != corev1.ServiceTypeExternalName {
			heldIP = oldSvc.Spec.ClusterIP
		}
		for _, p := range oldSvc.Spec.Ports {
			if p.NodePort != 0 {
				heldPorts[p.NodePort] = true
			}
		}
		delete(usedIPs, heldIP)
		for p := range heldPorts {
			delete(usedPorts, p)
		}
	}
	spec := &svc.Spec
	path := field.NewPath("spec")
	if spec.Type != corev1.ServiceTypeExternalName {
		switch {
		case spec.ClusterIP == corev1.ClusterIPNone:
		case spec.ClusterIP == "":
			ip, err := pickIP(usedIPs)
			if err != nil {
				return apierrors.NewInternalError(err)
			}
			spec.ClusterIP = ip
			spec.ClusterIPs = nil
		case spec.ClusterIP == heldIP:
		default:
			addr, err := netip.ParseAddr(spec.ClusterIP)
			if err != nil || !ServiceCIDR.Contains(addr) {
				return apierrors.NewInvalid(k.GroupKind(), svc.Name, field.ErrorList{field.Invalid(path.Child("clusterIP"), spec.ClusterIP,
					fmt.Sprintf("the provided IP is not in the valid range; the range of valid IPs is %s", ServiceCIDR))})
			}
			if usedIPs[spec.ClusterIP] {
				return apierrors.NewInvalid(k.GroupKind(), svc.Name, field.ErrorList{field.Invalid(path.Child("clusterIP"), spec.ClusterIP,
					"the provided IP is already allocated")})
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
		r.recentIPs[spec.ClusterIP] = true
	}
	if spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer {
		for i := range spec.Ports {
			p := &spec.Ports[i]
			switch {
			case p.NodePort != 0 && heldPorts[p.NodePort] && !usedPorts[p.NodePort]:
				// Kept from old.
			case p.NodePort != 0:
				if p.NodePort < NodePortMin || p.NodePort > NodePortMax {
					return apierrors.NewInvalid(k.GroupKind(), svc.Name, field.ErrorList{field.Invalid(path.Child("ports").Index(i).Child("nodePort"), p.NodePort,
						fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", NodePortMin, NodePortMax))})
				}
				if usedPorts[p.NodePort] {
					return apierrors.NewInvalid(k.GroupKind(), svc.Name, field.ErrorList{field.Invalid(path.Child("ports").Index(i).Child("nodePort"), p.NodePort,
						"provided port is already allocated")})
				}
			default:
				for n := 0; ; n++ {
					c := int32(NodePortMin + rand.IntN(NodePortMax-NodePortMin+1))
					if (!usedPorts[c] && !heldPorts[c]) || n > 10000 {
						p.NodePort = c
						break
					}
				}
			}
			usedPorts[p.NodePort] = true
			r.recentPorts[p.NodePort] = true
		}
	}
	if len(r.recentIPs) > 1024 {
		clear(r.recentIPs)
	}
	if len(r.recentPorts) > 1024 {
		clear(r.recentPorts)
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
	if svc.Spec.Type != corev1.ServiceTypeNodePort && svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
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

func pickIP(used map[string]bool) (string, error) {
	first := ServiceCIDR.Masked().Addr()
	size := 1 << (32 - ServiceCIDR.Bits())
	// The first address is the kubernetes Service's, asked for by name.
	for n := 0; n < 64; n++ {
		off := 2 + rand.IntN(size-3)
		ip := addrAt(first, off)
		if !used[ip.String()] {
			return ip.String(), nil
		}
	}
	for off := 2; off < size-1; off++ {
		ip := addrAt(first, off)
		if !used[ip.String()] {
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("registry: no cluster IP left in %s", ServiceCIDR)
}

func addrAt(base netip.Addr, off int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func sortObjects(objs []*projections.Object) {
	slices.SortFunc(objs, func(a, b *projections.Object) int {
		return cmp.Or(cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
}
