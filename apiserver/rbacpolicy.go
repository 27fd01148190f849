package apiserver

import (
	"context"
	"fmt"
	"slices"

	"golang.org/x/sync/errgroup"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/component-helpers/auth/rbac/validation"

	"github.com/logplane/logplane/apiserver/rbac"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// bootstrapRBAC makes Kubernetes' default cluster roles and bindings exist (rbac.ClusterRoles,
// rbac.ClusterRoleBindings), as kube-apiserver's RBAC post-start hook does: a missing one is
// created; an existing one annotated rbac.authorization.kubernetes.io/autoupdate=true gets
// the rules, aggregation selectors, subjects, labels and annotations of the default that it
// lacks (what an administrator added stays); one annotated otherwise is left as it is.
func (s *Server) bootstrapRBAC(ctx context.Context) error {
	roles, ok := s.catalog.ByGroupResource(schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterroles"})
	if !ok {
		return nil
	}
	bindings, ok := s.catalog.ByGroupResource(schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterrolebindings"})
	if !ok {
		return nil
	}
	var g errgroup.Group
	g.SetLimit(16)
	for _, r := range rbac.ClusterRoles() {
		g.Go(func() error { return s.ensureDefault(ctx, roles, r, r.Name, reconcileRole(r)) })
	}
	for _, b := range rbac.ClusterRoleBindings() {
		g.Go(func() error { return s.ensureDefault(ctx, bindings, b, b.Name, reconcileBinding(b)) })
	}
	return g.Wait()
}

// ensureDefault creates obj if there is no object of its name, or else reconciles the one
// there with reconcile (a result equal to what is stored writes nothing).
func (s *Server) ensureDefault(ctx context.Context, k *kinds.Kind, obj runtime.Object, name string, reconcile func(cur runtime.Object)) error {
	_, err := s.reg.GetObject(ctx, k, "", name, registry.ReadOptions{ResourceVersion: "0"})
	switch {
	case apierrors.IsNotFound(err):
		_, err := s.reg.Create(ctx, k, obj, systemActor)
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("apiserver: creating %s %s: %w", k.Resource, name, err)
		}
		// Made meanwhile (another API server): reconciled below.
	case err != nil:
		return fmt.Errorf("apiserver: reading %s %s: %w", k.Resource, name, err)
	}
	_, err = s.reg.Modify(ctx, k, "", name, systemActor, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		reconcile(cur)
		return cur, nil
	})
	if err != nil {
		return fmt.Errorf("apiserver: reconciling %s %s: %w", k.Resource, name, err)
	}
	return nil
}

func autoupdate(annotations map[string]string) bool {
	v, ok := annotations[rbacv1.AutoUpdateAnnotationKey]
	return !ok || v == "true"
}

// reconcileRole adds what default has and a ClusterRole lacks, as Kubernetes' reconciliation
// without --remove-extra-permissions.
func reconcileRole(def *rbacv1.ClusterRole) func(runtime.Object) {
	return func(o runtime.Object) {
		cur := o.(*rbacv1.ClusterRole)
		if !autoupdate(cur.Annotations) {
			return
		}
		mergeMeta(&cur.Labels, def.Labels)
		mergeMeta(&cur.Annotations, def.Annotations)
		if def.AggregationRule != nil {
			if cur.AggregationRule == nil {
				cur.AggregationRule = &rbacv1.AggregationRule{}
			}
			for _, sel := range def.AggregationRule.ClusterRoleSelectors {
				if !slices.ContainsFunc(cur.AggregationRule.ClusterRoleSelectors, func(x metav1.LabelSelector) bool { return equality.Semantic.DeepEqual(x, sel) }) {
					cur.AggregationRule.ClusterRoleSelectors = append(cur.AggregationRule.ClusterRoleSelectors, sel)
				}
			}
		} else if covers, missing := validation.Covers(cur.Rules, def.Rules); !covers {
			cur.Rules = append(cur.Rules, missing...)
		}
	}
}

// reconcileBinding adds the subjects of default that a ClusterRoleBinding lacks (its roleRef
// cannot change).
func reconcileBinding(def *rbacv1.ClusterRoleBinding) func(runtime.Object) {
	return func(o runtime.Object) {
		cur := o.(*rbacv1.ClusterRoleBinding)
		if !autoupdate(cur.Annotations) {
			return
		}
		mergeMeta(&cur.Labels, def.Labels)
		mergeMeta(&cur.Annotations, def.Annotations)
		for _, sub := range def.Subjects {
			if !slices.Contains(cur.Subjects, sub) {
				cur.Subjects = append(cur.Subjects, sub)
			}
		}
	}
}

func mergeMeta(dst *map[string]string, src map[string]string) {
	if len(src) == 0 {
		return
	}
	if *dst == nil {
		*dst = map[string]string{}
	}
	for k, v := range src {
		if _, ok := (*dst)[k]; !ok {
			(*dst)[k] = v
		}
	}
}
