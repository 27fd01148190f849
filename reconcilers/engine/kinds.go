package engine

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// SetupOf is the Setup of a reconciler made by newReconciler(e, cfg), what most reconcilers'
// Setup(cfg) returns.
func SetupOf[C, R any](newReconciler func(*Engine, C) (R, error), cfg C) Setup {
	return func(_ context.Context, e *Engine) error {
		_, err := newReconciler(e, cfg)
		return err
	}
}

// Kinds returns the registry's kinds of the resources grs, in their order; an error if the
// engine has no registry or the catalog lacks one of them.
func (e *Engine) Kinds(grs ...schema.GroupResource) ([]*kinds.Kind, error) {
	if e.opts.Registry == nil {
		return nil, errors.New("the engine has no registry")
	}
	cat := e.opts.Registry.Catalog()
	out := make([]*kinds.Kind, len(grs))
	for i, gr := range grs {
		k, ok := cat.ByGroupResource(gr)
		if !ok {
			return nil, fmt.Errorf("the catalog has no %s", gr)
		}
		out[i] = k
	}
	return out, nil
}

// EventRecorder returns the recorder of a reconciler's Events as kube-controller-manager's
// controllers record them: written as registry.Reconciler(actor), from component on this
// host (Host), with client-go's spam filter. It runs beside the reconcilers (Recorder).
func (e *Engine) EventRecorder(actor, component string) (*recorder.Recorder, error) {
	return e.Recorder(recorder.Config{Actor: registry.Reconciler(actor),
		Source: corev1.EventSource{Component: component, Host: e.Host()}, SpamFilter: true})
}
