package apiserver_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// get sends a GET with an Accept header and returns the status, the Content-Type and the body.
func get(t *testing.T, cfg *rest.Config, path, accept string) (int, string, []byte) {
	t.Helper()
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, cfg.Host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// TestNegotiation checks that responses are negotiated as kube-apiserver negotiates them
// (k8s.io/apiserver's negotiation): the client's preferences by q-value, Tables in JSON or YAML
// only, 406 when nothing acceptable can be sent, and errors in the negotiated format.
func TestNegotiation(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	if _, err := cs.CoreV1().ConfigMaps("default").Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "neg"}, Data: map[string]string{"a": "b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const (
		obj     = "/api/v1/namespaces/default/configmaps/neg"
		list    = "/api/v1/namespaces/default/configmaps"
		missing = "/api/v1/namespaces/default/configmaps/missing"
		table   = "application/json;as=Table;g=meta.k8s.io;v=v1"
		proto   = "application/vnd.kubernetes.protobuf"
		// aggregated is what aggregated discovery is sent as.
		aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
	)
	for _, tc := range []struct {
		name, path, accept string
		code               int
		contentType        string
		body               string // a piece of the body
	}{
		{"no Accept: JSON", obj, "", 200, "application/json", `"kind":"ConfigMap"`},
		{"anything: JSON", obj, "*/*", 200, "application/json", `"kind":"ConfigMap"`},
		{"q-values: YAML preferred", obj, "application/json;q=0.5, application/yaml", 200, "application/yaml", "kind: ConfigMap"},
		{"q-values: JSON preferred to protobuf", obj, proto + ";q=0.1, application/json;q=0.9", 200, "application/json", `"kind":"ConfigMap"`},
		{"q-values: the object preferred to its Table", obj, table + ";q=0.2, application/json", 200, "application/json", `"kind":"ConfigMap"`},
		{"a wildcard after a type", obj, "application/*;q=0.8, application/yaml", 200, "application/yaml", "kind: ConfigMap"},
		{"Table as kubectl asks", list, table + ",application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", 200, "application/json", `"kind":"Table"`},
		{"no protobuf Table, JSON instead", list, proto + ";as=Table;g=meta.k8s.io;v=v1, application/json", 200, "application/json", `"kind":"ConfigMapList"`},
		{"no protobuf Table at all", list, proto + ";as=Table;g=meta.k8s.io;v=v1", 406, "application/json",
			"only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"},
		{"no such transformation", obj, "application/json;as=Table;g=meta.k8s.io;v=v9", 406, "application/json", `"reason":"NotAcceptable"`},
		{"nothing acceptable", list, "text/html", 406, "application/json", `"reason":"NotAcceptable"`},
		{"pretty", obj, "application/json;pretty=1", 200, "application/json", "{\n  \"kind\": \"ConfigMap\""},
		{"an error in YAML", missing, "application/yaml", 404, "application/yaml", "reason: NotFound"},
		{"an error of a Table request", missing, table, 404, "application/json", `"reason":"NotFound"`},
		{"an error in protobuf", missing + "?watch=true", proto, 404, proto, "NotFound"},
		{"aggregated discovery", "/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json", 200, aggregated, `"kind":"APIGroupDiscoveryList"`},
		{"aggregated discovery after plain JSON", "/apis", "application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", 200, aggregated, `"kind":"APIGroupDiscoveryList"`},
		{"plain discovery", "/apis", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", 200, "application/json", `"kind":"APIGroupList"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ct, body := get(t, s.Config, tc.path, tc.accept)
			if code != tc.code || ct != tc.contentType || !bytes.Contains(body, []byte(tc.body)) {
				t.Fatalf("Accept %q: %d %s, want %d %s with %q:\n%s", tc.accept, code, ct, tc.code, tc.contentType, tc.body, body)
			}
			if ct == "application/yaml" {
				var m map[string]any
				if err := yaml.Unmarshal(body, &m); err != nil || !strings.HasPrefix(string(body), "apiVersion: v1\n") {
					t.Fatalf("not YAML: %v\n%s", err, body)
				}
			}
		})
	}
}
