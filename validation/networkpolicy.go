package validation

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

// networkPolicyOptions are k8s.io/kubernetes pkg/apis/networking/validation's
// NetworkPolicyValidationOptions.
type networkPolicyOptions struct {
	allowInvalidLabelValueInSelector bool
	allowCIDRsEvenIfInvalid          []string
}

// NetworkPolicy validates a new NetworkPolicy, as Kubernetes' ValidateNetworkPolicy.
func NetworkPolicy(np *networkingv1.NetworkPolicy) field.ErrorList {
	errs := objectMeta(&np.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, networkPolicySpec(&np.Spec, networkPolicyOptions{}, field.NewPath("spec"))...)
}

// NetworkPolicyUpdate validates an update, as Kubernetes' ValidateNetworkPolicyUpdate: selectors
// with label values that were already invalid, and CIDRs the old policy held, stay accepted.
func NetworkPolicyUpdate(np, old *networkingv1.NetworkPolicy) field.ErrorList {
	var opts networkPolicyOptions
	if len(metav1validation.ValidateLabelSelector(&old.Spec.PodSelector, metav1validation.LabelSelectorValidationOptions{}, nil)) > 0 {
		opts.allowInvalidLabelValueInSelector = true
	}
	for _, in := range old.Spec.Ingress {
		for _, p := range in.From {
			if p.IPBlock != nil {
				opts.allowCIDRsEvenIfInvalid = append(opts.allowCIDRsEvenIfInvalid, p.IPBlock.CIDR)
				opts.allowCIDRsEvenIfInvalid = append(opts.allowCIDRsEvenIfInvalid, p.IPBlock.Except...)
			}
		}
	}
	for _, out := range old.Spec.Egress {
		for _, p := range out.To {
			if p.IPBlock != nil {
				opts.allowCIDRsEvenIfInvalid = append(opts.allowCIDRsEvenIfInvalid, p.IPBlock.CIDR)
				opts.allowCIDRsEvenIfInvalid = append(opts.allowCIDRsEvenIfInvalid, p.IPBlock.Except...)
			}
		}
	}
	errs := metaUpdate(&np.ObjectMeta, &old.ObjectMeta)
	return append(errs, networkPolicySpec(&np.Spec, opts, field.NewPath("spec"))...)
}

func networkPolicySpec(spec *networkingv1.NetworkPolicySpec, opts networkPolicyOptions, fldPath *field.Path) field.ErrorList {
	selOpts := metav1validation.LabelSelectorValidationOptions{AllowInvalidLabelValueInSelector: opts.allowInvalidLabelValueInSelector}
	errs := metav1validation.ValidateLabelSelector(&spec.PodSelector, selOpts, fldPath.Child("podSelector"))
	for i, in := range spec.Ingress {
		path := fldPath.Child("ingress").Index(i)
		for j := range in.Ports {
			errs = append(errs, networkPolicyPort(&in.Ports[j], path.Child("ports").Index(j))...)
		}
		for j := range in.From {
			errs = append(errs, networkPolicyPeer(&in.From[j], opts, path.Child("from").Index(j))...)
		}
	}
	for i, out := range spec.Egress {
		path := fldPath.Child("egress").Index(i)
		for j := range out.Ports {
			errs = append(errs, networkPolicyPort(&out.Ports[j], path.Child("ports").Index(j))...)
		}
		for j := range out.To {
			errs = append(errs, networkPolicyPeer(&out.To[j], opts, path.Child("to").Index(j))...)
		}
	}
	allowed := []string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}
	if len(spec.PolicyTypes) > len(allowed) {
		return append(errs, field.Invalid(fldPath.Child("policyTypes"), &spec.PolicyTypes, "may not specify more than two policyTypes"))
	}
	for i, t := range spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			errs = append(errs, field.NotSupported(fldPath.Child("policyTypes").Index(i), t, allowed))
		}
	}
	return errs
}

func networkPolicyPort(port *networkingv1.NetworkPolicyPort, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Protocol != nil && *port.Protocol != corev1.ProtocolTCP && *port.Protocol != corev1.ProtocolUDP && *port.Protocol != corev1.ProtocolSCTP {
		errs = append(errs, field.NotSupported(path.Child("protocol"), *port.Protocol, []string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)}))
	}
	switch {
	case port.Port == nil:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(path.Child("endPort"), *port.EndPort, "may not be specified when `port` is not specified"))
		}
	case port.Port.Type == intstr.Int:
		for _, msg := range utilvalidation.IsValidPortNum(int(port.Port.IntVal)) {
			errs = append(errs, field.Invalid(path.Child("port"), port.Port.IntVal, msg))
		}
		if port.EndPort != nil {
			if *port.EndPort < port.Port.IntVal {
				errs = append(errs, field.Invalid(path.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
			}
			for _, msg := range utilvalidation.IsValidPortNum(int(*port.EndPort)) {
				errs = append(errs, field.Invalid(path.Child("endPort"), *port.EndPort, msg))
			}
		}
	default:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(path.Child("endPort"), *port.EndPort, "may not be specified when `port` is non-numeric"))
		}
		for _, msg := range utilvalidation.IsValidPortName(port.Port.StrVal) {
			errs = append(errs, field.Invalid(path.Child("port"), port.Port.StrVal, msg))
		}
	}
	return errs
}

func networkPolicyPeer(peer *networkingv1.NetworkPolicyPeer, opts networkPolicyOptions, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	selOpts := metav1validation.LabelSelectorValidationOptions{AllowInvalidLabelValueInSelector: opts.allowInvalidLabelValueInSelector}
	n := 0
	if peer.PodSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.PodSelector, selOpts, path.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.NamespaceSelector, selOpts, path.Child("namespaceSelector"))...)
	}
	if peer.IPBlock != nil {
		n++
		errs = append(errs, ipBlock(peer.IPBlock, opts, path.Child("ipBlock"))...)
	}
	if n == 0 {
		errs = append(errs, field.Required(path, "must specify a peer"))
	} else if n > 1 && peer.IPBlock != nil {
		errs = append(errs, field.Forbidden(path, "may not specify both ipBlock and another peer"))
	}
	return errs
}

// ipBlock is Kubernetes' ValidateIPBlock: CIDRs checked as a legacy field (the strict check of
// StrictIPCIDRValidation, off by default), each except a strict subset of the CIDR.
func ipBlock(b *networkingv1.IPBlock, opts networkPolicyOptions, path *field.Path) field.ErrorList {
	if b.CIDR == "" {
		return field.ErrorList{field.Required(path.Child("cidr"), "")}
	}
	errs := utilvalidation.IsValidCIDRForLegacyField(path.Child("cidr"), b.CIDR, false, opts.allowCIDRsEvenIfInvalid)
	_, cidr, err := netutils.ParseCIDRSloppy(b.CIDR)
	if err != nil {
		return errs
	}
	for i, e := range b.Except {
		ep := path.Child("except").Index(i)
		errs = append(errs, utilvalidation.IsValidCIDRForLegacyField(ep, e, false, opts.allowCIDRsEvenIfInvalid)...)
		_, except, err := netutils.ParseCIDRSloppy(e)
		if err != nil {
			continue
		}
		cidrLen, _ := cidr.Mask.Size()
		exceptLen, _ := except.Mask.Size()
		if !cidr.Contains(except.IP) || cidrLen >= exceptLen {
			errs = append(errs, field.Invalid(ep, e, "must be a strict subset of `cidr`"))
		}
	}
	return errs
}
