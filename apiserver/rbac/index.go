package rbac

import (
	"fmt"
	"slices"
	"sync"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/logplane/logplane/projections"
)

var (
	rolesGR               = schema.GroupResource{Group: rbacv1.GroupName, Resource: "roles"}
	clusterRolesGR        = schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterroles"}
	roleBindingsGR        = schema.GroupResource{Group: rbacv1.GroupName, Resource: "rolebindings"}
	clusterRoleBindingsGR = schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterrolebindings"}
)

type nsName struct{ ns, name string }

// entry is one decoded object and the sequence of its revision.
type entry[T any] struct {
	seq uint64
	obj T
}

// Authorizer is the RBAC authorizer over a projection. Make it with New, then Sync before use.
// It is safe for concurrent use.
type Authorizer struct {
	store *projections.Store

	mu           sync.RWMutex
	roles        map[nsName]entry[*rbacv1.Role]
	clusterRoles map[string]entry[*rbacv1.ClusterRole]
	rbs          map[nsName]entry[*rbacv1.RoleBinding]
	crbs         map[string]entry[*rbacv1.ClusterRoleBinding]
	gone         map[nsName]uint64 // sequence of the deletion of a key (resource in ns), see apply
	// subjects indexes the bindings by subject; nil after a binding changed, made again on use.
	subjects *subjectIndex
}

// subjectIndex finds the bindings that name a user (service accounts by their user name) or a
// group: cluster role bindings by subject, role bindings by namespace and subject.
type subjectIndex struct {
	crbs map[skey][]*crbSubject
	rbs  map[string]map[skey][]*rbSubject
}

// skey is a subject: a group's name, or a user's.
type skey struct {
	group bool
	name  string
}

type crbSubject struct {
	b       *rbacv1.ClusterRoleBinding
	subject int
}

type rbSubject struct {
	b       *rbacv1.RoleBinding
	subject int
}

// New returns an authorizer over store's RBAC objects.
func New(store *projections.Store) *Authorizer {
	return &Authorizer{
		store:        store,
		roles:        map[nsName]entry[*rbacv1.Role]{},
		clusterRoles: map[string]entry[*rbacv1.ClusterRole]{},
		rbs:          map[nsName]entry[*rbacv1.RoleBinding]{},
		crbs:         map[string]entry[*rbacv1.ClusterRoleBinding]{},
		gone:         map[nsName]uint64{},
	}
}

// Sync loads the RBAC objects the store holds and follows its changes until cancel is called.
// Changes are applied as the store delivers them (Store.WaitDelivered tells when a write has
// reached the authorizer).
func (a *Authorizer) Sync() (cancel func(), err error) {
	cancel = a.store.Subscribe(func(c projections.Change) {
		o := c.New
		if o == nil {
			o = c.Old
		}
		if o == nil {
			return
		}
		gr := schema.GroupResource{Group: o.Key.Group, Resource: o.Key.Resource}
		if !isRBAC(gr) {
			return
		}
		if c.New == nil {
			a.remove(gr, o.Key.Namespace, o.Key.Name, c.Seq)
			return
		}
		a.apply(c.New)
	})
	for _, gr := range []schema.GroupResource{rolesGR, clusterRolesGR, roleBindingsGR, clusterRoleBindingsGR} {
		objs, _ := a.store.List(projections.Query{Resource: gr})
		for _, o := range objs {
			a.apply(o)
		}
	}
	return cancel, nil
}

func isRBAC(gr schema.GroupResource) bool {
	return gr == rolesGR || gr == clusterRolesGR || gr == roleBindingsGR || gr == clusterRoleBindingsGR
}

// apply takes a revision in, unless the authorizer has a newer one (a change delivered after
// Sync listed the store) or saw the object deleted later.
func (a *Authorizer) apply(o *projections.Object) {
	obj, err := o.Decode()
	if err != nil {
		return // a revision this binary cannot read grants nothing
	}
	ns, name, seq := o.Key.Namespace, o.Key.Name, o.Seq
	a.mu.Lock()
	defer a.mu.Unlock()
	gk := nsName{o.Key.Resource + "/" + ns, name}
	if a.gone[gk] >= seq {
		return
	}
	switch t := obj.(type) {
	case *rbacv1.Role:
		if cur, ok := a.roles[nsName{ns, name}]; !ok || cur.seq < seq {
			a.roles[nsName{ns, name}] = entry[*rbacv1.Role]{seq, t}
		}
	case *rbacv1.ClusterRole:
		if cur, ok := a.clusterRoles[name]; !ok || cur.seq < seq {
			a.clusterRoles[name] = entry[*rbacv1.ClusterRole]{seq, t}
		}
	case *rbacv1.RoleBinding:
		if cur, ok := a.rbs[nsName{ns, name}]; !ok || cur.seq < seq {
			a.rbs[nsName{ns, name}] = entry[*rbacv1.RoleBinding]{seq, t}
			a.subjects = nil
		}
	case *rbacv1.ClusterRoleBinding:
		if cur, ok := a.crbs[name]; !ok || cur.seq < seq {
			a.crbs[name] = entry[*rbacv1.ClusterRoleBinding]{seq, t}
			a.subjects = nil
		}
	}
}

func (a *Authorizer) remove(gr schema.GroupResource, ns, name string, seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gone[nsName{gr.Resource + "/" + ns, name}] = seq
	switch gr {
	case rolesGR:
		if cur, ok := a.roles[nsName{ns, name}]; ok && cur.seq < seq {
			delete(a.roles, nsName{ns, name})
		}
	case clusterRolesGR:
		if cur, ok := a.clusterRoles[name]; ok && cur.seq < seq {
			delete(a.clusterRoles, name)
		}
	case roleBindingsGR:
		if cur, ok := a.rbs[nsName{ns, name}]; ok && cur.seq < seq {
			delete(a.rbs, nsName{ns, name})
			a.subjects = nil
		}
	case clusterRoleBindingsGR:
		if cur, ok := a.crbs[name]; ok && cur.seq < seq {
			delete(a.crbs, name)
			a.subjects = nil
		}
	}
}

// index returns the subject index, making it if a binding changed since. Called with a.mu
// held for reading; it takes the write lock to make the index.
func (a *Authorizer) index() *subjectIndex {
	if idx := a.subjects; idx != nil {
		return idx
	}
	a.mu.RUnlock()
	a.mu.Lock()
	if a.subjects == nil {
		idx := &subjectIndex{crbs: map[skey][]*crbSubject{}, rbs: map[string]map[skey][]*rbSubject{}}
		for _, e := range a.crbs {
			for i, s := range e.obj.Subjects {
				if k, ok := subjectKey(s, ""); ok {
					idx.crbs[k] = append(idx.crbs[k], &crbSubject{e.obj, i})
				}
			}
		}
		for key, e := range a.rbs {
			m := idx.rbs[key.ns]
			if m == nil {
				m = map[skey][]*rbSubject{}
				idx.rbs[key.ns] = m
			}
			for i, s := range e.obj.Subjects {
				if k, ok := subjectKey(s, key.ns); ok {
					m[k] = append(m[k], &rbSubject{e.obj, i})
				}
			}
		}
		a.subjects = idx
	}
	idx := a.subjects
	a.mu.Unlock()
	a.mu.RLock()
	return idx
}

// subjectKey is the key a binding's subject is indexed under, as Kubernetes' appliesToUser
// matches it; false for a subject that matches nobody.
func subjectKey(s rbacv1.Subject, bindingNamespace string) (skey, bool) {
	switch s.Kind {
	case rbacv1.UserKind:
		return skey{name: s.Name}, true
	case rbacv1.GroupKind:
		return skey{group: true, name: s.Name}, true
	case rbacv1.ServiceAccountKind:
		ns := bindingNamespace
		if s.Namespace != "" {
			ns = s.Namespace
		}
		if ns == "" {
			return skey{}, false
		}
		return skey{name: serviceaccount.MakeUsername(ns, s.Name)}, true
	}
	return skey{}, false
}

// VisitRulesFor calls visitor with each rule that applies to u in namespace (the cluster role
// bindings' first, then the role bindings' of namespace), and with each error resolving a
// role; visiting stops when visitor returns false. Kubernetes' DefaultRuleResolver, with the
// bindings found by subject instead of listed.
func (a *Authorizer) VisitRulesFor(u user.Info, namespace string, visitor func(source fmt.Stringer, rule *rbacv1.PolicyRule, err error) bool) {
	if u == nil {
		return
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	idx := a.index()
	var keyBuf [8]skey // the user's subjects: its name, then its groups
	keys := append(keyBuf[:0], skey{name: u.GetName()})
	for _, g := range u.GetGroups() {
		keys = append(keys, skey{group: true, name: g})
	}
	var seenBuf [8]any // the bindings visited: a few per user
	seen := seenBuf[:0]
	for _, k := range keys {
		for _, bs := range idx.crbs[k] {
			if slices.Contains(seen, any(bs.b)) {
				continue
			}
			seen = append(seen, bs.b)
			rules, err := a.roleRules(bs.b.RoleRef, "")
			if err != nil {
				if !visitor(nil, nil, err) {
					return
				}
				continue
			}
			src := &clusterRoleBindingSource{bs.b, &bs.b.Subjects[bs.subject]}
			for i := range rules {
				if !visitor(src, &rules[i], nil) {
					return
				}
			}
		}
	}
	if namespace == "" {
		return
	}
	byKey := idx.rbs[namespace]
	for _, k := range keys {
		for _, bs := range byKey[k] {
			if slices.Contains(seen, any(bs.b)) {
				continue
			}
			seen = append(seen, bs.b)
			rules, err := a.roleRules(bs.b.RoleRef, namespace)
			if err != nil {
				if !visitor(nil, nil, err) {
					return
				}
				continue
			}
			src := &roleBindingSource{bs.b, &bs.b.Subjects[bs.subject]}
			for i := range rules {
				if !visitor(src, &rules[i], nil) {
					return
				}
			}
		}
	}
}

// RoleRules returns the rules of the role ref names, from a binding in namespace ("" for a
// cluster role binding): a 404 error if there is no such role.
func (a *Authorizer) RoleRules(ref rbacv1.RoleRef, namespace string) ([]rbacv1.PolicyRule, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.roleRules(ref, namespace)
}

func (a *Authorizer) roleRules(ref rbacv1.RoleRef, namespace string) ([]rbacv1.PolicyRule, error) {
	switch ref.Kind {
	case "Role":
		e, ok := a.roles[nsName{namespace, ref.Name}]
		if !ok {
			return nil, apierrors.NewNotFound(rolesGR, ref.Name)
		}
		return e.obj.Rules, nil
	case "ClusterRole":
		e, ok := a.clusterRoles[ref.Name]
		if !ok {
			return nil, apierrors.NewNotFound(clusterRolesGR, ref.Name)
		}
		return e.obj.Rules, nil
	}
	return nil, fmt.Errorf("unsupported role reference kind: %q", ref.Kind)
}

// The sources of rules, as Kubernetes describes them in an allow's reason.

type clusterRoleBindingSource struct {
	b *rbacv1.ClusterRoleBinding
	s *rbacv1.Subject
}

func (d *clusterRoleBindingSource) String() string {
	return fmt.Sprintf("ClusterRoleBinding %q of %s %q to %s", d.b.Name, d.b.RoleRef.Kind, d.b.RoleRef.Name, describeSubject(d.s, ""))
}

type roleBindingSource struct {
	b *rbacv1.RoleBinding
	s *rbacv1.Subject
}

func (d *roleBindingSource) String() string {
	return fmt.Sprintf("RoleBinding %q of %s %q to %s", d.b.Name+"/"+d.b.Namespace, d.b.RoleRef.Kind, d.b.RoleRef.Name, describeSubject(d.s, d.b.Namespace))
}

func describeSubject(s *rbacv1.Subject, bindingNamespace string) string {
	if s.Kind == rbacv1.ServiceAccountKind {
		ns := s.Namespace
		if ns == "" {
			ns = bindingNamespace
		}
		return fmt.Sprintf("%s %q", s.Kind, s.Name+"/"+ns)
	}
	return fmt.Sprintf("%s %q", s.Kind, s.Name)
}
