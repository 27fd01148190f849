package builtin

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// daemonSet is apps/v1 DaemonSet. The server keeps its template generation, as Kubernetes'
// daemon set strategy keeps spec.templateGeneration and its v1 conversion shows it in the
// deprecated.daemonset.template.generation annotation: 1 on create, one more at each change of
// spec.template, never set by clients. The DaemonSet reconciler labels pods with it
// (pod-template-generation).
func daemonSet() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("apps", "v1", "DaemonSet"), Resource: "daemonsets", Singular: "daemonset", ShortNames: []string{"ds"},
		Categories: all, Namespaced: true, Subresources: []string{"status"},
		Strategy: kinds.Typed[*appsv1.DaemonSet]{
			PrepareForCreate: func(ds *appsv1.DaemonSet) {
				if templateGeneration(ds) < 1 {
					setTemplateGeneration(ds, 1)
				}
			},
			PrepareForUpdate: func(ds, old *appsv1.DaemonSet, sub string) {
				gen := templateGeneration(old)
				if sub == "" && !apiequality.Semantic.DeepEqual(ds.Spec.Template, old.Spec.Template) {
					gen++
				}
				if gen > 0 {
					setTemplateGeneration(ds, gen)
				} else {
					delete(ds.Annotations, appsv1.DeprecatedTemplateGeneration)
				}
			},
			Default:              defaults.DaemonSet,
			Validate:             validation.DaemonSet,
			ValidateUpdate:       validation.DaemonSetUpdate,
			ValidateStatusUpdate: validation.DaemonSetStatusUpdate,
			Table:                printers.DaemonSetTable,
		}.Strategy(),
	}
}

// templateGeneration is a daemon set's deprecated.daemonset.template.generation, 0 if it has
// none (or one that does not parse, which Kubernetes' conversion also reads as 0).
func templateGeneration(ds *appsv1.DaemonSet) int64 {
	g, err := strconv.ParseInt(ds.Annotations[appsv1.DeprecatedTemplateGeneration], 10, 64)
	if err != nil {
		return 0
	}
	return g
}

func setTemplateGeneration(ds *appsv1.DaemonSet, g int64) {
	if ds.Annotations == nil {
		ds.Annotations = map[string]string{}
	}
	ds.Annotations[appsv1.DeprecatedTemplateGeneration] = strconv.FormatInt(g, 10)
}
