package validation

import (
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

// What Kubernetes' networking validation names (k8s.io/kubernetes pkg/apis/networking/validation).
const (
	annotationIngressClass       = "kubernetes.io/ingress.class"
	maxLenIngressClassController = 250
)

var (
	ingressPathTypes = []networkingv1.PathType{networkingv1.PathTypeExact, networkingv1.PathTypeImplementationSpecific, networkingv1.PathTypePrefix}
	// invalidPathSequences and invalidPathSuffixes are refused in Exact and Prefix paths.
	invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	invalidPathSuffixes  = []string{"/..", "/."}
	parametersScopes     = sets.New(networkingv1.IngressClassParametersReferenceScopeCluster, networkingv1.IngressClassParametersReferenceScopeNamespace)
)

// ingressOptions are Kubernetes' IngressValidationOptions: what an update keeps accepting
// because the stored object already had it.
type ingressOptions struct {
	allowInvalidSecretName       bool
	allowInvalidWildcardHostRule bool
	allowRelaxedServiceName      bool
}

// Ingress validates a new Ingress, as Kubernetes' ValidateIngressCreate: metadata, rules
// (hosts, absolute paths of a known type, backends), TLS hosts and Secret names, the class
// name, and the deprecated class annotation agreeing with ingressClassName.
func Ingress(ing *networkingv1.Ingress) field.ErrorList {
	errs := ingress(ing, ingressOptions{})
	if v, ok := ing.Annotations[annotationIngressClass]; ok && ing.Spec.IngressClassName != nil && v != *ing.Spec.IngressClassName {
		errs = append(errs, field.Invalid(field.NewPath("annotations").Child(annotationIngressClass), v, "must match `ingressClassName` when both are specified"))
	}
	return errs
}

// IngressUpdate validates an update of an Ingress, as Kubernetes' ValidateIngressUpdate.
func IngressUpdate(ing, old *networkingv1.Ingress) field.ErrorList {
	errs := metaUpdate(&ing.ObjectMeta, &old.ObjectMeta)
	return append(errs, ingress(ing, ingressOptions{
		allowInvalidSecretName:       allowInvalidSecretName(old),
		allowInvalidWildcardHostRule: allowInvalidWildcardHostRule(old),
		allowRelaxedServiceName:      allowRelaxedServiceName(old),
	})...)
}

// IngressStatusUpdate validates an update of an Ingress's status, as Kubernetes'
// ValidateIngressStatusUpdate: the load balancer's addresses and host names.
func IngressStatusUpdate(ing, old *networkingv1.Ingress) field.ErrorList {
	errs := metaUpdate(&ing.ObjectMeta, &old.ObjectMeta)
	var oldIPs []string
	for _, in := range old.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			oldIPs = append(oldIPs, in.IP)
		}
	}
	fldPath := field.NewPath("status", "loadBalancer")
	for i, in := range ing.Status.LoadBalancer.Ingress {
		idx := fldPath.Child("ingress").Index(i)
		if in.IP != "" {
			errs = append(errs, utilvalidation.IsValidIPForLegacyField(idx.Child("ip"), in.IP, false, oldIPs)...)
		}
		if in.Hostname != "" {
			for _, msg := range utilvalidation.IsDNS1123Subdomain(in.Hostname) {
				errs = append(errs, field.Invalid(idx.Child("hostname"), in.Hostname, msg))
			}
			if netutils.ParseIPSloppy(in.Hostname) != nil {
				errs = append(errs, field.Invalid(idx.Child("hostname"), in.Hostname, "must be a DNS name, not an IP address"))
			}
		}
	}
	return errs
}

func ingress(ing *networkingv1.Ingress, opts ingressOptions) field.ErrorList {
	errs := objectMeta(&ing.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, ingressSpec(&ing.Spec, field.NewPath("spec"), opts)...)
}

func ingressSpec(spec *networkingv1.IngressSpec, fldPath *field.Path, opts ingressOptions) field.ErrorList {
	var errs field.ErrorList
	if len(spec.Rules) == 0 && spec.DefaultBackend == nil {
		errs = append(errs, field.Invalid(fldPath, spec.Rules, "either `defaultBackend` or `rules` must be specified"))
	}
	if spec.DefaultBackend != nil {
		errs = append(errs, ingressBackend(spec.DefaultBackend, fldPath.Child("defaultBackend"), opts)...)
	}
	for i, rule := range spec.Rules {
		errs = append(errs, ingressRule(&rule, fldPath.Child("rules").Index(i), opts)...)
	}
	for i, tls := range spec.TLS {
		tlsPath := fldPath.Child("tls").Index(i)
		for j, host := range tls.Hosts {
			check := utilvalidation.IsDNS1123Subdomain
			if strings.Contains(host, "*") {
				check = utilvalidation.IsWildcardDNS1123Subdomain
			}
			for _, msg := range check(host) {
				errs = append(errs, field.Invalid(tlsPath.Child("hosts").Index(j), host, msg))
			}
		}
		if !opts.allowInvalidSecretName && tls.SecretName != "" {
			for _, msg := range apivalidation.NameIsDNSSubdomain(tls.SecretName, false) {
				errs = append(errs, field.Invalid(tlsPath.Child("secretName"), tls.SecretName, msg))
			}
		}
	}
	if spec.IngressClassName != nil {
		for _, msg := range apivalidation.NameIsDNSSubdomain(*spec.IngressClassName, false) {
			errs = append(errs, field.Invalid(fldPath.Child("ingressClassName"), *spec.IngressClassName, msg))
		}
	}
	return errs
}

func ingressRule(rule *networkingv1.IngressRule, fldPath *field.Path, opts ingressOptions) field.ErrorList {
	var errs field.ErrorList
	wildcard := false
	if rule.Host != "" {
		hostPath := fldPath.Child("host")
		if netutils.ParseIPSloppy(rule.Host) != nil {
			errs = append(errs, field.Invalid(hostPath, rule.Host, "must be a DNS name, not an IP address"))
		}
		check := utilvalidation.IsDNS1123Subdomain
		if strings.Contains(rule.Host, "*") {
			check, wildcard = utilvalidation.IsWildcardDNS1123Subdomain, true
		}
		for _, msg := range check(rule.Host) {
			errs = append(errs, field.Invalid(hostPath, rule.Host, msg))
		}
	}
	if !wildcard || !opts.allowInvalidWildcardHostRule {
		errs = append(errs, ingressRuleValue(&rule.IngressRuleValue, fldPath, opts)...)
	}
	return errs
}

func ingressRuleValue(v *networkingv1.IngressRuleValue, fldPath *field.Path, opts ingressOptions) field.ErrorList {
	if v.HTTP == nil {
		return nil
	}
	var errs field.ErrorList
	httpPath := fldPath.Child("http")
	if len(v.HTTP.Paths) == 0 {
		errs = append(errs, field.Required(httpPath.Child("paths"), ""))
	}
	for i := range v.HTTP.Paths {
		errs = append(errs, ingressPath(&v.HTTP.Paths[i], httpPath.Child("paths").Index(i), opts)...)
	}
	return errs
}

func ingressPath(p *networkingv1.HTTPIngressPath, fldPath *field.Path, opts ingressOptions) field.ErrorList {
	if p.PathType == nil {
		return field.ErrorList{field.Required(fldPath.Child("pathType"), "pathType must be specified")}
	}
	var errs field.ErrorList
	pathPath := fldPath.Child("path")
	switch *p.PathType {
	case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
		if !strings.HasPrefix(p.Path, "/") {
			errs = append(errs, field.Invalid(pathPath, p.Path, "must be an absolute path"))
		}
		if p.Path != "" {
			for _, seq := range invalidPathSequences {
				if strings.Contains(p.Path, seq) {
					errs = append(errs, field.Invalid(pathPath, p.Path, fmt.Sprintf("must not contain '%s'", seq)))
				}
			}
			for _, suffix := range invalidPathSuffixes {
				if strings.HasSuffix(p.Path, suffix) {
					errs = append(errs, field.Invalid(pathPath, p.Path, fmt.Sprintf("cannot end with '%s'", suffix)))
				}
			}
		}
	case networkingv1.PathTypeImplementationSpecific:
		if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
			errs = append(errs, field.Invalid(pathPath, p.Path, "must be an absolute path"))
		}
	default:
		errs = append(errs, field.NotSupported(fldPath.Child("pathType"), *p.PathType, ingressPathTypes))
	}
	return append(errs, ingressBackend(&p.Backend, fldPath.Child("backend"), opts)...)
}

func ingressBackend(b *networkingv1.IngressBackend, fldPath *field.Path, opts ingressOptions) field.ErrorList {
	var errs field.ErrorList
	switch {
	case b.Resource != nil && b.Service != nil:
		return field.ErrorList{field.Invalid(fldPath, "", "cannot set both resource and service backends")}
	case b.Resource != nil:
		r, rPath := b.Resource, fldPath.Child("resource")
		if r.APIGroup != nil {
			for _, msg := range utilvalidation.IsDNS1123Subdomain(*r.APIGroup) {
				errs = append(errs, field.Invalid(rPath.Child("apiGroup"), *r.APIGroup, msg))
			}
		}
		errs = append(errs, pathSegmentName(r.Kind, rPath.Child("kind"))...)
		errs = append(errs, pathSegmentName(r.Name, rPath.Child("name"))...)
	case b.Service != nil:
		s := b.Service
		if s.Name == "" {
			errs = append(errs, field.Required(fldPath.Child("service", "name"), ""))
		} else {
			check := apivalidation.NameIsDNS1035Label // Kubernetes' ValidateServiceName
			if opts.allowRelaxedServiceName {
				check = apivalidation.NameIsDNSLabel
			}
			for _, msg := range check(s.Name, false) {
				errs = append(errs, field.Invalid(fldPath.Child("service", "name"), s.Name, msg))
			}
		}
		hasName, hasNumber := s.Port.Name != "", s.Port.Number != 0
		switch {
		case hasName && hasNumber:
			errs = append(errs, field.Invalid(fldPath, "", "cannot set both port name & port number"))
		case hasName:
			for _, msg := range utilvalidation.IsValidPortName(s.Port.Name) {
				errs = append(errs, field.Invalid(fldPath.Child("service", "port", "name"), s.Port.Name, msg))
			}
		case hasNumber:
			for _, msg := range utilvalidation.IsValidPortNum(int(s.Port.Number)) {
				errs = append(errs, field.Invalid(fldPath.Child("service", "port", "number"), s.Port.Number, msg))
			}
		default:
			errs = append(errs, field.Required(fldPath, "port name or number is required"))
		}
	default:
		errs = append(errs, field.Invalid(fldPath, "", "resource or service backend is required"))
	}
	return errs
}

// pathSegmentName checks a required name that goes into a URL path segment.
func pathSegmentName(v string, fldPath *field.Path) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	var errs field.ErrorList
	for _, msg := range content.IsPathSegmentName(v) {
		errs = append(errs, field.Invalid(fldPath, v, msg))
	}
	return errs
}

func allowInvalidSecretName(old *networkingv1.Ingress) bool {
	for _, tls := range old.Spec.TLS {
		if tls.SecretName != "" && len(apivalidation.NameIsDNSSubdomain(tls.SecretName, false)) > 0 {
			return true
		}
	}
	return false
}

func allowInvalidWildcardHostRule(old *networkingv1.Ingress) bool {
	for _, rule := range old.Spec.Rules {
		if strings.Contains(rule.Host, "*") && len(ingressRuleValue(&rule.IngressRuleValue, nil, ingressOptions{})) > 0 {
			return true
		}
	}
	return false
}

// allowRelaxedServiceName is true when the stored Ingress already names a backend Service
// that is a DNS label but not a DNS-1035 label (Kubernetes' RelaxedServiceNameValidation
// transition, its feature gate off).
func allowRelaxedServiceName(old *networkingv1.Ingress) bool {
	relaxed := func(b *networkingv1.IngressBackend) bool {
		if b == nil || b.Service == nil {
			return false
		}
		return len(apivalidation.NameIsDNSLabel(b.Service.Name, false)) == 0 && len(apivalidation.NameIsDNS1035Label(b.Service.Name, false)) > 0
	}
	if relaxed(old.Spec.DefaultBackend) {
		return true
	}
	for _, rule := range old.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		for i := range rule.HTTP.Paths {
			if relaxed(&rule.HTTP.Paths[i].Backend) {
				return true
			}
		}
	}
	return false
}

// IngressClass validates a new IngressClass, as Kubernetes' ValidateIngressClass: a
// domain-prefixed controller of at most 250 bytes, and the parameters reference.
func IngressClass(c *networkingv1.IngressClass) field.ErrorList {
	errs := clusterObjectMeta(&c.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	specPath := field.NewPath("spec")
	ctrlPath := specPath.Child("controller")
	if c.Spec.Controller == "" {
		errs = append(errs, field.Required(ctrlPath, ""))
	} else {
		if len(c.Spec.Controller) > maxLenIngressClassController {
			errs = append(errs, field.TooLong(ctrlPath, "", maxLenIngressClassController))
		}
		errs = append(errs, utilvalidation.IsDomainPrefixedPath(ctrlPath, c.Spec.Controller)...)
	}
	return append(errs, ingressClassParameters(c.Spec.Parameters, specPath.Child("parameters"))...)
}

// IngressClassUpdate validates an update of an IngressClass: its controller is immutable.
func IngressClassUpdate(c, old *networkingv1.IngressClass) field.ErrorList {
	errs := metaUpdate(&c.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, apivalidation.ValidateImmutableField(c.Spec.Controller, old.Spec.Controller, field.NewPath("spec", "controller"))...)
	return append(errs, IngressClass(c)...)
}

func ingressClassParameters(p *networkingv1.IngressClassParametersReference, fldPath *field.Path) field.ErrorList {
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	if p.APIGroup != nil {
		for _, msg := range utilvalidation.IsDNS1123Subdomain(*p.APIGroup) {
			errs = append(errs, field.Invalid(fldPath.Child("apiGroup"), *p.APIGroup, msg))
		}
	}
	errs = append(errs, pathSegmentName(p.Kind, fldPath.Child("kind"))...)
	errs = append(errs, pathSegmentName(p.Name, fldPath.Child("name"))...)
	if p.Scope == nil {
		return append(errs, field.Required(fldPath.Child("scope"), ""))
	}
	switch scope := *p.Scope; {
	case !parametersScopes.Has(scope):
		errs = append(errs, field.NotSupported(fldPath.Child("scope"), scope, sets.List(parametersScopes)))
	case scope == networkingv1.IngressClassParametersReferenceScopeNamespace:
		if p.Namespace == nil {
			errs = append(errs, field.Required(fldPath.Child("namespace"), "`parameters.scope` is set to 'Namespace'"))
		} else {
			for _, msg := range apivalidation.ValidateNamespaceName(*p.Namespace, false) {
				errs = append(errs, field.Invalid(fldPath.Child("namespace"), *p.Namespace, msg))
			}
		}
	case p.Namespace != nil:
		errs = append(errs, field.Forbidden(fldPath.Child("namespace"), "`parameters.scope` is set to 'Cluster'"))
	}
	return errs
}
