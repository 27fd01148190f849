package apiserver

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/apiserver/rbac"
	"github.com/logplane/logplane/registry"
)

// bootstrapRBAC creates Kubernetes' default cluster roles and bindings that do not exist
// (rbac.ClusterRoles, rbac.ClusterRoleBindings), as kube-apiserver's RBAC post-start hook
// does; one that exists is left as it is (an administrator's change stays).
func (s *Server) bootstrapRBAC(ctx context.Context) error {
	roles, ok := s.catalog.ByGroupResource(schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: "clusterroles"})
	if !ok {
		return nil
	}
	bindings, ok := s.catalog.ByGroupResource(schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"})
	if !ok {
		return nil
	}
	var g errgroup.Group
	g.SetLimit(16)
	for _, r := range rbac.ClusterRoles() {
		g.Go(func() error {
			if _, err := s.reg.GetObject(ctx, roles, "", r.Name, registry.ReadOptions{ResourceVersion: "0"}); err == nil {
				return nil
			}
			if _, err := s.reg.Create(ctx, roles, r, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("apiserver: creating cluster role %s: %w", r.Name, err)
			}
			return nil
		})
	}
	for _, b := range rbac.ClusterRoleBindings() {
		g.Go(func() error {
			if _, err := s.reg.GetObject(ctx, bindings, "", b.Name, registry.ReadOptions{ResourceVersion: "0"}); err == nil {
				return nil
			}
			if _, err := s.reg.Create(ctx, bindings, b, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("apiserver: creating cluster role binding %s: %w", b.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}
