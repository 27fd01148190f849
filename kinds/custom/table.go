package custom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/util/jsonpath"

	"github.com/logplane/logplane/kinds"
)

// table is the Table of a custom resource: NAME, then the additionalPrinterColumns, whose cells
// are found by JSONPath and typed as the column says, as the apiextensions API server's table
// convertor makes them (dates print as ages).
func table(columns []apiextensionsv1.CustomResourceColumnDefinition) (*kinds.Table, error) {
	defs := []metav1.TableColumnDefinition{{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]}}
	var paths []*jsonpath.JSONPath
	for _, col := range columns {
		p, err := parseJSONPath(col.Name, col.JSONPath)
		if err != nil {
			return nil, err
		}
		desc := fmt.Sprintf("Custom resource definition column (in JSONPath format): %s", col.JSONPath)
		if col.Description != "" {
			desc = col.Description
		}
		paths = append(paths, p)
		defs = append(defs, metav1.TableColumnDefinition{Name: col.Name, Type: col.Type, Format: col.Format, Description: desc, Priority: col.Priority})
	}
	var mu sync.Mutex // a JSONPath keeps state while it finds results
	row := func(now func() time.Time, obj runtime.Object) ([]any, []metav1.TableRowCondition, error) {
		u, ok := obj.(runtime.Unstructured)
		if !ok || reflect.ValueOf(obj).IsNil() {
			return nil, nil, fmt.Errorf("got a %T, want an unstructured object", obj)
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, nil, err
		}
		cells := make([]any, 1, len(defs))
		cells[0] = m.GetName()
		content := u.UnstructuredContent()
		var buf bytes.Buffer
		mu.Lock()
		defer mu.Unlock()
		for i, p := range paths {
			results, err := p.FindResults(content)
			if err != nil || len(results) == 0 || len(results[0]) == 0 {
				cells = append(cells, nil)
				continue
			}
			value := results[0][0].Interface()
			typ := defs[i+1].Type
			if typ == "string" {
				if err := p.PrintResults(&buf, []reflect.Value{reflect.ValueOf(value)}); err == nil {
					cells = append(cells, buf.String())
					buf.Reset()
				} else {
					cells = append(cells, nil)
				}
				continue
			}
			cells = append(cells, cell(now, typ, value))
		}
		return cells, nil, nil
	}
	return &kinds.Table{Columns: defs, Row: row}, nil
}

// cell is cellForJSONValue of the apiextensions table convertor, with ages measured from now.
func cell(now func() time.Time, typ string, value any) any {
	if value == nil {
		return nil
	}
	switch typ {
	case "integer":
		switch v := value.(type) {
		case int64:
			return v
		case float64:
			return int64(v)
		case json.Number:
			if i, err := v.Int64(); err == nil {
				return i
			}
		}
	case "number":
		switch v := value.(type) {
		case int64:
			return float64(v)
		case float64:
			return v
		case json.Number:
			if f, err := v.Float64(); err == nil {
				return f
			}
		}
	case "boolean":
		if b, ok := value.(bool); ok {
			return b
		}
	case "date":
		if s, ok := value.(string); ok {
			var t metav1.Time
			if err := t.UnmarshalQueryParameter(s); err != nil {
				return "<invalid>"
			}
			if t.IsZero() {
				return "<unknown>"
			}
			return duration.HumanDuration(now().Sub(t.Time))
		}
	}
	return nil
}
