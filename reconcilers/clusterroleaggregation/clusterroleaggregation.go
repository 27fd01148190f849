// Package clusterroleaggregation is the reconciler of ClusterRoles with an aggregationRule, as
// Kubernetes' clusterrole-aggregation controller: such a role's rules are the rules of every
// other ClusterRole its selectors match (admin, edit and view gather the
// system:aggregate-to-* roles and whatever an administrator labels for them).
package clusterroleaggregation

import (
	"context"
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler, Kubernetes' controller's.
const Name = "clusterrole-aggregation"

var clusterRoles = schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterroles"}

// store is what the reconciler reads.
type store interface {
	Get(key eventlog.Key) (*projections.Object, bool)
	List(q projections.Query) ([]*projections.Object, uint64)
}

// writer is what it writes through.
type writer interface {
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
}

// Config configures the reconciler.
type Config struct{}

// Reconciler keeps aggregated ClusterRoles' rules.
type Reconciler struct {
	store store
	w     writer
	kind  *kinds.Kind
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the reconciler on e: it reconciles ClusterRoles, and a change of any
// ClusterRole requeues the roles that aggregate.
func New(e *engine.Engine, _ Config) (*Reconciler, error) {
	ks, err := e.Kinds(clusterRoles)
	if err != nil {
		return nil, fmt.Errorf("clusterroleaggregation: %w", err)
	}
	k := ks[0]
	r := &Reconciler{store: e.Store(), w: e.Registry(), kind: k}
	e.Register(engine.Registration{
		Name:       Name,
		For:        clusterRoles,
		Watches:    []engine.Watch{engine.Watches(clusterRoles, r.aggregators)},
		Reconciler: r,
	})
	return r, nil
}

// aggregators are the keys of the ClusterRoles with an aggregation rule: any role's change
// may change what they gather (there are few ClusterRoles).
func (r *Reconciler) aggregators(engine.Event) []eventlog.Key {
	var keys []eventlog.Key
	for _, cr := range r.list() {
		if cr.AggregationRule != nil {
			keys = append(keys, eventlog.Key{Group: clusterRoles.Group, Resource: clusterRoles.Resource, Name: cr.Name})
		}
	}
	return keys
}

func (r *Reconciler) list() []*rbacv1.ClusterRole {
	objs, _ := r.store.List(projections.Query{Resource: clusterRoles})
	out := make([]*rbacv1.ClusterRole, 0, len(objs))
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			continue // a revision this binary cannot read grants nothing
		}
		if cr, ok := obj.(*rbacv1.ClusterRole); ok {
			out = append(out, cr)
		}
	}
	return out
}

// Reconcile sets an aggregating role's rules to those of the roles it selects, in the order of
// their names, each rule once, as Kubernetes' controller does.
func (r *Reconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	o, ok := r.store.Get(req.Key)
	if !ok {
		return engine.Result{}, nil
	}
	obj, err := o.Decode()
	if err != nil {
		return engine.Result{}, nil
	}
	cr, ok := obj.(*rbacv1.ClusterRole)
	if !ok || cr.AggregationRule == nil {
		return engine.Result{}, nil
	}
	var rules []rbacv1.PolicyRule
	roles := r.list()
	slices.SortFunc(roles, func(a, b *rbacv1.ClusterRole) int { return strings.Compare(a.Name, b.Name) })
	for _, sel := range cr.AggregationRule.ClusterRoleSelectors {
		s, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil {
			continue // validation refuses such selectors
		}
		for _, other := range roles {
			if other.Name == cr.Name || !s.Matches(labels.Set(other.Labels)) {
				continue
			}
			for _, rule := range other.Rules {
				if !slices.ContainsFunc(rules, func(x rbacv1.PolicyRule) bool { return equality.Semantic.DeepEqual(x, rule) }) {
					rules = append(rules, rule)
				}
			}
		}
	}
	if equality.Semantic.DeepEqual(rules, cr.Rules) || (len(rules) == 0 && len(cr.Rules) == 0) {
		return engine.Result{}, nil
	}
	_, err = r.w.Modify(ctx, r.kind, "", cr.Name, registry.Request{Actor: registry.Reconciler(Name), Cause: req.Cause},
		registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
			c := cur.(*rbacv1.ClusterRole)
			c.Rules = rules
			return c, nil
		})
	if apierrors.IsNotFound(err) {
		return engine.Result{}, nil
	}
	return engine.Result{}, err
}
