package nodeagent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/nodeagent/podworker"
	"github.com/logplane/logplane/projections"
)

var _ podworker.Resolver = resolver{}

// resolver gives the pod worker ConfigMaps and Secrets from the projection.
type resolver struct{ a *Agent }

func (r resolver) ConfigMap(_ context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	return get[*corev1.ConfigMap](r.a, r.a.kinds.configMap, namespace, name)
}

func (r resolver) Secret(_ context.Context, namespace, name string) (*corev1.Secret, error) {
	return get[*corev1.Secret](r.a, r.a.kinds.secret, namespace, name)
}

func get[T any](a *Agent, k *kinds.Kind, namespace, name string) (T, error) {
	var zero T
	o, ok := a.store.Get(eventlog.Key{Group: k.Group, Resource: k.Resource, Namespace: namespace, Name: name})
	if !ok {
		return zero, fmt.Errorf("nodeagent: %s %q: %w", k.Singular, name, podworker.ErrNotFound)
	}
	obj, err := o.Decode()
	if err != nil {
		return zero, fmt.Errorf("nodeagent: %w", err)
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("nodeagent: %s %q decodes to %T", k.Singular, name, obj)
	}
	return t, nil
}

var _ podworker.ServiceResolver = resolver{}

// Services gives the pod worker the Services of a namespace, for the containers' service
// environment variables.
func (r resolver) Services(_ context.Context, namespace string) ([]*corev1.Service, error) {
	objs, _ := r.a.store.List(projections.Query{Resource: schema.GroupResource{Resource: "services"}, Namespace: namespace})
	out := make([]*corev1.Service, 0, len(objs))
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			return nil, fmt.Errorf("nodeagent: %w", err)
		}
		if s, ok := obj.(*corev1.Service); ok {
			out = append(out, s)
		}
	}
	return out, nil
}
