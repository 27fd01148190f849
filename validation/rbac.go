package validation

import (
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The RBAC validation is Kubernetes' pkg/apis/rbac/validation, on the v1 types, plus one check
// of logplane's own: a verb must be one that something asks about (KnownVerbs).

// KnownVerbs are the verbs a rule may name: the API's request verbs, the verbs of non-resource
// URLs (lower-case methods), and the verbs Kubernetes authorizes beside requests (bind and
// escalate on roles, impersonate, use, approve and sign on certificate requests, attest). A rule
// naming any other verb grants nothing, so logplane rejects it (422) where Kubernetes accepts
// it: "lsit" is a typo, not a permission.
var KnownVerbs = []string{
	rbacv1.VerbAll, "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
	"proxy", "post", "put", "head", "options",
	"bind", "escalate", "impersonate", "use", "approve", "sign", "attest",
}

func rbacName(name string, _ bool) []string { return path.IsValidPathSegmentName(name) }

// Role validates a new Role.
func Role(r *rbacv1.Role) field.ErrorList {
	errs := apivalidation.ValidateObjectMeta(&r.ObjectMeta, true, rbacName, metaPath)
	for i, rule := range r.Rules {
		errs = append(errs, policyRule(rule, true, field.NewPath("rules").Index(i))...)
	}
	return errs
}

// RoleUpdate validates an update of a Role.
func RoleUpdate(r, old *rbacv1.Role) field.ErrorList {
	return append(Role(r), metaUpdate(&r.ObjectMeta, &old.ObjectMeta)...)
}

// ClusterRole validates a new ClusterRole, its aggregation rule included.
func ClusterRole(r *rbacv1.ClusterRole) field.ErrorList {
	errs := apivalidation.ValidateObjectMeta(&r.ObjectMeta, false, rbacName, metaPath)
	for i, rule := range r.Rules {
		errs = append(errs, policyRule(rule, false, field.NewPath("rules").Index(i))...)
	}
	if r.AggregationRule != nil {
		selPath := field.NewPath("aggregationRule", "clusterRoleSelectors")
		if len(r.AggregationRule.ClusterRoleSelectors) == 0 {
			errs = append(errs, field.Required(selPath, "at least one clusterRoleSelector required if aggregationRule is non-nil"))
		}
		for i, sel := range r.AggregationRule.ClusterRoleSelectors {
			p := selPath.Index(i)
			errs = append(errs, metav1validation.ValidateLabelSelector(&sel, metav1validation.LabelSelectorValidationOptions{}, p)...)
			if _, err := metav1.LabelSelectorAsSelector(&sel); err != nil {
				errs = append(errs, field.Invalid(p, sel, "invalid label selector."))
			}
		}
	}
	return errs
}

// ClusterRoleUpdate validates an update of a ClusterRole.
func ClusterRoleUpdate(r, old *rbacv1.ClusterRole) field.ErrorList {
	return append(ClusterRole(r), metaUpdate(&r.ObjectMeta, &old.ObjectMeta)...)
}

// policyRule is Kubernetes' ValidatePolicyRule, and the verbs known (KnownVerbs).
func policyRule(rule rbacv1.PolicyRule, namespaced bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(rule.Verbs) == 0 {
		errs = append(errs, field.Required(p.Child("verbs"), "verbs must contain at least one value"))
	}
	for i, v := range rule.Verbs {
		if !slices.Contains(KnownVerbs, v) {
			errs = append(errs, field.NotSupported(p.Child("verbs").Index(i), v, KnownVerbs))
		}
	}
	if len(rule.NonResourceURLs) > 0 {
		if namespaced {
			errs = append(errs, field.Invalid(p.Child("nonResourceURLs"), rule.NonResourceURLs, "namespaced rules cannot apply to non-resource URLs"))
		}
		if len(rule.APIGroups) > 0 || len(rule.Resources) > 0 || len(rule.ResourceNames) > 0 {
			errs = append(errs, field.Invalid(p.Child("nonResourceURLs"), rule.NonResourceURLs, "rules cannot apply to both regular resources and non-resource URLs"))
		}
		return errs
	}
	if len(rule.APIGroups) == 0 {
		errs = append(errs, field.Required(p.Child("apiGroups"), "resource rules must supply at least one api group"))
	}
	if len(rule.Resources) == 0 {
		errs = append(errs, field.Required(p.Child("resources"), "resource rules must supply at least one resource"))
	}
	return errs
}

// RoleBinding validates a new RoleBinding.
func RoleBinding(b *rbacv1.RoleBinding) field.ErrorList {
	errs := apivalidation.ValidateObjectMeta(&b.ObjectMeta, true, rbacName, metaPath)
	errs = append(errs, roleRef(b.RoleRef, []string{"Role", "ClusterRole"})...)
	for i, s := range b.Subjects {
		errs = append(errs, subject(s, true, field.NewPath("subjects").Index(i))...)
	}
	return errs
}

// RoleBindingUpdate validates an update of a RoleBinding: its roleRef cannot change.
func RoleBindingUpdate(b, old *rbacv1.RoleBinding) field.ErrorList {
	errs := append(RoleBinding(b), metaUpdate(&b.ObjectMeta, &old.ObjectMeta)...)
	if b.RoleRef != old.RoleRef {
		errs = append(errs, field.Invalid(field.NewPath("roleRef"), b.RoleRef, "cannot change roleRef"))
	}
	return errs
}

// ClusterRoleBinding validates a new ClusterRoleBinding.
func ClusterRoleBinding(b *rbacv1.ClusterRoleBinding) field.ErrorList {
	errs := apivalidation.ValidateObjectMeta(&b.ObjectMeta, false, rbacName, metaPath)
	errs = append(errs, roleRef(b.RoleRef, []string{"ClusterRole"})...)
	for i, s := range b.Subjects {
		errs = append(errs, subject(s, false, field.NewPath("subjects").Index(i))...)
	}
	return errs
}

// ClusterRoleBindingUpdate validates an update of a ClusterRoleBinding: its roleRef cannot
// change.
func ClusterRoleBindingUpdate(b, old *rbacv1.ClusterRoleBinding) field.ErrorList {
	errs := append(ClusterRoleBinding(b), metaUpdate(&b.ObjectMeta, &old.ObjectMeta)...)
	if b.RoleRef != old.RoleRef {
		errs = append(errs, field.Invalid(field.NewPath("roleRef"), b.RoleRef, "cannot change roleRef"))
	}
	return errs
}

func roleRef(ref rbacv1.RoleRef, refKinds []string) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("roleRef")
	if ref.APIGroup != rbacv1.GroupName {
		errs = append(errs, field.NotSupported(p.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	}
	if !slices.Contains(refKinds, ref.Kind) {
		errs = append(errs, field.NotSupported(p.Child("kind"), ref.Kind, refKinds))
	}
	if ref.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		for _, msg := range rbacName(ref.Name, false) {
			errs = append(errs, field.Invalid(p.Child("name"), ref.Name, msg))
		}
	}
	return errs
}

// subject is Kubernetes' ValidateRoleBindingSubject.
func subject(s rbacv1.Subject, namespaced bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	}
	switch s.Kind {
	case rbacv1.ServiceAccountKind:
		if s.Name != "" {
			for _, msg := range apivalidation.ValidateServiceAccountName(s.Name, false) {
				errs = append(errs, field.Invalid(p.Child("name"), s.Name, msg))
			}
		}
		if s.APIGroup != "" {
			errs = append(errs, field.NotSupported(p.Child("apiGroup"), s.APIGroup, []string{""}))
		}
		if !namespaced && s.Namespace == "" {
			errs = append(errs, field.Required(p.Child("namespace"), ""))
		}
	case rbacv1.UserKind, rbacv1.GroupKind:
		if s.APIGroup != rbacv1.GroupName {
			errs = append(errs, field.NotSupported(p.Child("apiGroup"), s.APIGroup, []string{rbacv1.GroupName}))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("kind"), s.Kind, []string{rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind}))
	}
	return errs
}
