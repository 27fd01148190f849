package builtin

import (
	appsv1 "k8s.io/api/apps/v1"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// controllerRevision is apps/v1 ControllerRevision.
func controllerRevision() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("apps", "v1", "ControllerRevision"), Resource: "controllerrevisions", Singular: "controllerrevision",
		Namespaced: true,
		Strategy: kinds.Typed[*appsv1.ControllerRevision]{
			Validate:       validation.ControllerRevision,
			ValidateUpdate: validation.ControllerRevisionUpdate,
			Table:          printers.ControllerRevisionTable,
		}.Strategy(),
	}
}
