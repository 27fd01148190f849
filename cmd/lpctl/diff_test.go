package main

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestDiffObjects(t *testing.T) {
	old := json.RawMessage(`{"metadata":{"name":"web","resourceVersion":"5","labels":{"app":"web"}},
		"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}},
		"status":{"conditions":[{"type":"Available","status":"False"}]}}`)
	cur := json.RawMessage(`{"metadata":{"name":"web","resourceVersion":"9","labels":{"app":"web","tier":"fe"}},
		"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}},
		"status":{"conditions":[{"type":"Progressing","status":"True"},{"type":"Available","status":"True"}]}}`)
	got := diffObjects(old, cur)
	want := []string{
		`+ metadata.labels.tier: "fe"`,
		`~ spec.replicas: 1 → 3`,
		`~ spec.template.spec.containers[nginx].image: "nginx:1.26" → "nginx:1.27"`,
		`~ status.conditions[Available].status: "False" → "True"`,
		`+ status.conditions[Progressing].status: "True"`,
		`+ status.conditions[Progressing].type: "Progressing"`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("diff:\n%q\nwant:\n%q", got, want)
	}
}
