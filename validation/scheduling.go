package validation

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Kubernetes' limits on a pod's DNS configuration.
const (
	maxDNSNameservers     = 3
	maxDNSSearchPaths     = 32
	maxDNSSearchListChars = 2048
)

// schedulingFields validates affinity, topology spread constraints, DNS config, host aliases,
// priority and runtime class names of a pod spec.
func schedulingFields(s *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if a := s.Affinity; a != nil {
		ap := fldPath.Child("affinity")
		if na := a.NodeAffinity; na != nil {
			np := ap.Child("nodeAffinity")
			if req := na.RequiredDuringSchedulingIgnoredDuringExecution; req != nil {
				rp := np.Child("requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
				if len(req.NodeSelectorTerms) == 0 {
					errs = append(errs, field.Required(rp, "must have at least one node selector term"))
				}
				for i, term := range req.NodeSelectorTerms {
					errs = append(errs, nodeSelectorTerm(term, true, rp.Index(i))...)
				}
			}
			for i, pref := range na.PreferredDuringSchedulingIgnoredDuringExecution {
				pp := np.Child("preferredDuringSchedulingIgnoredDuringExecution").Index(i)
				errs = append(errs, weight(pref.Weight, pp.Child("weight"))...)
				errs = append(errs, nodeSelectorTerm(pref.Preference, false, pp.Child("preference"))...)
			}
		}
		if pa := a.PodAffinity; pa != nil {
			errs = append(errs, podAffinityTerms(pa.RequiredDuringSchedulingIgnoredDuringExecution, pa.PreferredDuringSchedulingIgnoredDuringExecution, ap.Child("podAffinity"))...)
		}
		if pa := a.PodAntiAffinity; pa != nil {
			errs = append(errs, podAffinityTerms(pa.RequiredDuringSchedulingIgnoredDuringExecution, pa.PreferredDuringSchedulingIgnoredDuringExecution, ap.Child("podAntiAffinity"))...)
		}
	}
	errs = append(errs, topologySpread(s.TopologySpreadConstraints, fldPath.Child("topologySpreadConstraints"))...)
	errs = append(errs, dnsConfig(s.DNSConfig, s.DNSPolicy, fldPath.Child("dnsConfig"))...)
	for i, ha := range s.HostAliases {
		p := fldPath.Child("hostAliases").Index(i)
		errs = append(errs, utilvalidation.IsValidIP(p.Child("ip"), ha.IP)...)
		for j, h := range ha.Hostnames {
			errs = append(errs, dns1123Subdomain(h, p.Child("hostnames").Index(j))...)
		}
	}
	if s.PriorityClassName != "" {
		errs = append(errs, dns1123Subdomain(s.PriorityClassName, fldPath.Child("priorityClassName"))...)
	}
	if s.RuntimeClassName != nil {
		errs = append(errs, dns1123Subdomain(*s.RuntimeClassName, fldPath.Child("runtimeClassName"))...)
	}
	return errs
}

func weight(w int32, fldPath *field.Path) field.ErrorList {
	if w <= 0 || w > 100 {
		return field.ErrorList{field.Invalid(fldPath, w, "must be in the range 1-100")}
	}
	return nil
}

func nodeSelectorTerm(term corev1.NodeSelectorTerm, strictValues bool, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for j, req := range term.MatchExpressions {
		p := fldPath.Child("matchExpressions").Index(j)
		errs = append(errs, nodeSelectorOperator(req.Operator, len(req.Values), p)...)
		errs = append(errs, metav1validation.ValidateLabelName(req.Key, p.Child("key"))...)
		if strictValues {
			for k, v := range req.Values {
				for _, msg := range utilvalidation.IsValidLabelValue(v) {
					errs = append(errs, field.Invalid(p.Child("values").Index(k), v, msg))
				}
			}
		}
	}
	for j, req := range term.MatchFields {
		p := fldPath.Child("matchFields").Index(j)
		if req.Key != "metadata.name" {
			errs = append(errs, field.NotSupported(p.Child("key"), req.Key, []string{"metadata.name"}))
		}
		switch req.Operator {
		case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
			if len(req.Values) != 1 {
				errs = append(errs, field.Required(p.Child("values"), "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"))
			}
		default:
			errs = append(errs, field.Invalid(p.Child("operator"), req.Operator, "not a valid selector operator"))
		}
	}
	return errs
}

func nodeSelectorOperator(op corev1.NodeSelectorOperator, values int, fldPath *field.Path) field.ErrorList {
	switch op {
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
		if values == 0 {
			return field.ErrorList{field.Required(fldPath.Child("values"), "must be specified when `operator` is 'In' or 'NotIn'")}
		}
	case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
		if values > 0 {
			return field.ErrorList{field.Forbidden(fldPath.Child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")}
		}
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if values != 1 {
			return field.ErrorList{field.Required(fldPath.Child("values"), "must be specified single value when `operator` is 'Lt' or 'Gt'")}
		}
	default:
		return field.ErrorList{field.Invalid(fldPath.Child("operator"), op, "not a valid selector operator")}
	}
	return nil
}

func podAffinityTerms(required []corev1.PodAffinityTerm, preferred []corev1.WeightedPodAffinityTerm, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, term := range required {
		errs = append(errs, podAffinityTerm(term, fldPath.Child("requiredDuringSchedulingIgnoredDuringExecution").Index(i))...)
	}
	for i, w := range preferred {
		p := fldPath.Child("preferredDuringSchedulingIgnoredDuringExecution").Index(i)
		errs = append(errs, weight(w.Weight, p.Child("weight"))...)
		errs = append(errs, podAffinityTerm(w.PodAffinityTerm, p.Child("podAffinityTerm"))...)
	}
	return errs
}

func podAffinityTerm(term corev1.PodAffinityTerm, fldPath *field.Path) field.ErrorList {
	errs := metav1validation.ValidateLabelSelector(term.LabelSelector, strictSelector, fldPath.Child("labelSelector"))
	errs = append(errs, metav1validation.ValidateLabelSelector(term.NamespaceSelector, strictSelector, fldPath.Child("namespaceSelector"))...)
	for _, ns := range term.Namespaces {
		for _, msg := range apivalidation.ValidateNamespaceName(ns, false) {
			errs = append(errs, field.Invalid(fldPath.Child("namespace"), ns, msg))
		}
	}
	if term.TopologyKey == "" {
		errs = append(errs, field.Required(fldPath.Child("topologyKey"), "can not be empty"))
	}
	return append(errs, metav1validation.ValidateLabelName(term.TopologyKey, fldPath.Child("topologyKey"))...)
}

func topologySpread(constraints []corev1.TopologySpreadConstraint, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	whens := []corev1.UnsatisfiableConstraintAction{corev1.DoNotSchedule, corev1.ScheduleAnyway}
	policies := []corev1.NodeInclusionPolicy{corev1.NodeInclusionPolicyHonor, corev1.NodeInclusionPolicyIgnore}
	for i, c := range constraints {
		p := fldPath.Index(i)
		if c.MaxSkew <= 0 {
			errs = append(errs, field.Invalid(p.Child("maxSkew"), c.MaxSkew, "must be greater than zero"))
		}
		if c.TopologyKey == "" {
			errs = append(errs, field.Required(p.Child("topologyKey"), "can not be empty"))
		} else {
			errs = append(errs, metav1validation.ValidateLabelName(c.TopologyKey, p.Child("topologyKey"))...)
		}
		if !contains(whens, c.WhenUnsatisfiable) {
			errs = append(errs, field.NotSupported(p.Child("whenUnsatisfiable"), c.WhenUnsatisfiable, whens))
		}
		key := fmt.Sprintf("{%v, %v}", c.TopologyKey, c.WhenUnsatisfiable)
		if seen[key] {
			errs = append(errs, field.Duplicate(p, key))
		}
		seen[key] = true
		if c.MinDomains != nil {
			if *c.MinDomains <= 0 {
				errs = append(errs, field.Invalid(p.Child("minDomains"), *c.MinDomains, "must be greater than 0"))
			} else if c.WhenUnsatisfiable != corev1.DoNotSchedule {
				errs = append(errs, field.Invalid(p.Child("minDomains"), *c.MinDomains,
					fmt.Sprintf("can only use minDomains if whenUnsatisfiable=%s, not %s", corev1.DoNotSchedule, c.WhenUnsatisfiable)))
			}
		}
		if c.NodeAffinityPolicy != nil && !contains(policies, *c.NodeAffinityPolicy) {
			errs = append(errs, field.NotSupported(p.Child("nodeAffinityPolicy"), *c.NodeAffinityPolicy, policies))
		}
		if c.NodeTaintsPolicy != nil && !contains(policies, *c.NodeTaintsPolicy) {
			errs = append(errs, field.NotSupported(p.Child("nodeTaintsPolicy"), *c.NodeTaintsPolicy, policies))
		}
		errs = append(errs, metav1validation.ValidateLabelSelector(c.LabelSelector, strictSelector, p.Child("labelSelector"))...)
	}
	return errs
}

func dnsConfig(c *corev1.PodDNSConfig, policy corev1.DNSPolicy, fldPath *field.Path) field.ErrorList {
	if policy == corev1.DNSNone {
		if c == nil {
			return field.ErrorList{field.Required(fldPath, fmt.Sprintf("must provide `dnsConfig` when `dnsPolicy` is %s", corev1.DNSNone))}
		}
		if len(c.Nameservers) == 0 {
			return field.ErrorList{field.Required(fldPath.Child("nameservers"), fmt.Sprintf("must provide at least one DNS nameserver when `dnsPolicy` is %s", corev1.DNSNone))}
		}
	}
	if c == nil {
		return nil
	}
	var errs field.ErrorList
	if len(c.Nameservers) > maxDNSNameservers {
		errs = append(errs, field.Invalid(fldPath.Child("nameservers"), c.Nameservers, fmt.Sprintf("must not have more than %v nameservers", maxDNSNameservers)))
	}
	for i, ns := range c.Nameservers {
		errs = append(errs, utilvalidation.IsValidIP(fldPath.Child("nameservers").Index(i), ns)...)
	}
	if len(c.Searches) > maxDNSSearchPaths {
		errs = append(errs, field.Invalid(fldPath.Child("searches"), c.Searches, fmt.Sprintf("must not have more than %v search paths", maxDNSSearchPaths)))
	}
	if len(strings.Join(c.Searches, " ")) > maxDNSSearchListChars {
		errs = append(errs, field.Invalid(fldPath.Child("searches"), c.Searches,
			fmt.Sprintf("must not have more than %v characters (including spaces) in the search list", maxDNSSearchListChars)))
	}
	for i, s := range c.Searches {
		if s == "." {
			continue
		}
		errs = append(errs, dns1123Subdomain(strings.TrimSuffix(s, "."), fldPath.Child("searches").Index(i))...)
	}
	for i, o := range c.Options {
		if o.Name == "" {
			errs = append(errs, field.Required(fldPath.Child("options").Index(i), "must not be empty"))
		}
	}
	return errs
}
