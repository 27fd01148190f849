package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// statusOf decodes a Kubernetes Status from a response body, failing the test when it is none.
func statusOf(t *testing.T, code int, body []byte) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" || int(st.Code) != code {
		t.Fatalf("want a Status with code %d, got %d %q (%v)", code, code, body, err)
	}
	return st
}

// TestPatchesThatDoNotFitTheSchema sends patches that strategic merge patch cannot apply to a
// Service (a merge key that is not a scalar, which makes apimachinery's strategicpatch panic,
// kubernetes#127056; deletions from a primitive list of maps) and to its status: each is a 400
// or 422 Status, as Kubernetes' patch handler answers what it can interpret, never a 500.
func TestPatchesThatDoNotFitTheSchema(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	svc := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[{"port":80}],"selector":{"app":"web"}}}`
	if code, body := raw(t, s.Config, "POST", "/api/v1/namespaces/default/services", map[string]string{"Content-Type": "application/json"}, svc); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, tc := range []struct {
		path, patch string
		fails       bool // else it may also apply, as on Kubernetes
	}{
		{"", `{"spec":{"ports":[{"port":{"a":80}}]}}`, true},
		{"", `{"spec":{"ports":[{"port":[80]}]}}`, true},
		{"/status", `{"spec":{"ports":[{"port":{"a":80}}]}}`, true},
		{"", `{"spec":{"$setElementOrder/ports":[{"port":{"a":1}}],"ports":[{"port":80}]}}`, false},
		{"", `{"metadata":{"$deleteFromPrimitiveList/finalizers":[{"a":1}]}}`, false},
		{"", `{"spec":{"ports":[{"$patch":"delete","port":{"a":80}}]}}`, false},
		{"", `{"spec":{"ports":[[{"port":80}]]}}`, true},
	} {
		code, body := raw(t, s.Config, "PATCH", "/api/v1/namespaces/default/services/web"+tc.path, map[string]string{"Content-Type": "application/strategic-merge-patch+json"}, tc.patch)
		switch {
		case code == http.StatusBadRequest || code == http.StatusUnprocessableEntity:
			statusOf(t, code, body)
		case code == http.StatusOK && !tc.fails:
		default:
			t.Errorf("%s %s: %d %s", tc.path, tc.patch, code, body)
		}
	}
}

// TestJSONPatchesThatCannotApply sends JSON patches that json-patch cannot apply (a test of the
// whole document without a value, on which it panics) or that are too long (over
// kube-apiserver's 10,000 operations): 422 and 413 Statuses, never a 500.
func TestJSONPatchesThatCannotApply(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"data":{"a":"b"}}`
	if code, body := raw(t, s.Config, "POST", "/api/v1/namespaces/default/configmaps", map[string]string{"Content-Type": "application/json"}, cm); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	many := "[" + strings.Repeat(`{"op":"test","path":"/data/a","value":"b"},`, 10000) + `{"op":"test","path":"/data/a","value":"b"}]`
	for _, tc := range []struct {
		patch string
		code  int
	}{
		{`[{"op":"test","path":""}]`, http.StatusUnprocessableEntity},
		{`[{"from":"/apiVersion","op":"copy","path":"/apiVersion"},{"from":"/metadata","op":"test","path":""}]`, http.StatusUnprocessableEntity},
		{`[{"op":"test","path":"/data","value":null}]`, http.StatusUnprocessableEntity},
		{`[{"from":"/metadata","op":"replace","path":""}]`, http.StatusUnprocessableEntity},
		{many, http.StatusRequestEntityTooLarge},
	} {
		code, body := raw(t, s.Config, "PATCH", "/api/v1/namespaces/default/configmaps/cm", map[string]string{"Content-Type": "application/json-patch+json"}, tc.patch)
		if code != tc.code {
			t.Errorf("%.100s: %d %s, want %d", tc.patch, code, body, tc.code)
			continue
		}
		statusOf(t, code, body)
	}
}

// TestListAndWatchParameters checks that list and watch query parameters are read as
// kube-apiserver reads them (metav1 ListOptions' parameter conversion, then
// ValidateListOptions): booleans are true unless absent, "0" or "false" (so watch=maybe is a
// watch, as on Kubernetes); numbers that do not parse are 400s; option combinations
// ValidateListOptions forbids are 422s; a negative limit means no limit.
func TestListAndWatchParameters(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	for _, tc := range []struct {
		query string
		code  int
		watch bool
	}{
		{"watch=maybe&timeoutSeconds=1", http.StatusOK, true},
		{"watch=&timeoutSeconds=1", http.StatusOK, true},
		{"watch=TRUE&timeoutSeconds=1", http.StatusOK, true},
		{"watch=False", http.StatusOK, false},
		{"watch=0", http.StatusOK, false},
		{"limit=-1", http.StatusOK, false},
		{"limit=abc", http.StatusBadRequest, false},
		{"limit=1.5", http.StatusBadRequest, false},
		{"watch=true&limit=abc", http.StatusBadRequest, false},
		{"timeoutSeconds=abc", http.StatusBadRequest, false},
		{"watch=1&timeoutSeconds=abc", http.StatusBadRequest, false},
		{"resourceVersionMatch=NotOlderThan", http.StatusUnprocessableEntity, false},
		{"resourceVersion=0&resourceVersionMatch=Exact", http.StatusUnprocessableEntity, false},
		{"resourceVersion=1&resourceVersionMatch=Sometimes", http.StatusUnprocessableEntity, false},
		{"sendInitialEvents=true", http.StatusUnprocessableEntity, false},
		{"watch=1&resourceVersionMatch=NotOlderThan", http.StatusUnprocessableEntity, false},
		{"watch=1&sendInitialEvents=true&resourceVersionMatch=Exact", http.StatusUnprocessableEntity, false},
		{"labelSelector=a%20in%20(", http.StatusBadRequest, false},
		{"watch=1&labelSelector=a%20in%20(", http.StatusBadRequest, false},
		{"fieldSelector=a%3D%3D%3D", http.StatusBadRequest, false},
		{"watch=1&allowWatchBookmarks=maybe&timeoutSeconds=1", http.StatusOK, true},
		{"watch=1&timeoutSeconds=-1", http.StatusOK, true},
	} {
		code, body := raw(t, s.Config, "GET", "/api/v1/namespaces/default/configmaps?"+tc.query, nil, "")
		if code != tc.code {
			t.Errorf("?%s: %d %s, want %d", tc.query, code, body, tc.code)
			continue
		}
		if code != http.StatusOK {
			statusOf(t, code, body)
			continue
		}
		// A watch streams events (the initial ADDED events of nothing, then the end of the
		// timeout); a list is a ConfigMapList.
		if isList := strings.Contains(string(body), `"kind":"ConfigMapList"`); isList == tc.watch {
			t.Errorf("?%s: watch=%v, got %s", tc.query, tc.watch, body)
		}
	}
	// deletecollection reads the same options.
	if code, body := raw(t, s.Config, "DELETE", "/api/v1/namespaces/default/configmaps?limit=abc", nil, ""); code != http.StatusBadRequest {
		t.Errorf("deletecollection ?limit=abc: %d %s", code, body)
	}
	if code, body := raw(t, s.Config, "DELETE", "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact", nil, ""); code != http.StatusUnprocessableEntity {
		t.Errorf("deletecollection ?resourceVersionMatch=Exact: %d %s", code, body)
	}
}

// TestOversizedRequests checks that a URL, headers or a body too large for the server get a
// Kubernetes Status: 414 for a URL over 1 MiB, 431 for headers over 1 MiB (kube-apiserver's
// MaxHeaderBytes, where Go's server answers a bare text 431), 413 for a body over 3 MiB (as
// kube-apiserver's MaxRequestBodyBytes); and that the server serves normally afterwards.
func TestOversizedRequests(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	long := strings.Repeat("a", 3<<19) // 1.5 MiB
	code, body := raw(t, s.Config, "GET", "/api/v1/namespaces/default/configmaps?labelSelector="+long, nil, "")
	if code != http.StatusRequestURITooLong {
		t.Fatalf("long URL: %d %.300s", code, body)
	}
	statusOf(t, code, body)
	code, body = raw(t, s.Config, "GET", "/api/v1/namespaces/default/configmaps", map[string]string{"X-Large": long}, "")
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("large header: %d %.300s", code, body)
	}
	statusOf(t, code, body)
	cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"` + strings.Repeat("x", 3<<20) + `"}}`
	for _, m := range []struct{ method, path, ct string }{
		{"POST", "/api/v1/namespaces/default/configmaps", "application/json"},
		{"PUT", "/api/v1/namespaces/default/configmaps/big", "application/json"},
		{"PATCH", "/api/v1/namespaces/default/configmaps/big", "application/merge-patch+json"},
		{"PATCH", "/api/v1/namespaces/default/configmaps/big?fieldManager=t", "application/apply-patch+yaml"},
	} {
		code, body = raw(t, s.Config, m.method, m.path, map[string]string{"Content-Type": m.ct}, cm)
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s %s with a large body: %d %.300s", m.method, m.path, code, body)
		}
		statusOf(t, code, body)
	}
	if code, body := raw(t, s.Config, "GET", "/api/v1/namespaces/default/configmaps", nil, ""); code != http.StatusOK {
		t.Fatalf("afterwards: %d %s", code, body)
	}
}
