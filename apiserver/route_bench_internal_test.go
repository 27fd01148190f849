package apiserver

import (
	"net/http/httptest"
	"testing"

	"github.com/logplane/logplane/kinds/builtin"
)

// BenchmarkParseRequest is what reading a request's path costs (RequestInfoFactory and the
// catalog's lookup): a create, a get, and a watch with a selector (whose query
// RequestInfoFactory decodes as ListOptions).
func BenchmarkParseRequest(b *testing.B) {
	s := &Server{catalog: builtin.Catalog()}
	for _, tc := range []struct{ name, method, target string }{
		{"create", "POST", "/api/v1/namespaces/default/configmaps"},
		{"get", "GET", "/api/v1/namespaces/default/configmaps/x"},
		{"watch", "GET", "/api/v1/namespaces/default/pods?watch=1&labelSelector=app%3Dweb&resourceVersion=12&allowWatchBookmarks=true"},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s.parse(r).kind == nil {
					b.Fatal("no kind")
				}
			}
		})
	}
}
