package apiserver_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// fuzzTargets are the requests FuzzRequest fuzzes: a method and path on the objects
// fuzzFixtures creates, the body and query being the fuzzer's.
var fuzzTargets = []struct{ method, path string }{
	{"POST", "/api/v1/namespaces/default/configmaps"},
	{"PUT", "/api/v1/namespaces/default/configmaps/cm"},
	{"PATCH", "/api/v1/namespaces/default/services/web"},
	{"PATCH", "/apis/apps/v1/namespaces/default/deployments/web"},
	{"PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale"},
	{"PATCH", "/api/v1/namespaces/default/pods/p/status"},
	{"GET", "/api/v1/namespaces/default/pods"},
	{"DELETE", "/api/v1/namespaces/default/configmaps/cm"},
	{"POST", "/api/v1/namespaces/default/pods/p/binding"},
	{"POST", "/api/v1/namespaces/default/pods"},
	{"PUT", "/api/v1/namespaces/default/services/web"},
	{"PATCH", "/api/v1/namespaces/default/configmaps/cm"},
	{"DELETE", "/api/v1/namespaces/default/configmaps"},
	{"GET", "/apis/apps/v1/namespaces/default/deployments/web"},
}

var fuzzContentTypes = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf",
	"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml", "text/plain"}

// fuzzFixtures are the objects the targets name, created again when a request deleted them.
var fuzzFixtures = []struct{ path, body string }{
	{"/api/v1/namespaces/default/configmaps/cm", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","labels":{"a":"b"}},"data":{"k":"v"}}`},
	{"/api/v1/namespaces/default/services/web", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[{"name":"http","port":80,"targetPort":8080}],"selector":{"app":"web"}}}`},
	{"/apis/apps/v1/namespaces/default/deployments/web", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx","ports":[{"containerPort":80}],"env":[{"name":"A","value":"1"}]}]}}}}`},
	{"/api/v1/namespaces/default/pods/p", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx","ports":[{"containerPort":80,"protocol":"TCP"}]}],"tolerations":[{"key":"k","operator":"Exists"}]}}`},
}

// FuzzRequest sends fuzzed requests to a real API server (one per fuzzing process): a target
// (method and path), a query string, a content type and a body. No answer may be a 500, every
// error answer must be a Kubernetes Status, and the server must answer within 20 s (a watch
// may stream: its body is not read). Seeds: testdata/fuzz/FuzzRequest, and the inputs that
// found bugs (a strategic merge patch whose merge key is a map; query parameters that do not
// parse).
func FuzzRequest(f *testing.F) {
	s := apiservertest.Start(f, apiservertest.Options{})
	tr, err := rest.TransportFor(s.Config)
	if err != nil {
		f.Fatal(err)
	}
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	f.Add(uint8(2), "", uint8(5), []byte(`{"spec":{"ports":[{"port":{"a":80}}]}}`))
	f.Add(uint8(6), "watch=true&limit=abc", uint8(0), []byte(nil))
	f.Add(uint8(6), "limit=-1&resourceVersionMatch=NotOlderThan", uint8(0), []byte(nil))
	f.Add(uint8(3), "fieldManager=f&force=true", uint8(6), []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n"))
	f.Add(uint8(11), "", uint8(3), []byte(`[{"op":"copy","from":"/data","path":"/data/x"}]`))
	f.Fuzz(func(t *testing.T, target uint8, query string, ct uint8, body []byte) {
		for _, fx := range fuzzFixtures {
			if code, _ := fuzzSend(t, client, s.Config.Host, "GET", fx.path, "", "", nil); code == http.StatusNotFound {
				i := strings.LastIndexByte(fx.path, '/')
				fuzzSend(t, client, s.Config.Host, "POST", fx.path[:i], "", "application/json", []byte(fx.body))
			}
		}
		tg := fuzzTargets[int(target)%len(fuzzTargets)]
		code, answer := fuzzSend(t, client, s.Config.Host, tg.method, tg.path, query, fuzzContentTypes[int(ct)%len(fuzzContentTypes)], body)
		if code == http.StatusInternalServerError {
			t.Fatalf("%s %s?%s: 500 %s", tg.method, tg.path, query, answer)
		}
		if code >= 400 && len(answer) > 0 {
			var st struct{ Kind string }
			if err := json.Unmarshal(answer, &st); err != nil || st.Kind != "Status" {
				t.Fatalf("%s %s?%s: %d and no Status: %q", tg.method, tg.path, query, code, answer)
			}
		}
	})
}

// fuzzSend sends a request and returns its status code and, for an error, its body. A request
// Go's client will not send (a control character in the URL) is skipped.
func fuzzSend(t *testing.T, client *http.Client, host, method, path, query, ct string, body []byte) (int, []byte) {
	t.Helper()
	u := host + path
	if query != "" {
		u += "?" + query
	}
	if strings.ContainsFunc(u, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		t.Skip("not an HTTP request line")
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, bytes.NewReader(body))
	if err != nil {
		t.Skip(err)
	}
	req.Header.Set("Accept", "application/json")
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: no answer: %v", method, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 400 {
		return resp.StatusCode, nil
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, u, err)
	}
	return resp.StatusCode, b
}
