package custom

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/kube-openapi/pkg/schemaconv"
	"k8s.io/kube-openapi/pkg/validation/errors"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/validate"
	smdschema "sigs.k8s.io/structured-merge-diff/v6/schema"
	"sigs.k8s.io/structured-merge-diff/v6/typed"

	"github.com/logplane/logplane/kinds"
)

// applyDefaults sets the defaults of schema s in x, deep-copied: the apiextensions API server's
// structural defaulting (pkg/apiserver/schema/defaulting, Default), ported because that package
// also brings in the CEL validation of defaults.
func applyDefaults(x any, s *structuralschema.Structural) {
	if s == nil {
		return
	}
	nonNullableNull := func(v any, s *structuralschema.Structural) bool {
		return v == nil && s != nil && !s.Generic.Nullable
	}
	switch x := x.(type) {
	case map[string]any:
		for k, prop := range s.Properties {
			if prop.Default.Object == nil {
				continue
			}
			if _, found := x[k]; !found || nonNullableNull(x[k], &prop) {
				x[k] = runtime.DeepCopyJSONValue(prop.Default.Object)
			}
		}
		for k := range x {
			if prop, found := s.Properties[k]; found {
				applyDefaults(x[k], &prop)
			} else if s.AdditionalProperties != nil {
				if nonNullableNull(x[k], s.AdditionalProperties.Structural) {
					x[k] = runtime.DeepCopyJSONValue(s.AdditionalProperties.Structural.Default.Object)
				}
				applyDefaults(x[k], s.AdditionalProperties.Structural)
			}
		}
	case []any:
		for i := range x {
			if nonNullableNull(x[i], s.Items) {
				x[i] = runtime.DeepCopyJSONValue(s.Items.Default.Object)
			}
			applyDefaults(x[i], s.Items)
		}
	}
}

// resultErrors turns the errors of kube-openapi's validator into field errors, as the
// apiextensions API server does (kubeOpenAPIResultToFieldErrors).
func resultErrors(result *validate.Result) field.ErrorList {
	var errs field.ErrorList
	for _, err := range result.Errors {
		verr, ok := err.(*errors.Validation)
		if !ok {
			errs = append(errs, field.Invalid(nil, "", err.Error()))
			continue
		}
		var path *field.Path
		if len(verr.Name) > 0 && verr.Name != "." {
			path = path.Child(strings.TrimPrefix(verr.Name, "."))
		}
		value := any("")
		if verr.Value != nil {
			value = verr.Value
		}
		intOf := func(v any) int {
			if i, ok := v.(int64); ok {
				return int(i)
			}
			return -1
		}
		switch verr.Code() {
		case errors.RequiredFailCode:
			errs = append(errs, field.Required(path, ""))
		case errors.EnumFailCode:
			var values []string
			for _, v := range verr.Values {
				if s, ok := v.(string); ok {
					values = append(values, s)
				} else {
					b, _ := json.Marshal(v) // a JSON value from a schema always marshals
					values = append(values, string(b))
				}
			}
			errs = append(errs, field.NotSupported(path, verr.Value, values))
		case errors.TooLongFailCode:
			errs = append(errs, field.TooLong(path, "", intOf(verr.Valid)))
		case errors.MaxItemsFailCode, errors.TooManyPropertiesCode:
			errs = append(errs, field.TooMany(path, intOf(verr.Value), intOf(verr.Valid)))
		case errors.InvalidTypeCode:
			errs = append(errs, field.TypeInvalid(path, value, verr.Error()))
		default:
			errs = append(errs, field.Invalid(path, value, verr.Error()))
		}
	}
	return errs
}

// objectMetaType is the structured-merge-diff name of ObjectMeta in the built-in schemas.
const objectMetaType = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

// builtinSMD is the structured-merge-diff schema of the built-in types, whose ObjectMeta (and
// what it refers to) a custom resource's metadata is.
var builtinSMD = sync.OnceValues(func() (*smdschema.Schema, error) {
	tv, err := applyconfigurations.NewTypeConverter(kinds.Scheme).ObjectToTyped(&unstructuredConfigMap)
	if err != nil {
		return nil, err
	}
	return tv.Schema(), nil
})

// unstructuredConfigMap is any built-in object, to reach the built-in schema.
var unstructuredConfigMap = unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}

// typeConverter describes the objects of a custom resource for server-side apply: the
// version's schema converted to structured-merge-diff (list and map types, unknown fields kept
// where the schema preserves them), with metadata typed as ObjectMeta, as the apiextensions API
// server's type converter is.
type typeConverter struct {
	name   string
	parser *typed.Parser
}

var _ managedfields.TypeConverter = (*typeConverter)(nil)

func newTypeConverter(gvk schema.GroupVersionKind, ss *structuralschema.Structural) (*typeConverter, error) {
	root := ss.ToKubeOpenAPI()
	if root.Properties == nil {
		root.Properties = map[string]spec.Schema{}
	}
	root.Properties["apiVersion"] = *spec.StringProperty()
	root.Properties["kind"] = *spec.StringProperty()
	root.Properties["metadata"] = *spec.RefSchema("#/definitions/" + objectMetaType)
	name := fmt.Sprintf("%s.%s.%s", gvk.Group, gvk.Version, gvk.Kind)
	cr, err := schemaconv.ToSchemaFromOpenAPI(map[string]*spec.Schema{name: root}, false)
	if err != nil {
		return nil, err
	}
	builtin, err := builtinSMD()
	if err != nil {
		return nil, err
	}
	// The parser is built in place: a Schema holds a sync.Once and must not be copied.
	parser := &typed.Parser{}
	parser.Schema.Types = append([]smdschema.TypeDef(nil), cr.Types...)
	have := map[string]bool{}
	for _, t := range parser.Schema.Types {
		have[t.Name] = true
	}
	for _, t := range builtin.Types {
		if !have[t.Name] {
			parser.Schema.Types = append(parser.Schema.Types, t)
		}
	}
	return &typeConverter{name: name, parser: parser}, nil
}

// ObjectToTyped types an unstructured custom resource.
func (c *typeConverter) ObjectToTyped(obj runtime.Object, opts ...typed.ValidationOptions) (*typed.TypedValue, error) {
	u, ok := obj.(runtime.Unstructured)
	if !ok {
		return nil, fmt.Errorf("custom: %T is not unstructured", obj)
	}
	return c.parser.Type(c.name).FromUnstructured(u.UnstructuredContent(), opts...)
}

// TypedToObject is the unstructured object of a typed value.
func (c *typeConverter) TypedToObject(v *typed.TypedValue) (runtime.Object, error) {
	m, ok := v.AsValue().Unstructured().(map[string]any)
	if !ok {
		return nil, fmt.Errorf("custom: a %s is not an object", c.name)
	}
	return &unstructured.Unstructured{Object: m}, nil
}
