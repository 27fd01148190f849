package apiserver

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/kinds/builtin"
)

// BenchmarkRequestMetrics is what counting and timing one request costs (a create and a get of a
// ConfigMap): it is on every request's path.
func BenchmarkRequestMetrics(b *testing.B) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	k, _ := builtin.Catalog().ByResource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"})
	create := httptest.NewRequest("POST", "/api/v1/namespaces/default/configmaps", nil)
	get := httptest.NewRequest("GET", "/api/v1/namespaces/default/configmaps/x", nil)
	cinfo := requestInfo{kind: k, version: "v1", namespace: "default", resource: "configmaps", verb: "create", prefix: "api"}
	ginfo := requestInfo{kind: k, version: "v1", namespace: "default", name: "x", resource: "configmaps", verb: "get", prefix: "api"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.observe(create, cinfo, 201, time.Millisecond)
		m.observe(get, ginfo, 200, time.Millisecond)
	}
}
