package registry

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	genericrequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// attributes are the admission attributes of one write (k8s.io/apiserver's record), keeping
// the audit annotations that plug-ins add, which go into the write's event.
type attributes struct {
	admission.Attributes
	mu          sync.Mutex
	annotations map[string]string
}

func (a *attributes) AddAnnotation(key, value string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.annotations == nil {
		a.annotations = map[string]string{}
	}
	if old, ok := a.annotations[key]; ok && old != value {
		return fmt.Errorf("admission annotations are not allowed to be overwritten, key:%q, old value: %v, new value: %v", key, old, value)
	}
	a.annotations[key] = value
	return nil
}

func (a *attributes) AddAnnotationWithLevel(key, value string, _ auditinternal.Level) error {
	return a.AddAnnotation(key, value)
}

// record copies the annotations into the write's event.
func (a *attributes) record(ev *eventv1.ObjectChanged) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.annotations) > 0 {
		ev.Annotations = maps.Clone(a.annotations)
	}
}

// userOf is who a write is admitted for: the authenticated user the API server put in ctx, or
// else the in-process writer's actor (a reconciler, a node agent, logplane itself).
func userOf(ctx context.Context, req Request) user.Info {
	if u, ok := genericrequest.UserFrom(ctx); ok {
		return u
	}
	switch req.Actor.Kind {
	case eventv1.ActorKind_ACTOR_KIND_NODE:
		return &user.DefaultInfo{Name: "system:node:" + req.Actor.Name, Groups: []string{user.NodesGroup, user.AllAuthenticated}}
	case eventv1.ActorKind_ACTOR_KIND_RECONCILER, eventv1.ActorKind_ACTOR_KIND_SYSTEM:
		return &user.DefaultInfo{Name: "system:logplane:" + req.Actor.Name, Groups: []string{user.AllAuthenticated}}
	}
	return &user.DefaultInfo{Name: req.Actor.Name, Groups: []string{user.AllAuthenticated}}
}

// admitMutating runs the mutating admission plug-ins on obj (changed in place) and returns the
// attributes for the validating ones; nil when the registry has no admission or the write is
// not admitted (only the main resource and the subresources that change a pod's spec are).
func (r *Registry) admitMutating(ctx context.Context, k *kinds.Kind, obj, old runtime.Object, op admission.Operation, sub string, req Request) (*attributes, error) {
	if r.admission == nil {
		return nil, nil
	}
	m, _ := meta.Accessor(obj) // checked by the caller
	a := &attributes{Attributes: admission.NewAttributesRecord(obj, old, k.GroupVersionKind, m.GetNamespace(), m.GetName(),
		k.GroupVersionResource(), sub, op, nil, req.DryRun, userOf(ctx, req))}
	if mi, ok := r.admission.(admission.MutationInterface); ok && mi.Handles(op) {
		if err := mi.Admit(ctx, a, r.objectInterfaces); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// admitValidating runs the validating admission plug-ins.
func (r *Registry) admitValidating(ctx context.Context, a *attributes) error {
	if a == nil {
		return nil
	}
	if vi, ok := r.admission.(admission.ValidationInterface); ok && vi.Handles(a.GetOperation()) {
		return vi.Validate(ctx, a, r.objectInterfaces)
	}
	return nil
}
