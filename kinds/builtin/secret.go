package builtin

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// secret is core/v1 Secret.
func secret() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "Secret"), Resource: "secrets", Singular: "secret", Namespaced: true,
		SecretFields: []string{"data", "stringData"},
		Strategy: kinds.Typed[*corev1.Secret]{
			Default:        defaults.Secret,
			Validate:       validation.Secret,
			ValidateUpdate: validation.SecretUpdate,
			Table:          printers.SecretTable,
			Fields:         func(sec *corev1.Secret, s fields.Set) { s["type"] = string(sec.Type) },
		}.Strategy(),
	}
}
