package builtin

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// node is core/v1 Node. Node agents register their node with its status, which Kubernetes'
// node strategy keeps on create.
func node() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "Node"), Resource: "nodes", Singular: "node", ShortNames: []string{"no"},
		Subresources: []string{"status", "proxy"},
		Strategy: kinds.Typed[*corev1.Node]{
			CreateWithStatus:     true,
			Default:              defaults.Node,
			Validate:             validation.Node,
			ValidateUpdate:       validation.NodeUpdate,
			ValidateStatusUpdate: validation.NodeStatusUpdate,
			Table:                printers.NodeTable,
			Fields: func(n *corev1.Node, s fields.Set) {
				s["spec.unschedulable"] = strconv.FormatBool(n.Spec.Unschedulable)
			},
		}.Strategy(),
	}
}
