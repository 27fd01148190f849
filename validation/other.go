package validation

import (
	"fmt"
	"net/netip"

	coordinationv1 "k8s.io/api/coordination/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Lease validates a new Lease: metadata and spec, as Kubernetes does on create.
func Lease(l *coordinationv1.Lease) field.ErrorList {
	errs := objectMeta(&l.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, leaseSpec(&l.Spec, field.NewPath("spec"))...)
}

func leaseSpec(s *coordinationv1.LeaseSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.LeaseDurationSeconds != nil && *s.LeaseDurationSeconds <= 0 {
		errs = append(errs, field.Invalid(fldPath.Child("leaseDurationSeconds"), *s.LeaseDurationSeconds, "must be greater than 0"))
	}
	if s.LeaseTransitions != nil && *s.LeaseTransitions < 0 {
		errs = append(errs, field.Invalid(fldPath.Child("leaseTransitions"), *s.LeaseTransitions, "must be greater than or equal to 0"))
	}
	return errs
}

const (
	maxEndpointSliceAddresses = 100
	maxEndpointSlicePorts     = 20000
	maxEndpointSliceEndpoints = 1000
)

var supportedAddressTypes = []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN}

// EndpointSlice validates a new EndpointSlice: metadata and spec, as Kubernetes does on create.
func EndpointSlice(e *discoveryv1.EndpointSlice) field.ErrorList {
	errs := objectMeta(&e.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, endpointSliceBody(e)...)
}

func endpointSliceBody(e *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	atPath := field.NewPath("addressType")
	switch {
	case e.AddressType == "":
		errs = append(errs, field.Required(atPath, ""))
	case !contains(supportedAddressTypes, e.AddressType):
		errs = append(errs, field.NotSupported(atPath, e.AddressType, supportedAddressTypes))
	}
	epPath := field.NewPath("endpoints")
	if len(e.Endpoints) > maxEndpointSliceEndpoints {
		errs = append(errs, field.TooMany(epPath, len(e.Endpoints), maxEndpointSliceEndpoints))
	}
	for i, ep := range e.Endpoints {
		idx := epPath.Index(i)
		ap := idx.Child("addresses")
		switch {
		case len(ep.Addresses) == 0:
			errs = append(errs, field.Required(ap, "must contain at least 1 address"))
		case len(ep.Addresses) > maxEndpointSliceAddresses:
			errs = append(errs, field.TooMany(ap, len(ep.Addresses), maxEndpointSliceAddresses))
		}
		for j, a := range ep.Addresses {
			p := ap.Index(j)
			switch e.AddressType {
			case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
				if errs2 := utilvalidation.IsValidIP(p, a); len(errs2) > 0 {
					errs = append(errs, errs2...)
				} else if addr, err := netip.ParseAddr(a); err == nil && (e.AddressType == discoveryv1.AddressTypeIPv4) != addr.Is4() {
					errs = append(errs, field.Invalid(p, a, fmt.Sprintf("must be an %s address", e.AddressType)))
				}
			case discoveryv1.AddressTypeFQDN:
				errs = append(errs, dns1123Subdomain(a, p)...)
			}
		}
		if ep.Hostname != nil {
			errs = append(errs, dns1123Label(*ep.Hostname, idx.Child("hostname"))...)
		}
		if ep.NodeName != nil {
			for _, msg := range apivalidation.NameIsDNSSubdomain(*ep.NodeName, false) {
				errs = append(errs, field.Invalid(idx.Child("nodeName"), *ep.NodeName, msg))
			}
		}
		errs = append(errs, metav1validation.ValidateLabels(ep.DeprecatedTopology, idx.Child("deprecatedTopology"))...)
	}
	pPath := field.NewPath("ports")
	if len(e.Ports) > maxEndpointSlicePorts {
		errs = append(errs, field.TooMany(pPath, len(e.Ports), maxEndpointSlicePorts))
	}
	names := map[string]bool{}
	for i, p := range e.Ports {
		idx := pPath.Index(i)
		if p.Name != nil && *p.Name != "" {
			errs = append(errs, dns1123Label(*p.Name, idx.Child("name"))...)
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if names[name] {
			errs = append(errs, field.Duplicate(idx.Child("name"), name))
		}
		names[name] = true
		if p.Protocol == nil {
			errs = append(errs, field.Required(idx.Child("protocol"), ""))
		} else if !contains(supportedPortProtocols, *p.Protocol) {
			errs = append(errs, field.NotSupported(idx.Child("protocol"), *p.Protocol, supportedPortProtocols))
		}
		if p.Port != nil {
			for _, msg := range utilvalidation.IsInRange(int(*p.Port), 0, 65535) {
				errs = append(errs, field.Invalid(idx.Child("port"), *p.Port, msg))
			}
		}
		if p.AppProtocol != nil {
			errs = append(errs, qualifiedName(*p.AppProtocol, idx.Child("appProtocol"))...)
		}
	}
	return errs
}

// EndpointSliceUpdate validates an update of a EndpointSlice (old to new): metadata, immutable fields, spec.
func EndpointSliceUpdate(e, old *discoveryv1.EndpointSlice) field.ErrorList {
	errs := metaUpdate(&e.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, endpointSliceBody(e)...)
	return append(errs, apivalidation.ValidateImmutableField(e.AddressType, old.AddressType, field.NewPath("addressType"))...)
}
