package validation

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	supportedServiceTypes = []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeExternalName,
		corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort}
	supportedSessionAffinity = []corev1.ServiceAffinity{corev1.ServiceAffinityClientIP, corev1.ServiceAffinityNone}
	supportedIPFamilyPolicy  = []corev1.IPFamilyPolicy{corev1.IPFamilyPolicyPreferDualStack,
		corev1.IPFamilyPolicyRequireDualStack, corev1.IPFamilyPolicySingleStack}
	supportedIPFamilies            = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	supportedExternalTrafficPolicy = []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster,
		corev1.ServiceExternalTrafficPolicyLocal}
	supportedInternalTrafficPolicy = []corev1.ServiceInternalTrafficPolicy{corev1.ServiceInternalTrafficPolicyCluster,
		corev1.ServiceInternalTrafficPolicyLocal}
)

// kubeletPort may not be exposed by a LoadBalancer service.
const kubeletPort = 10250

func headless(s *corev1.Service) bool {
	return s.Spec.ClusterIP == corev1.ClusterIPNone
}

// Service validates a new Service: metadata and spec, as Kubernetes does on create.
func Service(s *corev1.Service) field.ErrorList {
	errs := objectMeta(&s.ObjectMeta, apivalidation.NameIsDNS1035Label)
	return append(errs, serviceSpec(s)...)
}

// serviceSpec is ValidateService without the metadata.
func serviceSpec(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	sp := &s.Spec
	specPath := field.NewPath("spec")
	portsPath := specPath.Child("ports")

	if len(sp.Ports) == 0 && !headless(s) && sp.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(portsPath, ""))
	}
	switch sp.Type {
	case corev1.ServiceTypeLoadBalancer:
		if headless(s) {
			errs = append(errs, field.Invalid(specPath.Child("clusterIPs").Index(0), sp.ClusterIP, "may not be set to 'None' for LoadBalancer services"))
		}
		for i, p := range sp.Ports {
			if p.Port == kubeletPort {
				errs = append(errs, field.Invalid(portsPath.Index(i), p.Port, fmt.Sprintf("may not expose port %v externally since it is used by kubelet", kubeletPort)))
			}
		}
	case corev1.ServiceTypeNodePort:
		if headless(s) {
			errs = append(errs, field.Invalid(specPath.Child("clusterIPs").Index(0), sp.ClusterIP, "may not be set to 'None' for NodePort services"))
		}
	case corev1.ServiceTypeExternalName:
		if len(sp.ClusterIPs) > 0 {
			errs = append(errs, field.Forbidden(specPath.Child("clusterIPs"), "may not be set for ExternalName services"))
		}
		if len(sp.IPFamilies) > 0 {
			errs = append(errs, field.Forbidden(specPath.Child("ipFamilies"), "may not be set for ExternalName services"))
		}
		if sp.IPFamilyPolicy != nil {
			errs = append(errs, field.Forbidden(specPath.Child("ipFamilyPolicy"), "may not be set for ExternalName services"))
		}
		if cname := strings.TrimSuffix(sp.ExternalName, "."); cname != "" {
			errs = append(errs, dns1123Subdomain(cname, specPath.Child("externalName"))...)
		} else {
			errs = append(errs, field.Required(specPath.Child("externalName"), ""))
		}
	}

	names := sets.New[string]()
	for i := range sp.Ports {
		errs = append(errs, servicePort(&sp.Ports[i], len(sp.Ports) > 1, names, portsPath.Index(i))...)
	}
	if sp.Selector != nil {
		errs = append(errs, metav1validation.ValidateLabels(sp.Selector, specPath.Child("selector"))...)
	}
	switch {
	case sp.SessionAffinity == "":
		errs = append(errs, field.Required(specPath.Child("sessionAffinity"), ""))
	case !contains(supportedSessionAffinity, sp.SessionAffinity):
		errs = append(errs, field.NotSupported(specPath.Child("sessionAffinity"), sp.SessionAffinity, supportedSessionAffinity))
	}
	cfgPath := specPath.Child("sessionAffinityConfig")
	if sp.SessionAffinity == corev1.ServiceAffinityClientIP {
		switch {
		case sp.SessionAffinityConfig == nil:
			errs = append(errs, field.Required(cfgPath, fmt.Sprintf("when session affinity type is %s", corev1.ServiceAffinityClientIP)))
		case sp.SessionAffinityConfig.ClientIP == nil:
			errs = append(errs, field.Required(cfgPath.Child("clientIP"), fmt.Sprintf("when session affinity type is %s", corev1.ServiceAffinityClientIP)))
		case sp.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil:
			errs = append(errs, field.Required(cfgPath.Child("clientIP", "timeoutSeconds"), fmt.Sprintf("when session affinity type is %s", corev1.ServiceAffinityClientIP)))
		default:
			if t := *sp.SessionAffinityConfig.ClientIP.TimeoutSeconds; t <= 0 || t > 86400 {
				errs = append(errs, field.Invalid(cfgPath.Child("clientIP", "timeoutSeconds"), t, "must be greater than 0 and less than 86400"))
			}
		}
	} else if sp.SessionAffinity == corev1.ServiceAffinityNone && sp.SessionAffinityConfig != nil {
		errs = append(errs, field.Forbidden(cfgPath, fmt.Sprintf("must not be set when session affinity is %s", corev1.ServiceAffinityNone)))
	}

	errs = append(errs, clusterIPs(s)...)

	for i, ip := range sp.ExternalIPs {
		errs = append(errs, utilvalidation.IsValidIP(specPath.Child("externalIPs").Index(i), ip)...)
	}
	switch {
	case sp.Type == "":
		errs = append(errs, field.Required(specPath.Child("type"), ""))
	case !contains(supportedServiceTypes, sp.Type):
		errs = append(errs, field.NotSupported(specPath.Child("type"), sp.Type, supportedServiceTypes))
	}
	if sp.Type == corev1.ServiceTypeClusterIP {
		for i, p := range sp.Ports {
			if p.NodePort != 0 {
				errs = append(errs, field.Forbidden(portsPath.Index(i).Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			}
		}
	}
	type protoPort struct {
		proto corev1.Protocol
		port  int32
	}
	nodePorts := map[protoPort]bool{}
	ports := map[protoPort]bool{}
	for i, p := range sp.Ports {
		if p.NodePort != 0 {
			key := protoPort{p.Protocol, p.NodePort}
			if nodePorts[key] {
				errs = append(errs, field.Duplicate(portsPath.Index(i).Child("nodePort"), p.NodePort))
			}
			nodePorts[key] = true
		}
		key := protoPort{p.Protocol, p.Port}
		if ports[key] {
			errs = append(errs, field.Duplicate(portsPath.Index(i), struct {
				Port     int32           `json:"port"`
				Protocol corev1.Protocol `json:"protocol"`
			}{p.Port, p.Protocol}))
		}
		ports[key] = true
	}
	for i, r := range sp.LoadBalancerSourceRanges {
		if _, err := netip.ParsePrefix(strings.TrimSpace(r)); err != nil {
			errs = append(errs, field.Invalid(specPath.Child("loadBalancerSourceRanges").Index(i), r,
				"must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 "))
		}
	}
	if sp.Type != corev1.ServiceTypeLoadBalancer && len(sp.LoadBalancerSourceRanges) > 0 {
		errs = append(errs, field.Forbidden(specPath.Child("loadBalancerSourceRanges"), "may only be used when `type` is 'LoadBalancer'"))
	}
	externallyAccessible := sp.Type == corev1.ServiceTypeLoadBalancer || sp.Type == corev1.ServiceTypeNodePort ||
		(sp.Type == corev1.ServiceTypeClusterIP && len(sp.ExternalIPs) > 0)
	if sp.ExternalTrafficPolicy != "" {
		if !externallyAccessible {
			errs = append(errs, field.Invalid(specPath.Child("externalTrafficPolicy"), sp.ExternalTrafficPolicy,
				"may only be set for externally-accessible services"))
		} else if !contains(supportedExternalTrafficPolicy, sp.ExternalTrafficPolicy) {
			errs = append(errs, field.NotSupported(specPath.Child("externalTrafficPolicy"), sp.ExternalTrafficPolicy, supportedExternalTrafficPolicy))
		}
	} else if externallyAccessible {
		errs = append(errs, field.Required(specPath.Child("externalTrafficPolicy"), ""))
	}
	if p := sp.InternalTrafficPolicy; p != nil && !contains(supportedInternalTrafficPolicy, *p) {
		errs = append(errs, field.NotSupported(specPath.Child("internalTrafficPolicy"), *p, supportedInternalTrafficPolicy))
	}
	if sp.HealthCheckNodePort != 0 && !(sp.Type == corev1.ServiceTypeLoadBalancer && sp.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal) {
		errs = append(errs, field.Invalid(specPath.Child("healthCheckNodePort"), sp.HealthCheckNodePort,
			"may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
	}
	return errs
}

func servicePort(p *corev1.ServicePort, requireName bool, names sets.Set[string], fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if requireName && p.Name == "" {
		errs = append(errs, field.Required(fldPath.Child("name"), ""))
	} else if p.Name != "" {
		errs = append(errs, dns1123Label(p.Name, fldPath.Child("name"))...)
		if names.Has(p.Name) {
			errs = append(errs, field.Duplicate(fldPath.Child("name"), p.Name))
		} else {
			names.Insert(p.Name)
		}
	}
	for _, msg := range utilvalidation.IsValidPortNum(int(p.Port)) {
		errs = append(errs, field.Invalid(fldPath.Child("port"), p.Port, msg))
	}
	switch {
	case p.Protocol == "":
		errs = append(errs, field.Required(fldPath.Child("protocol"), ""))
	case !contains(supportedPortProtocols, p.Protocol):
		errs = append(errs, field.NotSupported(fldPath.Child("protocol"), p.Protocol, supportedPortProtocols))
	}
	errs = append(errs, portNumOrName(p.TargetPort, fldPath.Child("targetPort"))...)
	if p.NodePort != 0 {
		for _, msg := range utilvalidation.IsValidPortNum(int(p.NodePort)) {
			errs = append(errs, field.Invalid(fldPath.Child("nodePort"), p.NodePort, msg))
		}
	}
	if p.AppProtocol != nil {
		errs = append(errs, qualifiedName(*p.AppProtocol, fldPath.Child("appProtocol"))...)
	}
	return errs
}

// clusterIPs checks clusterIP, clusterIPs, ipFamilies and ipFamilyPolicy agree.
func clusterIPs(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	sp := &s.Spec
	specPath := field.NewPath("spec")
	ipsPath := specPath.Child("clusterIPs")
	if sp.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if len(sp.ClusterIPs) > 0 && sp.ClusterIP != sp.ClusterIPs[0] {
		errs = append(errs, field.Invalid(ipsPath, sp.ClusterIPs, "first value must match `clusterIP`"))
	}
	if len(sp.ClusterIPs) > 2 {
		errs = append(errs, field.Invalid(ipsPath, sp.ClusterIPs, "may only hold up to 2 values"))
	}
	var families []corev1.IPFamily
	for i, ip := range sp.ClusterIPs {
		if ip == corev1.ClusterIPNone {
			if i > 0 || len(sp.ClusterIPs) > 1 {
				errs = append(errs, field.Invalid(ipsPath.Index(i), ip, "'None' must be the first and only value"))
			}
			continue
		}
		if e := utilvalidation.IsValidIP(ipsPath.Index(i), ip); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			if a.Is4() {
				families = append(families, corev1.IPv4Protocol)
			} else {
				families = append(families, corev1.IPv6Protocol)
			}
		}
	}
	if len(families) == 2 && families[0] == families[1] {
		errs = append(errs, field.Invalid(ipsPath, sp.ClusterIPs, "may specify no more than one IP for each IP family"))
	}
	if p := sp.IPFamilyPolicy; p != nil && !contains(supportedIPFamilyPolicy, *p) {
		errs = append(errs, field.NotSupported(specPath.Child("ipFamilyPolicy"), *p, supportedIPFamilyPolicy))
	}
	seen := map[corev1.IPFamily]bool{}
	for i, f := range sp.IPFamilies {
		p := specPath.Child("ipFamilies").Index(i)
		if !contains(supportedIPFamilies, f) {
			errs = append(errs, field.NotSupported(p, f, supportedIPFamilies))
		}
		if seen[f] {
			errs = append(errs, field.Duplicate(p, f))
		}
		seen[f] = true
		if i < len(families) && families[i] != f {
			errs = append(errs, field.Invalid(ipsPath.Index(i), sp.ClusterIPs[i], fmt.Sprintf("expected an %v address", f)))
		}
	}
	if sp.IPFamilyPolicy != nil && *sp.IPFamilyPolicy == corev1.IPFamilyPolicySingleStack {
		if len(sp.IPFamilies) > 1 {
			errs = append(errs, field.Invalid(specPath.Child("ipFamilies"), sp.IPFamilies, "must not have more than one value when `ipFamilyPolicy` is 'SingleStack'"))
		}
		if len(sp.ClusterIPs) > 1 {
			errs = append(errs, field.Invalid(ipsPath, sp.ClusterIPs, "must not have more than one value when `ipFamilyPolicy` is 'SingleStack'"))
		}
	}
	return errs
}

// ServiceUpdate is ValidateServiceUpdate: the primary cluster IP and IP family may not change
// once set, except to or from ExternalName.
func ServiceUpdate(s, old *corev1.Service) field.ErrorList {
	errs := metaUpdate(&s.ObjectMeta, &old.ObjectMeta)
	toOrFromExternalName := s.Spec.Type == corev1.ServiceTypeExternalName || old.Spec.Type == corev1.ServiceTypeExternalName
	if !toOrFromExternalName {
		if len(old.Spec.ClusterIPs) > 0 && len(s.Spec.ClusterIPs) > 0 && s.Spec.ClusterIPs[0] != old.Spec.ClusterIPs[0] {
			errs = append(errs, field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), s.Spec.ClusterIPs[0], "may not change once set"))
		} else if old.Spec.ClusterIP != "" && s.Spec.ClusterIP != old.Spec.ClusterIP {
			errs = append(errs, field.Invalid(field.NewPath("spec", "clusterIP"), s.Spec.ClusterIP, "field is immutable"))
		}
		if len(old.Spec.IPFamilies) > 0 && len(s.Spec.IPFamilies) > 0 && s.Spec.IPFamilies[0] != old.Spec.IPFamilies[0] {
			errs = append(errs, field.Invalid(field.NewPath("spec", "ipFamilies").Index(0), s.Spec.IPFamilies[0], "may not change once set"))
		}
	}
	return append(errs, serviceSpec(s)...)
}
