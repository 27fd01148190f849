package apiserver_test

import (
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// TestMetricsAsKubernetesNamesThem: apiserver_request_total and
// apiserver_request_duration_seconds carry kube-apiserver's labels and values (upper-case verbs
// as its MonitorRequest reports them, dry_run, version, scope, component) and its buckets, so
// that dashboards and recording rules written for Kubernetes read them.
func TestMetricsAsKubernetesNamesThem(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := clientset(t, s)
	ctx := t.Context()
	cms := cs.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "m", Labels: map[string]string{"x": "1"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dry"}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	cm, err := cms.Get(ctx, "m", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Patch(ctx, "m", types.MergePatchType, []byte(`{"data":{"a":"b"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Patch(ctx, "m", types.ApplyPatchType, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"m"},"data":{"c":"d"}}`),
		metav1.PatchOptions{FieldManager: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: cm.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	if err := cms.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "x=1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("p"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// pods/log is a CONNECT (this server has no node credentials: 503).
	raw(t, s.Config, "GET", "/api/v1/namespaces/default/pods/p/log", nil, "")
	raw(t, s.Config, "GET", "/healthz", nil, "")
	raw(t, s.Config, "GET", "/api/v1/widgets", nil, "")

	code, body := raw(t, s.Config, "GET", "/metrics", nil, "")
	m := string(body)
	if code != http.StatusOK {
		t.Fatalf("metrics: %d %s", code, m)
	}
	series := func(verb, dryRun, resource, scope, code string) string {
		return `apiserver_request_total{code="` + code + `",component="apiserver",dry_run="` + dryRun + `",group="",resource="` + resource +
			`",scope="` + scope + `",subresource="",verb="` + verb + `",version="v1"}`
	}
	for _, want := range []string{
		series("POST", "", "configmaps", "resource", "201") + " 1",
		series("POST", "All", "configmaps", "resource", "201") + " 1",
		series("GET", "", "configmaps", "resource", "200") + " 1",
		series("PUT", "", "configmaps", "resource", "200") + " 1",
		series("PATCH", "", "configmaps", "resource", "200") + " 1",
		series("APPLY", "", "configmaps", "resource", "200") + " 1",
		series("LIST", "", "configmaps", "namespace", "200") + " 1",
		series("LIST", "", "configmaps", "cluster", "200") + " 1",
		series("LIST", "", "nodes", "cluster", "200") + " 1",
		series("WATCH", "", "configmaps", "namespace", "200") + " 1",
		series("DELETE", "", "configmaps", "namespace", "200") + " 1",
		`apiserver_request_total{code="503",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="log",verb="CONNECT",version="v1"} 1`,
		`apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/healthz",verb="GET",version=""}`,
		`apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="0.005"}`,
		`apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="0.2"}`,
		`apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="60"}`,
		`apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="WATCH",version="v1"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, unwanted := range []string{`verb="create"`, `verb="list"`, "nonresource_", `resource="widgets"`} {
		if strings.Contains(m, unwanted) {
			t.Errorf("metrics have %s", unwanted)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(m, "apiserver_request_total"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
