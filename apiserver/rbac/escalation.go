package rbac

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/component-helpers/auth/rbac/validation"
)

// fullAuthority is what the aggregation rule of a ClusterRole needs: it can gather anything.
var fullAuthority = []rbacv1.PolicyRule{
	{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
	{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
}

// CheckWrite is Kubernetes' escalation prevention on a write of a Role, ClusterRole,
// RoleBinding or ClusterRoleBinding by u (old is nil on a create; other kinds pass): a member
// of system:masters may write anything; otherwise a role's rules must be held by u already
// unless u may "escalate" the role, an aggregation rule needs every right, and a binding needs
// u to hold the rules of the role it binds unless u may "bind" that role. authz is the whole
// authorizer chain, asked about escalate and bind. A refusal is a 403 Forbidden with
// Kubernetes' message; a binding to a role that does not exist, its 404.
func (a *Authorizer) CheckWrite(ctx context.Context, authz authorizer.Authorizer, u user.Info, obj, old runtime.Object) error {
	switch obj.(type) {
	case *rbacv1.Role, *rbacv1.ClusterRole, *rbacv1.RoleBinding, *rbacv1.ClusterRoleBinding:
	default:
		return nil
	}
	if u == nil || slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup) {
		return nil
	}
	if old != nil && onlyGCFields(obj, old) {
		return nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	ns, name := m.GetNamespace(), m.GetName()
	allowed := func(verb, resource, refName string) bool {
		d, _, err := authz.Authorize(ctx, authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: rbacv1.GroupName, APIVersion: "*",
			Resource: resource, Name: refName, Namespace: ns, ResourceRequest: true})
		return err == nil && d == authorizer.DecisionAllow
	}
	switch o := obj.(type) {
	case *rbacv1.Role:
		if allowed("escalate", "roles", name) {
			return nil
		}
		if err := a.confirmNoEscalation(u, ns, o.Rules); err != nil {
			return apierrors.NewForbidden(rolesGR, name, err)
		}
	case *rbacv1.ClusterRole:
		if allowed("escalate", "clusterroles", name) {
			return nil
		}
		if err := a.confirmNoEscalation(u, "", o.Rules); err != nil {
			return apierrors.NewForbidden(clusterRolesGR, name, err)
		}
		oldAggregates := false
		if oc, ok := old.(*rbacv1.ClusterRole); ok {
			oldAggregates = aggregates(oc)
		}
		if aggregates(o) || oldAggregates {
			if err := a.confirmNoEscalation(u, "", fullAuthority); err != nil {
				return apierrors.NewForbidden(clusterRolesGR, name, errors.New("must have cluster-admin privileges to use the aggregationRule"))
			}
		}
	case *rbacv1.RoleBinding:
		return a.checkBinding(u, o.RoleRef, ns, name, roleBindingsGR.Resource, allowed)
	case *rbacv1.ClusterRoleBinding:
		return a.checkBinding(u, o.RoleRef, "", name, clusterRoleBindingsGR.Resource, allowed)
	}
	return nil
}

func (a *Authorizer) checkBinding(u user.Info, ref rbacv1.RoleRef, ns, name, resource string, allowed func(verb, resource, name string) bool) error {
	refResource := "clusterroles"
	if ref.Kind == "Role" {
		refResource = "roles"
	}
	if (ref.Kind == "Role" || ref.Kind == "ClusterRole") && allowed("bind", refResource, ref.Name) {
		return nil
	}
	rules, err := a.RoleRules(ref, ns)
	if err != nil {
		return err
	}
	if err := a.confirmNoEscalation(u, ns, rules); err != nil {
		gr := roleBindingsGR
		if resource == clusterRoleBindingsGR.Resource {
			gr = clusterRoleBindingsGR
		}
		return apierrors.NewForbidden(gr, name, err)
	}
	return nil
}

func aggregates(r *rbacv1.ClusterRole) bool {
	return r.AggregationRule != nil && len(r.AggregationRule.ClusterRoleSelectors) > 0
}

// confirmNoEscalation is Kubernetes' ConfirmNoEscalation: u's rules in namespace must cover
// rules (component-helpers' Covers), or the error lists what is missing.
func (a *Authorizer) confirmNoEscalation(u user.Info, namespace string, rules []rbacv1.PolicyRule) error {
	owner, resolveErr := a.Rules(u, namespace)
	covers, missing := validation.Covers(owner, rules)
	if covers {
		return nil
	}
	var descs []string
	for _, r := range compactRules(missing) {
		d := compactString(r)
		if !slices.Contains(descs, d) {
			descs = append(descs, d)
		}
	}
	slices.Sort(descs)
	msg := fmt.Sprintf("user %q (groups=%q) is attempting to grant RBAC permissions not currently held:\n%s", u.GetName(), u.GetGroups(), strings.Join(descs, "\n"))
	if resolveErr != nil {
		msg += fmt.Sprintf("; resolution errors: %v", []error{resolveErr})
	}
	return errors.New(msg)
}

// onlyGCFields is Kubernetes' IsOnlyMutatingGCFields: an update that changes only owner
// references, finalizers and managed fields needs no escalation check.
func onlyGCFields(obj, old runtime.Object) bool {
	c := obj.DeepCopyObject()
	cm, err := meta.Accessor(c)
	if err != nil {
		return false
	}
	om, err := meta.Accessor(old)
	if err != nil {
		return false
	}
	cm.SetOwnerReferences(om.GetOwnerReferences())
	cm.SetFinalizers(om.GetFinalizers())
	cm.SetSelfLink(om.GetSelfLink())
	cm.SetManagedFields(om.GetManagedFields())
	cm.SetResourceVersion(om.GetResourceVersion())
	return equality.Semantic.DeepEqual(c, old)
}

type simpleResource struct {
	group, resource string
	hasName         bool
	name            string
}

// compactRules is Kubernetes' CompactRules: rules of one group and resource that differ only
// by verb are merged.
func compactRules(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, 0, len(rules))
	simple := map[simpleResource]*rbacv1.PolicyRule{}
	var order []simpleResource
	for _, rule := range rules {
		if res, ok := isSimpleResourceRule(&rule); ok {
			if ex, ok := simple[res]; ok {
				ex.Verbs = append(ex.Verbs, rule.Verbs...)
			} else {
				simple[res] = rule.DeepCopy()
				order = append(order, res)
			}
		} else {
			out = append(out, rule)
		}
	}
	for _, res := range order {
		out = append(out, *simple[res])
	}
	return out
}

func isSimpleResourceRule(rule *rbacv1.PolicyRule) (simpleResource, bool) {
	if len(rule.ResourceNames) > 1 || len(rule.NonResourceURLs) > 0 || len(rule.APIGroups) != 1 || len(rule.Resources) != 1 {
		return simpleResource{}, false
	}
	s := &rbacv1.PolicyRule{APIGroups: rule.APIGroups, Resources: rule.Resources, Verbs: rule.Verbs, ResourceNames: rule.ResourceNames}
	if !reflect.DeepEqual(s, rule) {
		return simpleResource{}, false
	}
	if len(rule.ResourceNames) == 0 {
		return simpleResource{group: rule.APIGroups[0], resource: rule.Resources[0]}, true
	}
	return simpleResource{group: rule.APIGroups[0], resource: rule.Resources[0], hasName: true, name: rule.ResourceNames[0]}, true
}

// compactString is Kubernetes' CompactString of a rule, for escalation messages.
func compactString(r rbacv1.PolicyRule) string {
	var parts []string
	var args []any
	add := func(f string, v []string) {
		if len(v) > 0 {
			parts = append(parts, f)
			args = append(args, v)
		}
	}
	add("APIGroups:%q", r.APIGroups)
	add("Resources:%q", r.Resources)
	add("NonResourceURLs:%q", r.NonResourceURLs)
	add("ResourceNames:%q", r.ResourceNames)
	add("Verbs:%q", r.Verbs)
	return fmt.Sprintf("{"+strings.Join(parts, ", ")+"}", args...)
}
