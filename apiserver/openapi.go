package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	smdschema "sigs.k8s.io/structured-merge-diff/v6/schema"

	"github.com/logplane/logplane/kinds"
)

// openAPI holds the OpenAPI v3 documents of the served group versions, derived from the
// structured-merge-diff schemas of the Go types (the same ones server-side apply uses). They
// carry what clients look for: the paths of every resource with their operations, the
// x-kubernetes-group-version-kind of each, the fieldValidation parameter (kubectl then leaves
// field validation to the server), and the schemas of the objects (kubectl explain).
type openAPI struct {
	docs map[string][]byte // "api/v1", "apis/apps/v1" → document
	hash map[string]string
	root []byte
}

func gvPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

func newOpenAPI(catalog *kinds.Catalog, tc managedfields.TypeConverter) (*openAPI, error) {
	oa := &openAPI{docs: map[string][]byte{}, hash: map[string]string{}}
	rootPaths := map[string]any{}
	for _, gv := range catalog.GroupVersions() {
		doc, err := openAPIDoc(catalog, tc, gv)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(doc)
		if err != nil {
			return nil, fmt.Errorf("apiserver: openapi for %s: %w", gv, err)
		}
		p := gvPath(gv)
		sum := sha256.Sum256(b)
		h := strings.ToUpper(hex.EncodeToString(sum[:]))
		oa.docs[p], oa.hash[p] = b, h
		rootPaths[p] = map[string]any{"serverRelativeURL": "/openapi/v3/" + p + "?hash=" + h}
	}
	root, err := json.Marshal(map[string]any{"paths": rootPaths})
	if err != nil {
		return nil, err
	}
	oa.root = root
	return oa, nil
}

func (oa *openAPI) serveV3(w http.ResponseWriter, r *http.Request, path string) {
	if path == "" {
		w.Header().Set("Content-Type", mediaJSON)
		_, _ = w.Write(oa.root) // a client that left gets nothing more
		return
	}
	doc, ok := oa.docs[path]
	if !ok {
		writeError(w, r, notFoundPath(r))
		return
	}
	if h := r.URL.Query().Get("hash"); h != "" && h == oa.hash[path] {
		w.Header().Set("Cache-Control", "public, immutable")
	}
	w.Header().Set("Etag", `"`+oa.hash[path]+`"`)
	w.Header().Set("Content-Type", mediaJSON)
	_, _ = w.Write(doc) // a client that left gets nothing more
}

// serveV2 answers 404: clients fall back to what they know of the built-in types.
func (oa *openAPI) serveV2(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, "openapi/v2"))
}

func openAPIDoc(catalog *kinds.Catalog, tc managedfields.TypeConverter, gv schema.GroupVersion) (map[string]any, error) {
	schemas := map[string]any{}
	paths := map[string]any{}
	var smd *smdschema.Schema
	for _, k := range catalog.All() {
		if k.GroupVersion() != gv {
			continue
		}
		tv, err := tc.ObjectToTyped(k.New())
		if err != nil {
			return nil, fmt.Errorf("apiserver: openapi: typing %s: %w", k.Kind, err)
		}
		smd = tv.Schema()
		tr := tv.TypeRef()
		if tr.NamedType == nil {
			return nil, fmt.Errorf("apiserver: openapi: %s has no named type", k.Kind)
		}
		name := *tr.NamedType
		addSchemas(smd, name, schemas)
		gvkExt := map[string]any{"group": k.Group, "version": k.Version, "kind": k.Kind}
		if s, ok := schemas[name].(map[string]any); ok {
			s["x-kubernetes-group-version-kind"] = []any{gvkExt}
		}
		ref := map[string]any{"$ref": "#/components/schemas/" + name}
		base := "/" + gvPath(gv) + "/"
		if k.Namespaced {
			base += "namespaces/{namespace}/"
		}
		collection := base + k.Resource
		item := collection + "/{name}"
		paths[collection] = map[string]any{
			"get":    operation("list", k, gvkExt, nil, nil),
			"post":   operation("create", k, gvkExt, ref, []string{mediaJSON, mediaYAML, mediaProtobuf}),
			"delete": operation("deletecollection", k, gvkExt, nil, nil),
		}
		paths[item] = map[string]any{
			"get":    operation("read", k, gvkExt, nil, nil),
			"put":    operation("replace", k, gvkExt, ref, []string{mediaJSON, mediaYAML, mediaProtobuf}),
			"patch":  operation("patch", k, gvkExt, map[string]any{"type": "object"}, []string{"application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"}),
			"delete": operation("delete", k, gvkExt, nil, nil),
		}
		for _, sub := range servedSubresources(k) {
			if sub == "status" {
				paths[item+"/status"] = map[string]any{
					"get":   operation("read", k, gvkExt, nil, nil),
					"put":   operation("replace", k, gvkExt, ref, []string{mediaJSON, mediaYAML, mediaProtobuf}),
					"patch": operation("patch", k, gvkExt, map[string]any{"type": "object"}, []string{"application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"}),
				}
			}
		}
	}
	return map[string]any{
		"openapi":    "3.0.0",
		"info":       map[string]any{"title": "Kubernetes (logplane)", "version": Version.GitVersion},
		"paths":      paths,
		"components": map[string]any{"schemas": schemas},
	}, nil
}

// operation describes one operation on a resource path.
func operation(verb string, k *kinds.Kind, gvk map[string]any, body map[string]any, bodyTypes []string) map[string]any {
	params := []any{
		queryParam("pretty"), queryParam("dryRun"), queryParam("fieldManager"), queryParam("fieldValidation"),
	}
	switch verb {
	case "list", "deletecollection":
		params = append(params, queryParam("labelSelector"), queryParam("fieldSelector"), queryParam("limit"),
			queryParam("continue"), queryParam("resourceVersion"), queryParam("resourceVersionMatch"),
			queryParam("watch"), queryParam("allowWatchBookmarks"), queryParam("sendInitialEvents"), queryParam("timeoutSeconds"))
	case "patch":
		params = append(params, queryParam("force"))
	}
	op := map[string]any{
		"operationId":                     verb + k.Kind,
		"parameters":                      params,
		"x-kubernetes-action":             verb,
		"x-kubernetes-group-version-kind": gvk,
		"responses":                       map[string]any{"200": map[string]any{"description": "OK"}},
	}
	if body != nil {
		content := map[string]any{}
		for _, t := range bodyTypes {
			content[t] = map[string]any{"schema": body}
		}
		op["requestBody"] = map[string]any{"content": content, "required": true}
	}
	return op
}

func queryParam(name string) map[string]any {
	return map[string]any{"name": name, "in": "query", "schema": map[string]any{"type": "string"}, "uniqueItems": true}
}

// addSchemas converts the named type and every type it refers to into OpenAPI schemas.
func addSchemas(s *smdschema.Schema, name string, out map[string]any) {
	if _, done := out[name]; done {
		return
	}
	td, ok := s.FindNamedType(name)
	if !ok {
		out[name] = map[string]any{"x-kubernetes-preserve-unknown-fields": true}
		return
	}
	out[name] = map[string]any{} // mark before recursing: types refer to themselves
	out[name] = atomSchema(s, td.Atom, out)
}

func typeRefSchema(s *smdschema.Schema, tr smdschema.TypeRef, out map[string]any) map[string]any {
	if tr.NamedType != nil {
		n := *tr.NamedType
		switch n {
		case "__untyped_atomic_", "__untyped_deduced_":
			return map[string]any{"x-kubernetes-preserve-unknown-fields": true}
		case "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
			return map[string]any{"x-kubernetes-int-or-string": true}
		}
		addSchemas(s, n, out)
		return map[string]any{"allOf": []any{map[string]any{"$ref": "#/components/schemas/" + n}}}
	}
	return atomSchema(s, tr.Inlined, out)
}

func atomSchema(s *smdschema.Schema, a smdschema.Atom, out map[string]any) map[string]any {
	switch {
	case a.Map != nil:
		m := map[string]any{"type": "object"}
		if len(a.Map.Fields) > 0 {
			props := map[string]any{}
			for _, f := range a.Map.Fields {
				props[f.Name] = typeRefSchema(s, f.Type, out)
			}
			m["properties"] = props
		} else {
			et := a.Map.ElementType
			if et.NamedType != nil || et.Inlined.Scalar != nil || et.Inlined.List != nil || et.Inlined.Map != nil {
				m["additionalProperties"] = typeRefSchema(s, et, out)
			}
		}
		if a.Map.ElementRelationship == smdschema.Atomic {
			m["x-kubernetes-map-type"] = "atomic"
		}
		return m
	case a.List != nil:
		l := map[string]any{"type": "array", "items": typeRefSchema(s, a.List.ElementType, out)}
		switch a.List.ElementRelationship {
		case smdschema.Associative:
			if len(a.List.Keys) > 0 {
				l["x-kubernetes-list-type"] = "map"
				keys := make([]any, len(a.List.Keys))
				for i, k := range a.List.Keys {
					keys[i] = k
				}
				l["x-kubernetes-list-map-keys"] = keys
			} else {
				l["x-kubernetes-list-type"] = "set"
			}
		case smdschema.Atomic:
			l["x-kubernetes-list-type"] = "atomic"
		}
		return l
	case a.Scalar != nil:
		switch *a.Scalar {
		case smdschema.Numeric:
			return map[string]any{"type": "number"}
		case smdschema.String:
			return map[string]any{"type": "string"}
		case smdschema.Boolean:
			return map[string]any{"type": "boolean"}
		}
	}
	return map[string]any{"x-kubernetes-preserve-unknown-fields": true}
}
