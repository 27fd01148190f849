package defaults

import (
	corev1 "k8s.io/api/core/v1"
)

func needsClusterIP(s *corev1.Service) bool { return s.Spec.Type != corev1.ServiceTypeExternalName }

func needsNodePort(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
}

func needsHealthCheckNodePort(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// ServiceUpdate carries over, from the Service old that s replaces, what the client left out
// (its allocated cluster IPs, node ports and health check node port, and its IP families) and
// drops what a new type no longer uses: what
// patchAllocatedValues, then dropTypeDependentFields.
func ServiceUpdate(s, old *corev1.Service) {
	if s.Spec.Type == "" {
		s.Spec.Type = corev1.ServiceTypeClusterIP
	}
	if needsClusterIP(old) && needsClusterIP(s) {
		if s.Spec.ClusterIP == "" && len(s.Spec.ClusterIPs) == 0 {
			s.Spec.ClusterIP = old.Spec.ClusterIP
			s.Spec.ClusterIPs = append([]string(nil), old.Spec.ClusterIPs...)
		}
		if len(s.Spec.IPFamilies) == 0 && s.Spec.ClusterIP == old.Spec.ClusterIP {
			s.Spec.IPFamilies = append([]corev1.IPFamily(nil), old.Spec.IPFamilies...)
		}
		if s.Spec.IPFamilyPolicy == nil && old.Spec.IPFamilyPolicy != nil && s.Spec.ClusterIP == old.Spec.ClusterIP {
			p := *old.Spec.IPFamilyPolicy
			s.Spec.IPFamilyPolicy = &p
		}
	}
	if needsNodePort(old) && needsNodePort(s) {
		used := map[int32]bool{}
		for _, p := range s.Spec.Ports {
			if p.NodePort != 0 {
				used[p.NodePort] = true
			}
		}
		byName := map[string]int32{}
		for _, p := range old.Spec.Ports {
			byName[p.Name] = p.NodePort
		}
		for i := range s.Spec.Ports {
			p := &s.Spec.Ports[i]
			if p.NodePort == 0 {
				if v := byName[p.Name]; v != 0 && !used[v] {
					p.NodePort = v
					used[v] = true
				}
			}
		}
	}
	if needsHealthCheckNodePort(old) && needsHealthCheckNodePort(s) && s.Spec.HealthCheckNodePort == 0 {
		s.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}

	// dropTypeDependentFields: fields the old type used and the new one does not, left unchanged
	// by the client, are cleared.
	if s.Spec.Type == old.Spec.Type {
		return
	}
	if !needsClusterIP(s) && needsClusterIP(old) {
		if s.Spec.ClusterIP == old.Spec.ClusterIP {
			s.Spec.ClusterIP = ""
			s.Spec.ClusterIPs = nil
		}
		if sameFamilies(s.Spec.IPFamilies, old.Spec.IPFamilies) {
			s.Spec.IPFamilies = nil
		}
		if s.Spec.IPFamilyPolicy != nil && old.Spec.IPFamilyPolicy != nil && *s.Spec.IPFamilyPolicy == *old.Spec.IPFamilyPolicy {
			s.Spec.IPFamilyPolicy = nil
		}
	}
	if !needsNodePort(s) && needsNodePort(old) {
		for i := range s.Spec.Ports {
			for _, op := range old.Spec.Ports {
				if s.Spec.Ports[i].NodePort == op.NodePort {
					s.Spec.Ports[i].NodePort = 0
				}
			}
		}
	}
	if !needsHealthCheckNodePort(s) && s.Spec.HealthCheckNodePort == old.Spec.HealthCheckNodePort {
		s.Spec.HealthCheckNodePort = 0
	}
	accessible := func(x *corev1.Service) bool {
		return needsNodePort(x) || (x.Spec.Type == corev1.ServiceTypeClusterIP && len(x.Spec.ExternalIPs) > 0)
	}
	if !accessible(s) && s.Spec.ExternalTrafficPolicy == old.Spec.ExternalTrafficPolicy {
		s.Spec.ExternalTrafficPolicy = ""
	}
	if s.Spec.Type != corev1.ServiceTypeLoadBalancer && old.Spec.Type == corev1.ServiceTypeLoadBalancer {
		if equalBoolPtr(s.Spec.AllocateLoadBalancerNodePorts, old.Spec.AllocateLoadBalancerNodePorts) {
			s.Spec.AllocateLoadBalancerNodePorts = nil
		}
		if equalStrPtr(s.Spec.LoadBalancerClass, old.Spec.LoadBalancerClass) {
			s.Spec.LoadBalancerClass = nil
		}
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName && s.Spec.InternalTrafficPolicy != nil && old.Spec.InternalTrafficPolicy != nil &&
		*s.Spec.InternalTrafficPolicy == *old.Spec.InternalTrafficPolicy {
		s.Spec.InternalTrafficPolicy = nil
	}
}

func sameFamilies(a, b []corev1.IPFamily) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalBoolPtr(a, b *bool) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func equalStrPtr(a, b *string) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}
