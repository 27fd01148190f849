// Package history keeps the revision history of a controller as ControllerRevisions, as
// Kubernetes' pkg/controller/history does for StatefulSets and DaemonSets: a revision is named
// <owner>-<hash> after the FNV hash of its data (and of the owner's collision count once two
// revisions' hashes have collided), labelled with controller.kubernetes.io/hash, controlled by
// its owner and numbered by its Revision; revisions are listed by selector and owner from the
// reconcilers' informer index and written through the registry. The functions and methods have
// Kubernetes' names and meaning; the writes take a context.
package history

// Ported from k8s.io/kubernetes pkg/controller/history/controller_history.go (Copyright The
// Kubernetes Authors, Apache License 2.0): the same functions over the registry and the informer
// index instead of a clientset and a lister.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/dump"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// ControllerRevisionHashLabel labels a ControllerRevision with the hash of its data.
const ControllerRevisionHashLabel = "controller.kubernetes.io/hash"

// Resource is the resource of ControllerRevisions. A reconciler using a History lists it among
// the resources it owns (engine.Registration.Owns), so that the informer index keeps them.
var Resource = schema.GroupResource{Group: "apps", Resource: "controllerrevisions"}

// ControllerRevisionName returns prefix-hash, prefix cut to 223 bytes so that the name fits in
// 253.
func ControllerRevisionName(prefix string, hash string) string {
	if len(prefix) > 223 {
		prefix = prefix[:223]
	}
	return fmt.Sprintf("%s-%s", prefix, hash)
}

// NewControllerRevision returns a ControllerRevision controlled by parent (of parentKind), with
// templateLabels, data and revision, named after parent and the hash of data and collisionCount.
func NewControllerRevision(parent metav1.Object, parentKind schema.GroupVersionKind, templateLabels map[string]string,
	data runtime.RawExtension, revision int64, collisionCount *int32) (*appsv1.ControllerRevision, error) {
	labelMap := make(map[string]string, len(templateLabels)+1)
	for k, v := range templateLabels {
		labelMap[k] = v
	}
	cr := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       parent.GetNamespace(),
			Labels:          labelMap,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(parent, parentKind)},
		},
		Data:     data,
		Revision: revision,
	}
	hash := HashControllerRevision(cr, collisionCount)
	cr.Name = ControllerRevisionName(parent.GetName(), hash)
	cr.Labels[ControllerRevisionHashLabel] = hash
	return cr, nil
}

// HashControllerRevision is the FNV-32 hash of revision's data (its raw bytes, then its object's
// deep dump) and of probe (in decimal) if not nil, safely encoded: Kubernetes' hash, so that a
// revision gets the name Kubernetes would give it.
func HashControllerRevision(revision *appsv1.ControllerRevision, probe *int32) string {
	hf := fnv.New32()
	if len(revision.Data.Raw) > 0 {
		_, _ = hf.Write(revision.Data.Raw)
	}
	if revision.Data.Object != nil {
		_, _ = hf.Write([]byte(dump.ForHash(revision.Data.Object)))
	}
	if probe != nil {
		_, _ = hf.Write([]byte(strconv.FormatInt(int64(*probe), 10)))
	}
	return rand.SafeEncodeString(fmt.Sprint(hf.Sum32()))
}

// SortControllerRevisions sorts revisions by Revision, then creation time, then name.
func SortControllerRevisions(revisions []*appsv1.ControllerRevision) {
	sort.Stable(byRevision(revisions))
}

// EqualRevision reports whether lhs and rhs are both nil, or both hold semantically equal data
// (their hash labels, when both parse, must agree).
func EqualRevision(lhs *appsv1.ControllerRevision, rhs *appsv1.ControllerRevision) bool {
	if lhs == nil || rhs == nil {
		return lhs == rhs
	}
	lh, lok := hashOf(lhs)
	rh, rok := hashOf(rhs)
	if lok && rok && lh != rh {
		return false
	}
	return bytes.Equal(lhs.Data.Raw, rhs.Data.Raw) && apiequality.Semantic.DeepEqual(lhs.Data.Object, rhs.Data.Object)
}

func hashOf(cr *appsv1.ControllerRevision) (uint32, bool) {
	hs, ok := cr.Labels[ControllerRevisionHashLabel]
	if !ok {
		return 0, false
	}
	h, err := strconv.ParseInt(hs, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(h), true
}

// FindEqualRevisions returns the revisions equal to needle (EqualRevision), in their order.
func FindEqualRevisions(revisions []*appsv1.ControllerRevision, needle *appsv1.ControllerRevision) []*appsv1.ControllerRevision {
	var eq []*appsv1.ControllerRevision
	for i := range revisions {
		if EqualRevision(revisions[i], needle) {
			eq = append(eq, revisions[i])
		}
	}
	return eq
}

// NextRevision is one more than the greatest Revision of revisions, sorted (1 if there are none).
func NextRevision(revisions []*appsv1.ControllerRevision) int64 {
	if len(revisions) == 0 {
		return 1
	}
	return revisions[len(revisions)-1].Revision + 1
}

type byRevision []*appsv1.ControllerRevision

func (br byRevision) Len() int { return len(br) }

func (br byRevision) Less(i, j int) bool {
	if br[i].Revision == br[j].Revision {
		if br[j].CreationTimestamp.Equal(&br[i].CreationTimestamp) {
			return br[i].Name < br[j].Name
		}
		return br[j].CreationTimestamp.After(br[i].CreationTimestamp.Time)
	}
	return br[i].Revision < br[j].Revision
}

func (br byRevision) Swap(i, j int) { br[i], br[j] = br[j], br[i] }

// Index is where revisions are listed from: the reconcilers' informer index
// (*informer.Index), which keeps them decoded when the reconciler owns them.
type Index interface {
	Objects(gr schema.GroupResource, ns string, filter func(runtime.Object) bool) []runtime.Object
}

// Writer is what a History needs of the registry (*registry.Registry).
type Writer interface {
	Catalog() *kinds.Catalog
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Get(ctx context.Context, k *kinds.Kind, ns, name string, opts registry.ReadOptions) (runtime.Object, error)
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
}

var _ Writer = (*registry.Registry)(nil)

// History reads and writes the ControllerRevisions of a reconciler's objects (Kubernetes'
// history.Interface). The revisions it lists are shared with the index: copy one before
// changing it.
type History struct {
	ix    Index
	w     Writer
	kind  *kinds.Kind
	actor registry.Actor
	cause uint64
}

// New returns the history that lists revisions from ix and writes them through w as actor (a
// reconciler's name).
func New(ix Index, w Writer, actor string) (*History, error) {
	k, ok := w.Catalog().ByGroupResource(Resource)
	if !ok {
		return nil, errors.New("history: the catalog has no controllerrevisions")
	}
	return &History{ix: ix, w: w, kind: k, actor: registry.Reconciler(actor)}, nil
}

// WithCause returns a copy of h whose writes record cause, the sequence of the event they react
// to (the owner's spec change).
func (h *History) WithCause(cause uint64) *History {
	c := *h
	c.cause = cause
	return &c
}

func (h *History) req() registry.Request { return registry.Request{Actor: h.actor, Cause: h.cause} }

// ListControllerRevisions lists the revisions in parent's namespace that selector matches and
// that parent or no controller controls.
func (h *History) ListControllerRevisions(parent metav1.Object, selector labels.Selector) ([]*appsv1.ControllerRevision, error) {
	var owned []*appsv1.ControllerRevision
	for _, obj := range h.ix.Objects(Resource, parent.GetNamespace(), nil) {
		cr, ok := obj.(*appsv1.ControllerRevision)
		if !ok || !selector.Matches(labels.Set(cr.Labels)) {
			continue
		}
		if ref := metav1.GetControllerOfNoCopy(cr); ref == nil || ref.UID == parent.GetUID() {
			owned = append(owned, cr)
		}
	}
	return owned, nil
}

// CreateControllerRevision creates revision, controlled by parent, named after parent and the
// hash of its data and *collisionCount. If a revision of that name exists with the same data,
// it is returned; if its data differ, *collisionCount is incremented and the name hashed again.
// collisionCount must not be nil.
func (h *History) CreateControllerRevision(ctx context.Context, parent metav1.Object, revision *appsv1.ControllerRevision, collisionCount *int32) (*appsv1.ControllerRevision, error) {
	if collisionCount == nil {
		return nil, errors.New("history: collisionCount should not be nil")
	}
	clone := revision.DeepCopy()
	clone.Namespace = parent.GetNamespace()
	for {
		hash := HashControllerRevision(revision, collisionCount)
		clone.Name = ControllerRevisionName(parent.GetName(), hash)
		if clone.Labels == nil {
			clone.Labels = map[string]string{}
		}
		clone.Labels[ControllerRevisionHashLabel] = hash
		created, err := h.w.Create(ctx, h.kind, clone, h.req())
		if apierrors.IsAlreadyExists(err) {
			obj, err := h.w.Get(ctx, h.kind, clone.Namespace, clone.Name, registry.ReadOptions{})
			if err != nil {
				return nil, fmt.Errorf("history: reading revision %s: %w", clone.Name, err)
			}
			exists, ok := obj.(*appsv1.ControllerRevision)
			if !ok {
				return nil, fmt.Errorf("history: revision %s is a %T", clone.Name, obj)
			}
			if bytes.Equal(exists.Data.Raw, clone.Data.Raw) {
				return exists, nil
			}
			*collisionCount++
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("history: creating revision %s: %w", clone.Name, err)
		}
		return created.(*appsv1.ControllerRevision), nil
	}
}

// DeleteControllerRevision deletes revision (gone already is not an error).
func (h *History) DeleteControllerRevision(ctx context.Context, revision *appsv1.ControllerRevision) error {
	_, _, err := h.w.Delete(ctx, h.kind, revision.Namespace, revision.Name, metav1.DeleteOptions{}, h.req())
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("history: deleting revision %s: %w", revision.Name, err)
	}
	return nil
}

// UpdateControllerRevision sets revision's Revision to newRevision.
func (h *History) UpdateControllerRevision(ctx context.Context, revision *appsv1.ControllerRevision, newRevision int64) (*appsv1.ControllerRevision, error) {
	if revision.Revision == newRevision {
		return revision, nil
	}
	obj, err := h.w.Modify(ctx, h.kind, revision.Namespace, revision.Name, h.req(), registry.UpdateOptions{},
		func(cur runtime.Object) (runtime.Object, error) {
			cr, ok := cur.(*appsv1.ControllerRevision)
			if !ok {
				return nil, fmt.Errorf("history: revision %s is a %T", revision.Name, cur)
			}
			cr = cr.DeepCopy()
			cr.Revision = newRevision
			return cr, nil
		})
	if err != nil {
		return nil, fmt.Errorf("history: updating revision %s: %w", revision.Name, err)
	}
	return obj.(*appsv1.ControllerRevision), nil
}

// AdoptControllerRevision makes parent (of parentKind) the controller of revision, which must
// have none.
func (h *History) AdoptControllerRevision(ctx context.Context, parent metav1.Object, parentKind schema.GroupVersionKind, revision *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	if owner := metav1.GetControllerOfNoCopy(revision); owner != nil {
		return nil, fmt.Errorf("history: attempt to adopt revision owned by %v", owner)
	}
	obj, err := h.w.Modify(ctx, h.kind, revision.Namespace, revision.Name, h.req(), registry.UpdateOptions{},
		func(cur runtime.Object) (runtime.Object, error) {
			cr, ok := cur.(*appsv1.ControllerRevision)
			if !ok {
				return nil, fmt.Errorf("history: revision %s is a %T", revision.Name, cur)
			}
			if cr.UID != revision.UID {
				return nil, apierrors.NewConflict(Resource, revision.Name, errors.New("the revision was replaced"))
			}
			if owner := metav1.GetControllerOfNoCopy(cr); owner != nil {
				return nil, fmt.Errorf("history: attempt to adopt revision owned by %v", owner)
			}
			cr = cr.DeepCopy()
			cr.OwnerReferences = append(cr.OwnerReferences, *metav1.NewControllerRef(parent, parentKind))
			return cr, nil
		})
	if err != nil {
		return nil, fmt.Errorf("history: adopting revision %s: %w", revision.Name, err)
	}
	return obj.(*appsv1.ControllerRevision), nil
}

// ReleaseControllerRevision removes parent from revision's owners. A revision gone, or that
// parent does not own, is returned as nil with no error.
func (h *History) ReleaseControllerRevision(ctx context.Context, parent metav1.Object, revision *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	errNotOwned := errors.New("not owned")
	obj, err := h.w.Modify(ctx, h.kind, revision.Namespace, revision.Name, h.req(), registry.UpdateOptions{},
		func(cur runtime.Object) (runtime.Object, error) {
			cr, ok := cur.(*appsv1.ControllerRevision)
			if !ok {
				return nil, fmt.Errorf("history: revision %s is a %T", revision.Name, cur)
			}
			var refs []metav1.OwnerReference
			for _, r := range cr.OwnerReferences {
				if r.UID != parent.GetUID() {
					refs = append(refs, r)
				}
			}
			if len(refs) == len(cr.OwnerReferences) {
				return nil, errNotOwned
			}
			cr = cr.DeepCopy()
			cr.OwnerReferences = refs
			return cr, nil
		})
	if apierrors.IsNotFound(err) || errors.Is(err, errNotOwned) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history: releasing revision %s: %w", revision.Name, err)
	}
	return obj.(*appsv1.ControllerRevision), nil
}
