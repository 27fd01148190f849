package builtin

import (
	appsv1 "k8s.io/api/apps/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// deployment is apps/v1 Deployment.
func deployment() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("apps", "v1", "Deployment"), Resource: "deployments", Singular: "deployment", ShortNames: []string{"deploy"},
		Categories: all, Namespaced: true, Subresources: []string{"status", "scale"},
		Strategy: kinds.Typed[*appsv1.Deployment]{
			StatusResetsMetadata: []string{"labels"},
			Default:              defaults.Deployment,
			Validate:             validation.Deployment,
			ValidateUpdate:       validation.DeploymentUpdate,
			ValidateStatusUpdate: validation.DeploymentStatusUpdate,
			Table:                printers.DeploymentTable,
			Scale: func(d *appsv1.Deployment) (*int32, int32, string) {
				return d.Spec.Replicas, d.Status.Replicas, selectorString(d.Spec.Selector)
			},
			SetReplicas: func(d *appsv1.Deployment, n int32) { d.Spec.Replicas = &n },
		}.Strategy(),
	}
}
