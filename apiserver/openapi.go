package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	smdschema "sigs.k8s.io/structured-merge-diff/v6/schema"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"

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
	v2   []byte // the OpenAPI v2 document of everything, as gnostic protobuf
	v2JS []byte // the same as JSON
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
	docs := map[string]map[string]string{}
	for _, k := range catalog.All() {
		if !k.Unstructured {
			collectDocs(reflect.TypeOf(k.New()), docs)
		}
	}
	v2 := &docBuilder{v2: true, schemas: map[string]any{}, paths: map[string]any{}, docs: docs}
	for _, gv := range catalog.GroupVersions() {
		if err := v2.add(catalog, tc, gv); err != nil {
			return nil, err
		}
		b3 := &docBuilder{schemas: map[string]any{}, paths: map[string]any{}, docs: docs}
		if err := b3.add(catalog, tc, gv); err != nil {
			return nil, err
		}
		doc, err := b3.doc(), error(nil)
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
	v2JSON, err := json.Marshal(v2.doc())
	if err != nil {
		return nil, fmt.Errorf("apiserver: openapi v2: %w", err)
	}
	v2Doc, err := openapiv2.ParseDocument(v2JSON)
	if err != nil {
		return nil, fmt.Errorf("apiserver: openapi v2: %w", err)
	}
	if oa.v2, err = proto.Marshal(v2Doc); err != nil {
		return nil, fmt.Errorf("apiserver: openapi v2: %w", err)
	}
	oa.v2JS = v2JSON
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

// serveV2 serves the OpenAPI v2 document, as protobuf when asked for, JSON otherwise.
func (oa *openAPI) serveV2(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.Header.Get("Accept"), "protobuf") {
		w.Header().Set("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
		_, _ = w.Write(oa.v2) // a client that left gets nothing more
		return
	}
	w.Header().Set("Content-Type", mediaJSON)
	_, _ = w.Write(oa.v2JS) // a client that left gets nothing more
}

// docBuilder gathers the paths and schemas of an OpenAPI document, v3 or v2.
type docBuilder struct {
	v2      bool
	schemas map[string]any
	paths   map[string]any
	docs    map[string]map[string]string // OpenAPI type name → field (or "" for the type) → description
}

func (d *docBuilder) ref(name string) string {
	if d.v2 {
		return "#/definitions/" + name
	}
	return "#/components/schemas/" + name
}

func (d *docBuilder) doc() map[string]any {
	info := map[string]any{"title": "Kubernetes (logplane)", "version": Version.GitVersion}
	if d.v2 {
		return map[string]any{"swagger": "2.0", "info": info, "paths": d.paths, "definitions": d.schemas}
	}
	return map[string]any{"openapi": "3.0.0", "info": info, "paths": d.paths, "components": map[string]any{"schemas": d.schemas}}
}

// add describes the kinds of gv.
func (d *docBuilder) add(catalog *kinds.Catalog, tc managedfields.TypeConverter, gv schema.GroupVersion) error {
	for _, k := range catalog.All() {
		if k.GroupVersion() != gv {
			continue
		}
		ktc := tc
		if k.Strategy.TypeConverter != nil {
			ktc = k.Strategy.TypeConverter // a kind without a Go type describes itself
		}
		tv, err := ktc.ObjectToTyped(k.New())
		if err != nil {
			return fmt.Errorf("apiserver: openapi: typing %s: %w", k.Kind, err)
		}
		smd := tv.Schema()
		tr := tv.TypeRef()
		if tr.NamedType == nil {
			return fmt.Errorf("apiserver: openapi: %s has no named type", k.Kind)
		}
		name := *tr.NamedType
		d.addSchemas(smd, name)
		gvkExt := map[string]any{"group": k.Group, "version": k.Version, "kind": k.Kind}
		if s, ok := d.schemas[name].(map[string]any); ok {
			s["x-kubernetes-group-version-kind"] = []any{gvkExt}
		}
		ref := map[string]any{"$ref": d.ref(name)}
		base := "/" + gvPath(gv) + "/"
		if k.Namespaced {
			base += "namespaces/{namespace}/"
		}
		collection := base + k.Resource
		item := collection + "/{name}"
		full := []string{mediaJSON, mediaYAML, mediaProtobuf}
		patches := []string{"application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"}
		obj := map[string]any{"type": "object"}
		d.paths[collection] = map[string]any{
			"get":    d.operation("list", k, gvkExt, nil, nil),
			"post":   d.operation("create", k, gvkExt, ref, full),
			"delete": d.operation("deletecollection", k, gvkExt, nil, nil),
		}
		d.paths[item] = map[string]any{
			"get":    d.operation("read", k, gvkExt, nil, nil),
			"put":    d.operation("replace", k, gvkExt, ref, full),
			"patch":  d.operation("patch", k, gvkExt, obj, patches),
			"delete": d.operation("delete", k, gvkExt, nil, nil),
		}
		if k.HasSubresource("status") {
			d.paths[item+"/status"] = map[string]any{
				"get":   d.operation("read", k, gvkExt, nil, nil),
				"put":   d.operation("replace", k, gvkExt, ref, full),
				"patch": d.operation("patch", k, gvkExt, obj, patches),
			}
		}
	}
	return nil
}

// operation describes one operation on a resource path.
func (d *docBuilder) operation(verb string, k *kinds.Kind, gvk map[string]any, body map[string]any, bodyTypes []string) map[string]any {
	queryParam := func(name string) map[string]any {
		if d.v2 {
			return map[string]any{"name": name, "in": "query", "type": "string", "uniqueItems": true}
		}
		return map[string]any{"name": name, "in": "query", "schema": map[string]any{"type": "string"}, "uniqueItems": true}
	}
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
	if body != nil && d.v2 {
		op["consumes"] = bodyTypes
		op["parameters"] = append(params, map[string]any{"name": "body", "in": "body", "required": true, "schema": body})
	} else if body != nil {
		content := map[string]any{}
		for _, t := range bodyTypes {
			content[t] = map[string]any{"schema": body}
		}
		op["requestBody"] = map[string]any{"content": content, "required": true}
	}
	return op
}

// addSchemas converts the named type and every type it refers to into OpenAPI schemas.
func (d *docBuilder) addSchemas(s *smdschema.Schema, name string) {
	out := d.schemas
	if _, done := out[name]; done {
		return
	}
	td, ok := s.FindNamedType(name)
	if !ok {
		out[name] = map[string]any{"x-kubernetes-preserve-unknown-fields": true}
		return
	}
	out[name] = map[string]any{} // mark before recursing: types refer to themselves
	sch := d.atomSchema(s, td.Atom)
	if docs := d.docs[name]; docs != nil {
		if desc := docs[""]; desc != "" {
			sch["description"] = desc
		}
		if props, ok := sch["properties"].(map[string]any); ok {
			for field, p := range props {
				ps := p.(map[string]any)
				if desc := docs[field]; desc != "" {
					ps["description"] = desc
				}
				if format := docs[intFormatKey+field]; format != "" {
					setInteger(ps, format)
				}
			}
		}
	}
	out[name] = sch
}

func (d *docBuilder) typeRefSchema(s *smdschema.Schema, tr smdschema.TypeRef) map[string]any {
	if tr.NamedType != nil {
		n := *tr.NamedType
		switch n {
		case "__untyped_atomic_", "__untyped_deduced_":
			return map[string]any{"x-kubernetes-preserve-unknown-fields": true}
		case "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
			return map[string]any{"x-kubernetes-int-or-string": true}
		}
		d.addSchemas(s, n)
		if d.v2 {
			return map[string]any{"$ref": d.ref(n)}
		}
		return map[string]any{"allOf": []any{map[string]any{"$ref": d.ref(n)}}}
	}
	return d.atomSchema(s, tr.Inlined)
}

func (d *docBuilder) atomSchema(s *smdschema.Schema, a smdschema.Atom) map[string]any {
	switch {
	case a.Map != nil:
		m := map[string]any{"type": "object"}
		if len(a.Map.Fields) > 0 {
			props := map[string]any{}
			for _, f := range a.Map.Fields {
				props[f.Name] = d.typeRefSchema(s, f.Type)
			}
			m["properties"] = props
		} else {
			et := a.Map.ElementType
			if et.NamedType != nil || et.Inlined.Scalar != nil || et.Inlined.List != nil || et.Inlined.Map != nil {
				m["additionalProperties"] = d.typeRefSchema(s, et)
			}
		}
		if a.Map.ElementRelationship == smdschema.Atomic {
			m["x-kubernetes-map-type"] = "atomic"
		}
		return m
	case a.List != nil:
		l := map[string]any{"type": "array", "items": d.typeRefSchema(s, a.List.ElementType)}
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

// openAPIName is the OpenAPI definition name of a Go type of the Kubernetes API:
// k8s.io/api/core/v1.Pod is io.k8s.api.core.v1.Pod.
func openAPIName(t reflect.Type) string {
	pkg := t.PkgPath()
	if rest, ok := strings.CutPrefix(pkg, "k8s.io/"); ok {
		pkg = "io.k8s/" + rest
	}
	return strings.ReplaceAll(pkg, "/", ".") + "." + t.Name()
}

// collectDocs gathers the SwaggerDoc descriptions of t and of every type it contains; the
// fields of inlined structs (TypeMeta) are described in their parent.
func collectDocs(t reflect.Type, out map[string]map[string]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map || t.Kind() == reflect.Array {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.Name() == "" {
		return
	}
	name := openAPIName(t)
	if _, done := out[name]; done {
		return
	}
	docs := map[string]string{}
	out[name] = docs
	addDocs(t, docs)
	for i := 0; i < t.NumField(); i++ {
		collectDocs(t.Field(i).Type, out)
	}
}

// intFormatKey prefixes, in a type's docs, the integer format of a field ("int32", "int64"):
// structured-merge-diff schemas only say "numeric".
const intFormatKey = "\x00int:"

func setInteger(s map[string]any, format string) {
	switch {
	case s["type"] == "number":
		s["type"], s["format"] = "integer", format
	case s["type"] == "array":
		if items, ok := s["items"].(map[string]any); ok && items["type"] == "number" {
			items["type"], items["format"] = "integer", format
		}
	case s["type"] == "object":
		if ap, ok := s["additionalProperties"].(map[string]any); ok && ap["type"] == "number" {
			ap["type"], ap["format"] = "integer", format
		}
	}
}

func intFormat(t reflect.Type) string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int32, reflect.Uint32, reflect.Int16, reflect.Uint16, reflect.Int8, reflect.Uint8:
		return "int32"
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64:
		return "int64"
	}
	return ""
}

func addDocs(t reflect.Type, docs map[string]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if format := intFormat(f.Type); name != "" && name != "-" && format != "" {
			docs[intFormatKey+name] = format
		}
	}
	if d, ok := reflect.New(t).Elem().Interface().(interface{ SwaggerDoc() map[string]string }); ok {
		for k, v := range d.SwaggerDoc() {
			if _, set := docs[k]; !set {
				docs[k] = v
			}
		}
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && strings.Contains(f.Tag.Get("json"), "inline") && f.Type.Kind() == reflect.Struct {
			inner := map[string]string{}
			addDocs(f.Type, inner)
			delete(inner, "")
			for k, v := range inner {
				if _, set := docs[k]; !set {
					docs[k] = v
				}
			}
		}
	}
}
