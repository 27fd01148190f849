package nodeagent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/nodeagent/podworker"
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
