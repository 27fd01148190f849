package builtin

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// configMap is core/v1 ConfigMap.
func configMap() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "ConfigMap"), Resource: "configmaps", Singular: "configmap", ShortNames: []string{"cm"},
		Namespaced: true,
		Strategy: kinds.Typed[*corev1.ConfigMap]{
			Validate:       validation.ConfigMap,
			ValidateUpdate: validation.ConfigMapUpdate,
			Table:          printers.ConfigMapTable,
		}.Strategy(),
	}
}
