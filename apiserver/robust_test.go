package apiserver_test

import (
	"net/http"
	"testing"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// TestBadInputNeverBreaksTheServer sends malformed requests of every kind to every resource and
// checks that each gets a 4xx Status, never a 5xx, and that the server still serves afterwards.
func TestBadInputNeverBreaksTheServer(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	bodies := []string{"", "null", "[]", "{}", `{"kind":`, "\x00\xff\xfe", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","labels":{"a":1}}}`,
		`{"metadata":{"name":"x","namespace":"other","resourceVersion":"abc"}}`, `[{"op":"replace","path":"/spec","value":null}]`,
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n", `{"spec":{"replicas":"many"}}`, `{"metadata":{"name":"` + string(make([]byte, 300)) + `"}}`}
	cts := []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "application/merge-patch+json",
		"application/strategic-merge-patch+json", "application/json-patch+json", "application/apply-patch+yaml", "text/plain"}
	paths := []string{
		"/api/v1/namespaces/default/pods", "/api/v1/namespaces/default/pods/x", "/api/v1/namespaces/default/pods/x/status",
		"/api/v1/namespaces/default/pods/x/binding", "/api/v1/namespaces/default/pods/x/eviction", "/api/v1/namespaces/x",
		"/api/v1/namespaces/x/finalize", "/apis/apps/v1/namespaces/default/deployments/x/scale", "/api/v1/nodes/x",
		"/api/v1/namespaces/default/services", "/apis/batch/v1/namespaces/default/cronjobs/x",
	}
	for _, p := range paths {
		for _, method := range []string{"POST", "PUT", "PATCH", "DELETE", "GET"} {
			for _, ct := range cts {
				for _, b := range bodies {
					q := []string{"", "?fieldManager=t&force=true", "?dryRun=All", "?fieldValidation=Strict", "?resourceVersion=-1", "?watch=1&timeoutSeconds=1"}[len(b)%6]
					code, body := raw(t, s.Config, method, p+q, map[string]string{"Content-Type": ct}, b)
					if code >= 500 {
						t.Fatalf("%s %s%s (%s) %q: %d %s", method, p, q, ct, b, code, body)
					}
				}
			}
		}
	}
	if code, body := raw(t, s.Config, "GET", "/api/v1/namespaces/default/pods", nil, ""); code != http.StatusOK {
		t.Fatalf("after the bad input: %d %s", code, body)
	}
}
