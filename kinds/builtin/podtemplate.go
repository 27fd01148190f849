package builtin

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/validation"
)

// podTemplate is core/v1 PodTemplate: a pod template stored on its own, as Kubernetes serves
// it (pkg/registry/core/podtemplate). The whole kind is this file: defaulting and validation
// of its template as any pod template's, and the columns of Kubernetes' printPodTemplate.
func podTemplate() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "PodTemplate"), Resource: "podtemplates", Singular: "podtemplate",
		Namespaced: true,
		Strategy: kinds.Typed[*corev1.PodTemplate]{
			Default: func(t *corev1.PodTemplate) { defaults.PodTemplateSpec(&t.Template) },
			Validate: func(t *corev1.PodTemplate) field.ErrorList {
				errs := validation.ObjectMeta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
				return append(errs, validation.PodTemplateSpec(&t.Template, field.NewPath("template"))...)
			},
			ValidateUpdate: func(t, old *corev1.PodTemplate) field.ErrorList {
				errs := validation.ObjectMetaUpdate(&t.ObjectMeta, &old.ObjectMeta)
				return append(errs, validation.PodTemplateSpec(&t.Template, field.NewPath("template"))...)
			},
			Table: &kinds.Table{Columns: podTemplateColumns, Row: kinds.Cells(podTemplateRow)},
		}.Strategy(),
	}
}

var podTemplateColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	{Name: "Containers", Type: "string", Description: "Names of each container in the template."},
	{Name: "Images", Type: "string", Description: "Images referenced by each container in the template."},
	{Name: "Pod Labels", Type: "string", Description: "The labels for the pod template."},
}

func podTemplateRow(t *corev1.PodTemplate) []any {
	names := make([]string, len(t.Template.Spec.Containers))
	images := make([]string, len(t.Template.Spec.Containers))
	for i, c := range t.Template.Spec.Containers {
		names[i], images[i] = c.Name, c.Image
	}
	return []any{t.Name, strings.Join(names, ","), strings.Join(images, ","), labels.FormatLabels(t.Template.Labels)}
}
