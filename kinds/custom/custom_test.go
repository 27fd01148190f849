package custom_test

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/logplane/logplane/kinds/custom"
)

func crd(schema *apiextensionsv1.JSONSchemaProps) *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "gadgets.example.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "example.io", Scope: apiextensionsv1.ClusterScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "gadgets", Kind: "Gadget"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1",
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: schema}}},
		},
	}
}

// TestKindFromDefinition: a definition makes a cluster-scoped unstructured kind whose default
// Table is NAME AGE; a version it lacks, or a schema that is not structural, is refused.
func TestKindFromDefinition(t *testing.T) {
	k, err := custom.Kind(crd(&apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"spec": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"n": {Type: "integer"}}}}}), "v1")
	if err != nil {
		t.Fatal(err)
	}
	if k.Namespaced || !k.Unstructured || k.Singular != "gadget" || k.Resource != "gadgets" || len(k.Subresources) != 0 {
		t.Errorf("kind %+v", k)
	}
	var cols []string
	for _, c := range k.Strategy.Table.Columns {
		cols = append(cols, c.Name)
	}
	if strings.Join(cols, " ") != "Name Age" {
		t.Errorf("columns %v", cols)
	}
	u := k.New().(*unstructured.Unstructured)
	u.SetName("g")
	u.Object["spec"] = map[string]any{"n": "three"}
	if errs := k.Validate(u); len(errs) != 1 || !strings.Contains(errs[0].Error(), `spec.n: Invalid value: "string": spec.n in body must be of type integer`) {
		t.Errorf("errors %v", errs)
	}
	if _, err := custom.Kind(crd(&apiextensionsv1.JSONSchemaProps{Type: "object"}), "v2"); err == nil {
		t.Error("a version the definition lacks: no error")
	}
	if _, err := custom.Kind(crd(&apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"spec": {Properties: map[string]apiextensionsv1.JSONSchemaProps{"n": {Type: "integer"}}}}}), "v1"); err == nil || !strings.Contains(err.Error(), "not structural") {
		t.Errorf("a schema without a type: %v", err)
	}
}
