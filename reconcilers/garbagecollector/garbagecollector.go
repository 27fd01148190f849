// Package garbagecollector deletes what nothing owns any more, as kube-controller-manager's
// garbage collector does, by ownerReferences:
//
//   - background deletion (kubectl's default): the owner goes at once; then each dependent whose
//     owners are all gone is deleted in turn (a Deployment's ReplicaSets, then their pods);
//   - foreground deletion (--cascade=foreground): the owner stays, with a deletionTimestamp and
//     the foregroundDeletion finalizer, until its dependents are deleted (those with
//     blockOwnerDeletion are waited for), then goes;
//   - orphan deletion (--cascade=orphan): the owner stays with the orphan finalizer until its
//     dependents' references to it are removed, then goes, leaving them.
//
// A dependent with other owners still alive only loses its references to the ones gone. The
// reconciler runs once per resource kind (the engine resyncs each kind when partitions move) and
// reads ownership from the shared informer index: no object is decoded.
package garbagecollector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/ownerref"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler, as the actor of its writes.
const Name = "garbagecollector"

// writer is what the collector needs of the registry.
type writer interface {
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
}

var _ writer = (*registry.Registry)(nil)

// Config configures the collector.
type Config struct {
	// Workers per kind. Default 2.
	Workers int
}

// Collector is the garbage collector.
type Collector struct {
	cfg     Config
	w       writer
	ix      *informer.Index
	catalog *kinds.Catalog
	log     *slog.Logger
}

// Setup is the collector's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the garbage collector on e: one reconciler per kind of the catalog, so that when
// partitions move every kind is resynced, each watching the changes of every resource (any
// object may own or depend on one of its kind).
func New(e *engine.Engine, cfg Config) (*Collector, error) {
	if e.Registry() == nil {
		return nil, errors.New("garbagecollector: the engine has no registry")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	c := &Collector{cfg: cfg, w: e.Registry(), ix: e.Index(), catalog: e.Registry().Catalog(), log: e.Logger()}
	for _, k := range c.catalog.All() {
		gr := k.GroupResource()
		if skipped[gr] {
			continue
		}
		e.Register(engine.Registration{
			Name:      Name + "/" + gr.String(),
			For:       gr,
			ForFilter: c.selfChanged,
			Watches:   []engine.Watch{engine.WatchesAll(func(ev engine.Event) []eventlog.Key { return c.related(k, ev) })},
			Workers:   cfg.Workers,
			Reconciler: engine.ReconcilerFunc(func(ctx context.Context, req engine.Request) (engine.Result, error) {
				return engine.Result{}, c.reconcile(ctx, k, req)
			}),
		})
	}
	return c, nil
}

// skipped are kinds nothing owns in practice and that come in great numbers.
var skipped = map[schema.GroupResource]bool{
	{Resource: "events"}:                         true,
	{Group: "events.k8s.io", Resource: "events"}: true,
}

// collected are the finalizers the collector acts on.
func collected(m *informer.Meta) bool {
	return m != nil && m.Deleting && (slices.Contains(m.Finalizers, metav1.FinalizerOrphanDependents) ||
		slices.Contains(m.Finalizers, metav1.FinalizerDeleteDependents))
}

// selfChanged says whether an object's change is the collector's business: its owners changed,
// or its deletion waits for the collector.
func (c *Collector) selfChanged(ev engine.Event) bool {
	old, cur := ev.OldMeta, ev.NewMeta
	if cur == nil {
		return false
	}
	ownersChanged := len(cur.Owners) > 0 && (old == nil || !apiequality.Semantic.DeepEqual(old.Owners, cur.Owners))
	finalizing := collected(cur) && (old == nil || !old.Deleting || !slices.Equal(old.Finalizers, cur.Finalizers))
	return ownersChanged || finalizing
}

// related returns the objects of kind k that a change of any object concerns: its dependents,
// once it is gone; its owners that wait for it to go (foreground) or for its reference to go
// (orphan), or for it to stop blocking them (Kubernetes' addUnblockedOwnersToDeleteQueue).
func (c *Collector) related(k *kinds.Kind, ev engine.Event) []eventlog.Key {
	old, cur := ev.OldMeta, ev.NewMeta
	if old == nil {
		return nil
	}
	gr := k.GroupResource()
	var keys []eventlog.Key
	if cur == nil {
		for _, d := range c.ix.Dependents(old.UID) {
			if d.Group == gr.Group && d.Resource == gr.Resource {
				keys = append(keys, d)
			}
		}
	}
	ns := ev.Object().Key.Namespace
	for _, r := range old.Owners {
		if !released(r, cur) {
			continue
		}
		key, ok := c.ownerKey(ns, r)
		if !ok || key.Group != gr.Group || key.Resource != gr.Resource {
			continue
		}
		if om, ok := c.ix.Meta(key); ok && collected(&om) {
			keys = append(keys, key)
		}
	}
	return keys
}

// released says whether the reference r of an object's previous revision is gone from its
// current one (nil: the object is gone), or no longer blocks its owner's deletion.
func released(r metav1.OwnerReference, cur *informer.Meta) bool {
	if cur == nil {
		return true
	}
	i := slices.IndexFunc(cur.Owners, func(n metav1.OwnerReference) bool { return n.UID == r.UID })
	if i < 0 {
		return true
	}
	return blocks(r) && !blocks(cur.Owners[i])
}

func blocks(r metav1.OwnerReference) bool {
	return r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion
}

// deletingDependents says whether an object is being deleted in the foreground: it waits for
// its dependents.
func deletingDependents(m *informer.Meta) bool {
	return m.Deleting && slices.Contains(m.Finalizers, metav1.FinalizerDeleteDependents)
}

// ownerKey is the key of the object an owner reference names.
func (c *Collector) ownerKey(ns string, r metav1.OwnerReference) (eventlog.Key, bool) {
	gv, err := schema.ParseGroupVersion(r.APIVersion)
	if err != nil {
		return eventlog.Key{}, false
	}
	k, ok := c.catalog.ByKind(gv.WithKind(r.Kind))
	if !ok {
		// Another version of a kind served in one version only.
		for _, kk := range c.catalog.All() {
			if kk.Group == gv.Group && kk.Kind == r.Kind {
				k, ok = kk, true
				break
			}
		}
		if !ok {
			return eventlog.Key{}, false
		}
	}
	if !k.Namespaced {
		ns = ""
	}
	return eventlog.Key{Group: k.Group, Resource: k.Resource, Namespace: ns, Name: r.Name}, true
}

func (c *Collector) request(cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(Name), Cause: cause}
}

func (c *Collector) kindOf(key eventlog.Key) (*kinds.Kind, bool) {
	return c.catalog.ByGroupResource(schema.GroupResource{Group: key.Group, Resource: key.Resource})
}

func (c *Collector) reconcile(ctx context.Context, k *kinds.Kind, req engine.Request) error {
	m, ok := c.ix.Meta(req.Key)
	if !ok {
		return nil
	}
	var errs []error
	if m.Deleting {
		switch {
		case slices.Contains(m.Finalizers, metav1.FinalizerOrphanDependents):
			errs = append(errs, c.orphanDependents(ctx, k, m, req.Cause))
		case slices.Contains(m.Finalizers, metav1.FinalizerDeleteDependents):
			errs = append(errs, c.deleteDependents(ctx, k, m, req.Cause))
		}
	}
	if len(m.Owners) > 0 {
		errs = append(errs, c.attemptToDelete(ctx, k, m, req.Cause))
	}
	return errors.Join(errs...)
}

// owner states, as the collector sees an owner reference.
const (
	solid    = iota // the owner exists
	dangling        // the owner is gone (or another object has its name now)
	waiting         // the owner is being deleted in the foreground: it waits for its dependents
)

func (c *Collector) ownerState(ns string, r metav1.OwnerReference) int {
	key, ok := c.ownerKey(ns, r)
	if !ok {
		return solid // a kind this binary does not know: leave it alone
	}
	om, ok := c.ix.Meta(key)
	if !ok || om.UID != r.UID {
		return dangling
	}
	if deletingDependents(&om) {
		return waiting
	}
	return solid
}

// attemptToDelete deletes an object whose owners are all gone or waiting for it, or drops the
// references to such owners from an object that still has a live one (Kubernetes'
// attemptToDeleteItem). An object being deleted is left alone: its deletion is under way, and
// if it waits for its own dependents, its own reconcile handles them.
func (c *Collector) attemptToDelete(ctx context.Context, k *kinds.Kind, m informer.Meta, cause uint64) error {
	if m.Deleting {
		return nil
	}
	var gone []types.UID
	solids, waits := 0, 0
	for _, r := range m.Owners {
		switch c.ownerState(m.Key.Namespace, r) {
		case solid:
			solids++
		case dangling:
			gone = append(gone, r.UID)
		case waiting:
			waits++
			gone = append(gone, r.UID)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if solids > 0 {
		// The references to waiting owners go too, or those would wait for this one forever.
		return c.removeOwners(ctx, k, m, gone, cause)
	}
	policy := metav1.DeletePropagationBackground
	switch {
	case waits > 0 && len(c.ix.Dependents(m.UID)) > 0:
		// An owner waits for this object, which has dependents of its own: it goes in the
		// foreground too. If one of those dependents already waits for its own dependents, the
		// owners may form a circle (a → b → c → a, every member waiting for the next): this
		// object's references stop blocking its owners first, so that they need not wait for
		// it, as Kubernetes does (its detection has the same false positives, which only make
		// an owner go before this dependent).
		if c.dependentDeletingDependents(m.UID) {
			if err := c.unblockOwners(ctx, k, m, cause); err != nil {
				return err
			}
		}
		policy = metav1.DeletePropagationForeground
	case slices.Contains(m.Finalizers, metav1.FinalizerOrphanDependents):
		policy = metav1.DeletePropagationOrphan
	case slices.Contains(m.Finalizers, metav1.FinalizerDeleteDependents):
		policy = metav1.DeletePropagationForeground
	}
	uid := m.UID
	_, _, err := c.w.Delete(ctx, k, m.Key.Namespace, m.Key.Name, metav1.DeleteOptions{
		PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}}, c.request(cause))
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("garbagecollector: deleting %s: %w", m.Key, err)
	}
	return nil
}

// dependentDeletingDependents says whether a dependent of uid is itself being deleted in the
// foreground.
func (c *Collector) dependentDeletingDependents(uid types.UID) bool {
	for _, dk := range c.ix.Dependents(uid) {
		if dm, ok := c.ix.Meta(dk); ok && deletingDependents(&dm) {
			return true
		}
	}
	return false
}

// unblockOwners sets blockOwnerDeletion to false in every reference of the object that has it
// true (Kubernetes' unblockOwnerReferences patch).
func (c *Collector) unblockOwners(ctx context.Context, k *kinds.Kind, m informer.Meta, cause uint64) error {
	_, err := c.w.Modify(ctx, k, m.Key.Namespace, m.Key.Name, c.request(cause), registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		a, ok := cur.(metav1.Object)
		if !ok || a.GetUID() != m.UID {
			return nil, errSkip
		}
		refs := slices.Clone(a.GetOwnerReferences())
		changed := false
		for i := range refs {
			if blocks(refs[i]) {
				refs[i].BlockOwnerDeletion = new(bool)
				changed = true
			}
		}
		if !changed {
			return nil, errSkip
		}
		a.SetOwnerReferences(refs)
		a.SetResourceVersion("") // decided on this revision: retried on a conflict
		return cur, nil
	})
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("garbagecollector: unblocking the owners of %s: %w", m.Key, err)
}

var errSkip = errors.New("garbagecollector: nothing to do")

// removeOwners drops the references to the owners uids from an object.
func (c *Collector) removeOwners(ctx context.Context, k *kinds.Kind, m informer.Meta, uids []types.UID, cause uint64) error {
	return ownerref.Release(ctx, c.w, k, m.Key.Namespace, m.Key.Name, m.UID, uids, c.request(cause))
}

// removeFinalizer removes a finalizer from an object being deleted, which lets it go if it was
// the last.
func (c *Collector) removeFinalizer(ctx context.Context, k *kinds.Kind, m informer.Meta, finalizer string, cause uint64) error {
	req := c.request(cause)
	_, err := c.w.Modify(ctx, k, m.Key.Namespace, m.Key.Name, req, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		a, ok := cur.(metav1.Object)
		if !ok || a.GetUID() != m.UID {
			return nil, errSkip
		}
		fs := a.GetFinalizers()
		kept := slices.DeleteFunc(slices.Clone(fs), func(f string) bool { return f == finalizer })
		if len(kept) == len(fs) {
			return nil, errSkip
		}
		a.SetFinalizers(kept)
		return cur, nil
	})
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("garbagecollector: removing finalizer %s from %s: %w", finalizer, m.Key, err)
}

// orphanDependents removes the owner's references from its dependents, then its orphan
// finalizer.
func (c *Collector) orphanDependents(ctx context.Context, k *kinds.Kind, owner informer.Meta, cause uint64) error {
	var errs []error
	for _, dk := range c.ix.Dependents(owner.UID) {
		dm, ok := c.ix.Meta(dk)
		if !ok {
			continue
		}
		kd, ok := c.kindOf(dk)
		if !ok {
			continue
		}
		if err := c.removeOwners(ctx, kd, dm, []types.UID{owner.UID}, cause); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return c.removeFinalizer(ctx, k, owner, metav1.FinalizerOrphanDependents, cause)
}

// deleteDependents deletes an owner's dependents (in the foreground too when they have
// dependents of their own), and once none that blocks its deletion is left, removes its
// foregroundDeletion finalizer.
func (c *Collector) deleteDependents(ctx context.Context, k *kinds.Kind, owner informer.Meta, cause uint64) error {
	var errs []error
	blocking := 0
	for _, dk := range c.ix.Dependents(owner.UID) {
		dm, ok := c.ix.Meta(dk)
		if !ok {
			continue
		}
		for _, r := range dm.Owners {
			if r.UID == owner.UID && r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion {
				blocking++
			}
		}
		kd, ok := c.kindOf(dk)
		if !ok {
			continue
		}
		if err := c.attemptToDelete(ctx, kd, dm, cause); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if blocking > 0 {
		return nil // their deletions bring the owner back here
	}
	return c.removeFinalizer(ctx, k, owner, metav1.FinalizerDeleteDependents, cause)
}
