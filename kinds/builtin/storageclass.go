package builtin

import (
	storagev1 "k8s.io/api/storage/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// storageClass is storage.k8s.io/v1 StorageClass. The cluster starts with one, `local`, the
// default (bootstrap).
func storageClass() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("storage.k8s.io", "v1", "StorageClass"), Resource: "storageclasses", Singular: "storageclass",
		ShortNames: []string{"sc"},
		Strategy: kinds.Typed[*storagev1.StorageClass]{
			Default:        defaults.StorageClass,
			Validate:       validation.StorageClass,
			ValidateUpdate: validation.StorageClassUpdate,
			Table:          printers.StorageClassTable,
		}.Strategy(),
	}
}
