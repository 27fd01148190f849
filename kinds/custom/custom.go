// Package custom builds, at run time, the kind of a custom resource from its definition (an
// apiextensions.k8s.io/v1 CustomResourceDefinition and one of its versions): its names and
// scope, and a strategy for unstructured objects made from the version's structural schema:
// pruning and defaulting from the schema, validation against it (kube-openapi's validator, as
// the apiextensions API server), the additionalPrinterColumns as Table columns (JSONPath), the
// status and scale subresources, the selectable fields, and a structured-merge-diff type
// converter for server-side apply. Such a kind goes through the same registry and API server
// as the built-in ones. It is pure: no log, no network.
package custom

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/jsonpath"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/validation"
)

// Kind returns the kind of version version of crd, with the strategy its definition describes.
// The version must have a schema (apiextensions.k8s.io/v1 requires one) that is structural.
func Kind(crd *apiextensionsv1.CustomResourceDefinition, version string) (*kinds.Kind, error) {
	var v *apiextensionsv1.CustomResourceDefinitionVersion
	for i := range crd.Spec.Versions {
		if crd.Spec.Versions[i].Name == version {
			v = &crd.Spec.Versions[i]
		}
	}
	if v == nil {
		return nil, fmt.Errorf("custom: %s has no version %q", crd.Name, version)
	}
	if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("custom: %s/%s has no schema", crd.Spec.Group, version)
	}
	gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: version, Kind: crd.Spec.Names.Kind}
	s, err := newSchema(gvk, v.Schema.OpenAPIV3Schema)
	if err != nil {
		return nil, err
	}
	k := &kinds.Kind{
		GroupVersionKind: gvk,
		Resource:         crd.Spec.Names.Plural,
		Singular:         crd.Spec.Names.Singular,
		ShortNames:       crd.Spec.Names.ShortNames,
		Categories:       crd.Spec.Names.Categories,
		Namespaced:       crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
		Unstructured:     true,
	}
	if k.Singular == "" {
		k.Singular = strings.ToLower(gvk.Kind)
	}
	st := &strategy{namespaced: k.Namespaced, schema: s}
	k.Strategy = kinds.Strategy{
		Default:        st.defaults,
		Validate:       st.validate,
		ValidateUpdate: st.validateUpdate,
		TypeConverter:  s.typeConverter,
	}
	if sub := v.Subresources; sub != nil && sub.Status != nil {
		k.Subresources = append(k.Subresources, "status")
		k.Strategy.ValidateStatusUpdate = st.validateUpdate
		// Kubernetes' status strategy of custom resources keeps the old metadata whole.
		k.Strategy.StatusResetsMetadata = []string{"labels", "annotations", "ownerReferences", "finalizers"}
	}
	if sub := v.Subresources; sub != nil && sub.Scale != nil {
		k.Subresources = append(k.Subresources, "scale")
		k.Strategy.Scale = scale(sub.Scale)
	}
	columns := v.AdditionalPrinterColumns
	if len(columns) == 0 {
		// What CustomResourceDefinition defaulting gives a version without columns.
		columns = []apiextensionsv1.CustomResourceColumnDefinition{{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"}}
	}
	if k.Strategy.Table, err = table(columns); err != nil {
		return nil, fmt.Errorf("custom: %s: %w", gvk, err)
	}
	if k.Strategy.Fields, err = selectableFields(v.SelectableFields); err != nil {
		return nil, fmt.Errorf("custom: %s: %w", gvk, err)
	}
	return k, nil
}

// strategy is what a custom resource does on the write path.
type strategy struct {
	namespaced bool
	schema     *crSchema
}

// defaults prunes the fields the schema does not know and sets the schema's defaults, as the
// apiextensions API server does when it decodes a custom resource.
func (st *strategy) defaults(obj runtime.Object) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u == nil {
		return
	}
	pruning.PruneWithOptions(u.Object, st.schema.structural, true, structuralschema.UnknownFieldPathOptions{})
	applyDefaults(u.Object, st.schema.structural)
}

func (st *strategy) validate(obj runtime.Object) field.ErrorList {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u == nil {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("validation: got a %T, want an unstructured object", obj))}
	}
	m, err := objectMeta(u)
	if err != nil {
		return field.ErrorList{field.Invalid(field.NewPath("metadata"), nil, err.Error())}
	}
	errs := validation.ObjectMeta(m, st.namespaced, apivalidation.NameIsDNSSubdomain)
	return append(errs, st.schema.validate(u)...)
}

func (st *strategy) validateUpdate(obj, old runtime.Object) field.ErrorList {
	u, ok1 := obj.(*unstructured.Unstructured)
	o, ok2 := old.(*unstructured.Unstructured)
	if !ok1 || !ok2 || u == nil || o == nil {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("validation: update of a %T by a %T", old, obj))}
	}
	m, err := objectMeta(u)
	if err != nil {
		return field.ErrorList{field.Invalid(field.NewPath("metadata"), nil, err.Error())}
	}
	om, err := objectMeta(o)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	errs := validation.ObjectMetaUpdate(m, om)
	return append(errs, st.schema.validate(u)...)
}

// objectMeta is the metadata of an unstructured object, typed.
func objectMeta(u *unstructured.Unstructured) (*metav1.ObjectMeta, error) {
	m := &metav1.ObjectMeta{}
	raw, ok := u.Object["metadata"].(map[string]any)
	if !ok {
		return m, nil
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, m); err != nil {
		return nil, err
	}
	return m, nil
}

// crSchema is one version's schema in the forms the strategy needs.
type crSchema struct {
	gvk           schema.GroupVersionKind
	structural    *structuralschema.Structural
	validator     *validate.SchemaValidator
	typeConverter *typeConverter
}

func newSchema(gvk schema.GroupVersionKind, v1 *apiextensionsv1.JSONSchemaProps) (*crSchema, error) {
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1, internal, nil); err != nil {
		return nil, fmt.Errorf("custom: %s: %w", gvk, err)
	}
	ss, err := structuralschema.NewStructural(internal)
	if err != nil {
		return nil, fmt.Errorf("custom: %s: %w", gvk, err)
	}
	if errs := structuralschema.ValidateStructural(field.NewPath("openAPIV3Schema"), ss); len(errs) > 0 {
		return nil, fmt.Errorf("custom: %s: the schema is not structural: %w", gvk, errs.ToAggregate())
	}
	openapi := ss.ToKubeOpenAPI()
	tc, err := newTypeConverter(gvk, ss)
	if err != nil {
		return nil, fmt.Errorf("custom: %s: %w", gvk, err)
	}
	return &crSchema{
		gvk:           gvk,
		structural:    ss,
		validator:     validate.NewSchemaValidator(openapi, nil, "", strfmt.Default),
		typeConverter: tc,
	}, nil
}

// validate checks u against the schema: types, formats, enums, bounds, required fields, and
// the uniqueness of list-type set and map items.
func (s *crSchema) validate(u *unstructured.Unstructured) field.ErrorList {
	var errs field.ErrorList
	if u.GetAPIVersion() != s.gvk.GroupVersion().String() {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), u.GetAPIVersion(), "must be "+s.gvk.GroupVersion().String()))
	}
	if u.GetKind() != s.gvk.Kind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), u.GetKind(), "must be "+s.gvk.Kind))
	}
	if r := s.validator.Validate(u.Object); !r.IsValid() {
		errs = append(errs, resultErrors(r)...)
	}
	return append(errs, listtype.ValidateListSetsAndMaps(nil, s.structural, u.Object)...)
}

// scale reads and sets replicas at the paths of a scale subresource, as Kubernetes'
// scaleFromCustomResource: a missing value is 0.
func scale(sc *apiextensionsv1.CustomResourceSubresourceScale) *kinds.Scale {
	path := func(p string) []string { return strings.Split(strings.TrimPrefix(p, "."), ".") }
	spec, status := path(sc.SpecReplicasPath), path(sc.StatusReplicasPath)
	var selector []string
	if sc.LabelSelectorPath != nil && *sc.LabelSelectorPath != "" {
		selector = path(*sc.LabelSelectorPath)
	}
	return &kinds.Scale{
		Get: func(obj runtime.Object) (int32, int32, string, error) {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return 0, 0, "", fmt.Errorf("custom: %T has no scale", obj)
			}
			want, _, err := unstructured.NestedInt64(u.Object, spec...)
			if err != nil {
				return 0, 0, "", err
			}
			have, _, err := unstructured.NestedInt64(u.Object, status...)
			if err != nil {
				return 0, 0, "", err
			}
			var sel string
			if selector != nil {
				if sel, _, err = unstructured.NestedString(u.Object, selector...); err != nil {
					return 0, 0, "", err
				}
			}
			return int32(want), int32(have), sel, nil
		},
		Set: func(obj runtime.Object, n int32) error {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return fmt.Errorf("custom: %T has no scale", obj)
			}
			return unstructured.SetNestedField(u.Object, int64(n), spec...)
		},
	}
}

// selectableFields returns the Fields of a version's selectable fields: each JSONPath, without
// its leading dot, selects on the value it finds ("" when absent), as Kubernetes does.
func selectableFields(sfs []apiextensionsv1.SelectableField) (func(runtime.Object, fields.Set), error) {
	if len(sfs) == 0 {
		return nil, nil
	}
	type selectable struct {
		label string
		path  []string
	}
	var list []selectable
	for _, sf := range sfs {
		if !strings.HasPrefix(sf.JSONPath, ".") {
			return nil, errors.New("a selectable field's jsonPath must start with a dot: " + sf.JSONPath)
		}
		label := strings.TrimPrefix(sf.JSONPath, ".")
		list = append(list, selectable{label: label, path: strings.Split(label, ".")})
	}
	return func(obj runtime.Object, set fields.Set) {
		u, _ := obj.(*unstructured.Unstructured) // a kind's objects are unstructured
		for _, sf := range list {
			set[sf.label] = ""
			if u == nil {
				continue
			}
			if v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, sf.path...); ok && v != nil {
				set[sf.label] = fmt.Sprint(v)
			}
		}
	}, nil
}

// parseJSONPath parses a column's JSONPath as the apiextensions table convertor does.
func parseJSONPath(name, path string) (*jsonpath.JSONPath, error) {
	p := jsonpath.New(name)
	if err := p.Parse(fmt.Sprintf("{%s}", path)); err != nil {
		return nil, fmt.Errorf("unrecognized column definition %q", path)
	}
	p.AllowMissingKeys(true)
	return p, nil
}
