package validation

import (
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// IPAddress validates a new networking.k8s.io/v1 IPAddress, as Kubernetes' ValidateIPAddress:
// its name is an IP address in canonical form, and it names its parent (resource and name).
func IPAddress(ip *networkingv1.IPAddress) field.ErrorList {
	errs := clusterObjectMeta(&ip.ObjectMeta, ipAddressName)
	return append(errs, ipAddressParentRef(ip.Spec.ParentRef, field.NewPath("spec"))...)
}

// IPAddressUpdate validates an update of an IPAddress: its parent may not change.
func IPAddressUpdate(ip, old *networkingv1.IPAddress) field.ErrorList {
	errs := metaUpdate(&ip.ObjectMeta, &old.ObjectMeta)
	return append(errs, apivalidation.ValidateImmutableField(ip.Spec.ParentRef, old.Spec.ParentRef, field.NewPath("spec", "parentRef"))...)
}

func ipAddressName(name string, _ bool) []string {
	var msgs []string
	for _, err := range utilvalidation.IsValidIP(&field.Path{}, name) {
		msgs = append(msgs, err.Detail)
	}
	return msgs
}

func ipAddressParentRef(ref *networkingv1.ParentReference, fldPath *field.Path) field.ErrorList {
	if ref == nil {
		return field.ErrorList{field.Required(fldPath.Child("parentRef"), "")}
	}
	var errs field.ErrorList
	fldPath = fldPath.Child("parentRef")
	if ref.Group != "" { // the core group of Services is "": required, but not enforceable
		for _, msg := range utilvalidation.IsDNS1123Subdomain(ref.Group) {
			errs = append(errs, field.Invalid(fldPath.Child("group"), ref.Group, msg))
		}
	}
	segment := func(name, value string, required bool) {
		if value == "" {
			if required {
				errs = append(errs, field.Required(fldPath.Child(name), ""))
			}
			return
		}
		for _, msg := range path.IsValidPathSegmentName(value) {
			errs = append(errs, field.Invalid(fldPath.Child(name), value, msg))
		}
	}
	segment("resource", ref.Resource, true)
	segment("name", ref.Name, true)
	segment("namespace", ref.Namespace, false)
	return errs
}

// ServiceCIDR validates a new networking.k8s.io/v1 ServiceCIDR, as Kubernetes'
// ValidateServiceCIDR: one or two CIDRs, one per IP family.
func ServiceCIDR(c *networkingv1.ServiceCIDR) field.ErrorList {
	errs := clusterObjectMeta(&c.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, serviceCIDRSpec(&c.Spec, field.NewPath("spec", "cidrs"))...)
}

func serviceCIDRSpec(s *networkingv1.ServiceCIDRSpec, fldPath *field.Path) field.ErrorList {
	switch {
	case len(s.CIDRs) == 0:
		return field.ErrorList{field.Required(fldPath, "at least one CIDR required")}
	case len(s.CIDRs) > 2:
		return field.ErrorList{field.Invalid(fldPath, s, "may only hold up to 2 values")}
	}
	var errs field.ErrorList
	for i, cidr := range s.CIDRs {
		errs = append(errs, utilvalidation.IsValidCIDR(fldPath.Index(i), cidr)...)
	}
	if len(s.CIDRs) == 2 {
		a, errA := netip.ParsePrefix(s.CIDRs[0])
		b, errB := netip.ParsePrefix(s.CIDRs[1])
		if errA == nil && errB == nil && a.Addr().Is4() == b.Addr().Is4() {
			errs = append(errs, field.Invalid(fldPath, s.CIDRs, "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64"))
		}
	}
	return errs
}

// ServiceCIDRUpdate validates an update of a ServiceCIDR: its CIDRs may not change, but a
// second one may be added (to turn it dual-stack).
func ServiceCIDRUpdate(c, old *networkingv1.ServiceCIDR) field.ErrorList {
	errs := metaUpdate(&c.ObjectMeta, &old.ObjectMeta)
	cidrs := field.NewPath("spec", "cidrs")
	switch {
	case len(old.Spec.CIDRs) == len(c.Spec.CIDRs):
		for i, cidr := range old.Spec.CIDRs {
			if cidr != c.Spec.CIDRs[i] {
				errs = append(errs, field.Invalid(cidrs.Index(i), c.Spec.CIDRs[i], apivalidation.FieldImmutableErrorMsg))
			}
		}
	case len(old.Spec.CIDRs) == 1 && len(c.Spec.CIDRs) == 2:
		if c.Spec.CIDRs[0] != old.Spec.CIDRs[0] {
			errs = append(errs, field.Invalid(cidrs.Index(0), c.Spec.CIDRs[0], apivalidation.FieldImmutableErrorMsg))
		}
		errs = append(errs, serviceCIDRSpec(&c.Spec, cidrs)...)
	default:
		errs = append(errs, field.Invalid(cidrs, c.Spec.CIDRs, apivalidation.FieldImmutableErrorMsg))
	}
	return errs
}
