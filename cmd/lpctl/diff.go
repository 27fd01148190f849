package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ignoredPaths change with every revision or are bookkeeping; a history diff leaves them out.
var ignoredPaths = []string{"metadata.resourceVersion", "metadata.managedFields"}

// diffObjects returns one line per field that differs between two JSON objects, by field path:
// "+ path: value" (added), "- path: value" (removed), "~ path: old → new" (changed). For the
// first revision (old nil) it lists the fields users set, without metadata bookkeeping.
func diffObjects(old, cur json.RawMessage) []string {
	if cur == nil {
		return nil
	}
	a, b := map[string]string{}, map[string]string{}
	if old != nil {
		flatten(old, a)
	} else {
		return nil
	}
	flatten(cur, b)
	var out []string
	keys := slices.Sorted(maps.Keys(merge(a, b)))
	for _, k := range keys {
		if ignored(k) {
			continue
		}
		va, inA := a[k]
		vb, inB := b[k]
		switch {
		case inA && !inB:
			out = append(out, fmt.Sprintf("- %s: %s", k, va))
		case !inA && inB:
			out = append(out, fmt.Sprintf("+ %s: %s", k, vb))
		case va != vb:
			out = append(out, fmt.Sprintf("~ %s: %s → %s", k, va, vb))
		}
	}
	return out
}

func ignored(path string) bool {
	for _, p := range ignoredPaths {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

func merge(a, b map[string]string) map[string]string {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}

// flatten writes every leaf of a JSON document under its path. List items that have a "name"
// (containers, ports, env, volumes) are addressed by it, conditions by their type, others by
// index; empty maps and lists are leaves of their own.
func flatten(raw json.RawMessage, out map[string]string) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return
	}
	walk("", v, out)
}

func walk(path string, v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			out[path] = "{}"
			return
		}
		for k, c := range t {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if strings.ContainsAny(k, ".[]") {
				p = path + "[" + strconv.Quote(k) + "]"
			}
			walk(p, c, out)
		}
	case []any:
		if len(t) == 0 {
			out[path] = "[]"
			return
		}
		for i, c := range t {
			idx := strconv.Itoa(i)
			if m, ok := c.(map[string]any); ok {
				// Named items (containers, ports, env) by name; conditions by type.
				if name, ok := m["name"].(string); ok && name != "" {
					idx = name
				} else if typ, ok := m["type"].(string); ok && typ != "" && strings.HasSuffix(path, "conditions") {
					idx = typ
				}
			}
			walk(path+"["+idx+"]", c, out)
		}
	default:
		out[path] = leaf(t)
	}
}

// leaf is a scalar as JSON writes it (strings quoted), but as it is: not HTML-escaped, so that a
// value with <, > or & reads as the user wrote it.
func leaf(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
