package builtin

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// serviceAccount is core/v1 ServiceAccount.
func serviceAccount() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "ServiceAccount"), Resource: "serviceaccounts", Singular: "serviceaccount", ShortNames: []string{"sa"},
		Namespaced: true, Subresources: []string{"token"},
		Strategy: kinds.Typed[*corev1.ServiceAccount]{
			Validate:       validation.ServiceAccount,
			ValidateUpdate: validation.MetadataUpdate[*corev1.ServiceAccount],
			Table:          printers.ServiceAccountTable,
		}.Strategy(),
	}
}
