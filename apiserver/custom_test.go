package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/kinds/custom"
)

func jsonValue(s string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(s)} }

// widgets is the definition of a custom resource with defaults, an enum, a list-map, a status
// and a scale subresource, printer columns and a selectable field.
func widgets() *apiextensionsv1.CustomResourceDefinition {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	integer := apiextensionsv1.JSONSchemaProps{Type: "integer"}
	zero := 0.0
	selector := ".status.selector"
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.example.logplane.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "example.logplane.io",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ShortNames: []string{"wd"}},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {Type: "object", Required: []string{"size"}, Properties: map[string]apiextensionsv1.JSONSchemaProps{
							"size":     {Type: "string", Enum: []apiextensionsv1.JSON{*jsonValue(`"small"`), *jsonValue(`"large"`)}},
							"replicas": {Type: "integer", Minimum: &zero, Default: jsonValue("1")},
							"color":    {Type: "string", Default: jsonValue(`"blue"`)},
							"tags":     {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &str}, XListType: ptr.To("set")},
							"ports": {Type: "array", XListType: ptr.To("map"), XListMapKeys: []string{"name"}, Items: &apiextensionsv1.JSONSchemaPropsOrArray{
								Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", Required: []string{"name"},
									Properties: map[string]apiextensionsv1.JSONSchemaProps{"name": str, "port": integer}}}},
						}},
						"status": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
							"replicas": integer, "phase": str, "selector": str,
						}},
					},
				}},
				Subresources: &apiextensionsv1.CustomResourceSubresources{
					Status: &apiextensionsv1.CustomResourceSubresourceStatus{},
					Scale:  &apiextensionsv1.CustomResourceSubresourceScale{SpecReplicasPath: ".spec.replicas", StatusReplicasPath: ".status.replicas", LabelSelectorPath: &selector},
				},
				AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{
					{Name: "Size", Type: "string", JSONPath: ".spec.size"},
					{Name: "Replicas", Type: "integer", JSONPath: ".spec.replicas"},
					{Name: "Phase", Type: "string", JSONPath: ".status.phase"},
					{Name: "Color", Type: "string", JSONPath: ".spec.color", Priority: 1},
					{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
				},
				SelectableFields: []apiextensionsv1.SelectableField{{JSONPath: ".spec.color"}},
			}},
		},
	}
}

// TestCustomResourceKind: a kind built at run time from a CustomResourceDefinition's schema,
// added to the catalog of a real API server, is served by the same generic code as the
// built-in kinds: create (pruned, defaulted, validated against the schema), get, list with a
// field selector on a selectable field, watch, merge and JSON patch, server-side apply
// (structured-merge-diff from the schema), the status and scale subresources, Tables with the
// definition's columns, and kubectl.
func TestCustomResourceKind(t *testing.T) {
	needKubectl(t)
	k, err := custom.Kind(widgets(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	catalog := builtin.Catalog()
	if err := catalog.Add(k); err != nil {
		t.Fatal(err)
	}
	s := apiservertest.Start(t, apiservertest.Options{Configure: func(c *apiserver.Config) { c.Catalog = catalog }})
	ctx := t.Context()
	gvr := schema.GroupVersionResource{Group: "example.logplane.io", Version: "v1", Resource: "widgets"}
	widgets := dynamic.NewForConfigOrDie(s.Config).Resource(gvr).Namespace("default")
	widget := func(name string, spec map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "example.logplane.io/v1", "kind": "Widget",
			"metadata": map[string]any{"name": name}, "spec": spec,
			"status": map[string]any{"phase": "Forged"}, // not settable on create
		}}
	}

	// Create: unknown fields pruned, defaults from the schema, the status cleared.
	w1, err := widgets.Create(ctx, widget("w1", map[string]any{"size": "small", "unknown": "x"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec, _, _ := unstructured.NestedMap(w1.Object, "spec")
	if spec["replicas"] != int64(1) || spec["color"] != "blue" || spec["unknown"] != nil || w1.Object["status"] != nil ||
		w1.GetGeneration() != 1 || w1.GetUID() == "" || w1.GetResourceVersion() == "" {
		t.Fatalf("created %v", w1.Object)
	}
	if _, err := widgets.Create(ctx, widget("w2", map[string]any{"size": "large", "color": "red"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Validation against the schema: 422 with the apiextensions API server's messages.
	_, err = widgets.Create(ctx, widget("bad", map[string]any{"size": "huge", "replicas": -1, "tags": []any{"a", "a"}}), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("invalid widget: %v, want 422", err)
	}
	for _, want := range []string{`spec.size: Unsupported value: "huge": supported values: "small", "large"`,
		"spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0", `spec.tags[1]: Duplicate value: "a"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("invalid widget: %v\nlacks %q", err, want)
		}
	}
	if _, err = widgets.Create(ctx, widget("bad", map[string]any{}), metav1.CreateOptions{}); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "spec.size: Required value") {
		t.Fatalf("widget without a size: %v", err)
	}

	// Get, list, and a field selector on the selectable field.
	got, err := widgets.Get(ctx, "w1", metav1.GetOptions{})
	if err != nil || got.GetUID() != w1.GetUID() {
		t.Fatalf("get: %v %v", err, got)
	}
	list, err := widgets.List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("list: %v %v", err, list)
	}
	red, err := widgets.List(ctx, metav1.ListOptions{FieldSelector: "spec.color=red"})
	if err != nil || len(red.Items) != 1 || red.Items[0].GetName() != "w2" {
		t.Fatalf("list spec.color=red: %v %v", err, red)
	}
	if _, err := widgets.List(ctx, metav1.ListOptions{FieldSelector: "spec.size=small"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("a field that is not selectable: %v, want 400", err)
	}

	// Watch, then merge patch: the spec changes, the generation counts it.
	wi, err := widgets.Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
	if err != nil {
		t.Fatal(err)
	}
	defer wi.Stop()
	patched, err := widgets.Patch(ctx, "w1", types.MergePatchType, []byte(`{"spec":{"color":"green"}}`), metav1.PatchOptions{})
	if err != nil || patched.GetGeneration() != 2 {
		t.Fatalf("merge patch: %v %v", err, patched)
	}
	ev := <-wi.ResultChan()
	if ev.Type != watch.Modified || ev.Object.(*unstructured.Unstructured).GetName() != "w1" {
		t.Fatalf("watch: %v %v", ev.Type, ev.Object)
	}
	if color, _, _ := unstructured.NestedString(ev.Object.(*unstructured.Unstructured).Object, "spec", "color"); color != "green" {
		t.Fatalf("watched color %q", color)
	}
	// JSON patch, and strategic merge patch refused (415) as on Kubernetes.
	patched, err = widgets.Patch(ctx, "w1", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/size","value":"large"}]`), metav1.PatchOptions{})
	if size, _, _ := unstructured.NestedString(patched.Object, "spec", "size"); err != nil || size != "large" {
		t.Fatalf("json patch: %v %v", err, patched)
	}
	_, err = widgets.Patch(ctx, "w1", types.StrategicMergePatchType, []byte(`{"spec":{"color":"red"}}`), metav1.PatchOptions{})
	if se, ok := err.(apierrors.APIStatus); !ok || se.Status().Code != http.StatusUnsupportedMediaType {
		t.Fatalf("strategic merge patch: %v, want 415", err)
	}

	// Server-side apply: the list-map merges by key; the manager owns what it applied.
	apply := func(manager, body string) *unstructured.Unstructured {
		t.Helper()
		out, err := widgets.Patch(ctx, "w1", types.ApplyPatchType, []byte(body), metav1.PatchOptions{FieldManager: manager})
		if err != nil {
			t.Fatalf("apply by %s: %v", manager, err)
		}
		return out
	}
	apply("alice", `{"apiVersion":"example.logplane.io/v1","kind":"Widget","metadata":{"name":"w1"},"spec":{"size":"large","ports":[{"name":"http","port":80}]}}`)
	applied := apply("bob", `{"apiVersion":"example.logplane.io/v1","kind":"Widget","metadata":{"name":"w1"},"spec":{"ports":[{"name":"metrics","port":9090}]}}`)
	ports, _, _ := unstructured.NestedSlice(applied.Object, "spec", "ports")
	if len(ports) != 2 {
		t.Fatalf("ports after two managers applied: %v", ports)
	}
	managers := map[string]bool{}
	for _, mf := range applied.GetManagedFields() {
		if mf.Operation == metav1.ManagedFieldsOperationApply {
			managers[mf.Manager] = true
		}
	}
	if !managers["alice"] || !managers["bob"] {
		t.Fatalf("managed fields %+v", applied.GetManagedFields())
	}
	_, err = widgets.Patch(ctx, "w1", types.ApplyPatchType,
		[]byte(`{"apiVersion":"example.logplane.io/v1","kind":"Widget","metadata":{"name":"w1"},"spec":{"size":"small"}}`), metav1.PatchOptions{FieldManager: "bob"})
	if !apierrors.IsConflict(err) {
		t.Fatalf("bob applying alice's size: %v, want a conflict", err)
	}

	// The status subresource changes the status only; the main resource does not change it.
	cur, err := widgets.Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen := cur.GetGeneration()
	_ = unstructured.SetNestedField(cur.Object, map[string]any{"replicas": int64(2), "phase": "Ready", "selector": "app=w1"}, "status")
	_ = unstructured.SetNestedField(cur.Object, "red", "spec", "color")
	st, err := widgets.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if phase, _, _ := unstructured.NestedString(st.Object, "status", "phase"); phase != "Ready" || st.GetGeneration() != gen {
		t.Fatalf("status update: %v", st.Object)
	}
	if color, _, _ := unstructured.NestedString(st.Object, "spec", "color"); color != "green" {
		t.Fatalf("a status update changed spec.color to %q", color)
	}
	_ = unstructured.SetNestedField(st.Object, "Broken", "status", "phase")
	up, err := widgets.Update(ctx, st, metav1.UpdateOptions{})
	if phase, _, _ := unstructured.NestedString(up.Object, "status", "phase"); err != nil || phase != "Ready" {
		t.Fatalf("update of the main resource: %v %v", err, up)
	}

	// The scale subresource, at the definition's paths.
	sc, err := widgets.Get(ctx, "w1", metav1.GetOptions{}, "scale")
	if err != nil {
		t.Fatal(err)
	}
	if sc.GetKind() != "Scale" || !strings.Contains(mustJSON(t, sc.Object), `"spec":{"replicas":1}`) ||
		!strings.Contains(mustJSON(t, sc.Object), `"status":{"replicas":2,"selector":"app=w1"}`) {
		t.Fatalf("scale: %v", sc.Object)
	}
	must(t, s, "", []string{"widget.example.logplane.io/w1 scaled"}, "scale", "widget", "w1", "--replicas", "4")
	if n, _, _ := unstructured.NestedInt64(mustGet(t, widgets, "w1").Object, "spec", "replicas"); n != 4 {
		t.Fatalf("replicas after kubectl scale: %d", n)
	}

	// kubectl: the definition's columns, the short name, apply and delete.
	must(t, s, "", []string{"NAME   SIZE    REPLICAS   PHASE   AGE", "w1     large   4          Ready", "w2     large   1"}, "get", "widgets")
	must(t, s, "", []string{"COLOR", "green", "red"}, "get", "wd", "-o", "wide")
	must(t, s, `apiVersion: example.logplane.io/v1
kind: Widget
metadata: {name: w3}
spec: {size: small, tags: [one, two]}
`, []string{"widget.example.logplane.io/w3 created"}, "apply", "-f", "-")
	must(t, s, "", []string{"color: blue", "replicas: 1"}, "get", "widget", "w3", "-o", "yaml")
	must(t, s, "", []string{`widget.example.logplane.io "w3" deleted`}, "delete", "widget", "w3")
	if _, err := widgets.Get(ctx, "w3", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("w3 after delete: %v", err)
	}
}

func mustGet(t *testing.T, c dynamic.ResourceInterface, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := c.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
