package ingressproxy_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/dataplane/ingressproxy"
)

// Host rules, as the Ingress conformance suite's host_rules.feature has
// them: exact hosts, wildcards covering exactly one label, 404 for the
// rest; names compared without case, port or trailing dot; an exact host
// before a wildcard.
func TestHostRules(t *testing.T) {
	e := newEnv(t)
	e.services(t, "wildcard-foo-com", "foo-bar-com", "x-foo-com")
	e.p.UpdateIngress(ingress("host-rules", 1,
		rule("*.foo.com", "Prefix / wildcard-foo-com"),
		rule("foo.bar.com", "Prefix / foo-bar-com:http"),
		rule("x.foo.com", "Prefix / x-foo-com"),
	))
	c := e.client(false)

	if got := served(t, c, "http://foo.bar.com", "foo-bar-com"); got.Host != "foo.bar.com" {
		t.Errorf("the backend saw Host %q, want foo.bar.com", got.Host)
	}
	served(t, c, "http://bar.foo.com/some/path", "wildcard-foo-com")
	served(t, c, "http://x.foo.com/", "x-foo-com")
	if r := get(t, c, http.MethodGet, "http://any/", "Host", "FOO.Bar.COM.:8080"); r.echo.Backend != "foo-bar-com" {
		t.Errorf("Host FOO.Bar.COM.:8080 went to %q (%d), want foo-bar-com", r.echo.Backend, r.code)
	}
	for _, u := range []string{"http://subdomain.bar.com", "http://baz.bar.foo.com", "http://foo.com", "http://127.0.0.1/"} {
		r := status(t, c, u, http.StatusNotFound)
		if !strings.Contains(r.body, "404") || len(r.body) > 200 {
			t.Errorf("GET %s: body %q, want a short 404 text", u, r.body)
		}
	}
}

// Path rules, as the conformance suite's path_rules.feature and the
// Ingress documentation's examples have them.
func TestPathRules(t *testing.T) {
	e := newEnv(t)
	e.services(t, "foo-exact", "foo-prefix", "aaa-slash-bbb-prefix", "aaa-prefix", "aaa-slash-bbb-slash-prefix",
		"foo-slash-exact", "root", "impl", "regex")
	e.p.UpdateIngress(ingress("path-rules", 1,
		rule("exact-path-rules", "Exact /foo foo-exact"),
		rule("prefix-path-rules", "Prefix /foo foo-prefix", "Prefix /aaa/bbb aaa-slash-bbb-prefix", "Prefix /aaa aaa-prefix"),
		rule("mixed-path-rules", "Prefix /foo foo-prefix", "Exact /foo foo-exact"),
		rule("trailing-slash-path-rules", "Prefix /aaa/bbb/ aaa-slash-bbb-slash-prefix", "Exact /foo/ foo-slash-exact"),
		rule("root-path-rules", "Prefix / root", "Prefix /aaa aaa-prefix", "Prefix /aaa/bbb aaa-slash-bbb-prefix"),
		rule("impl-path-rules", "ImplementationSpecific /impl impl", `ImplementationSpecific /api(/|$)(.*) regex`),
		rule("slash-pair", "Prefix /foo foo-prefix", "Prefix /foo/ aaa-prefix"),
	))
	c := e.client(false)
	for _, tc := range []struct{ url, want string }{
		{"http://exact-path-rules/foo", "foo-exact"},
		{"http://exact-path-rules/foo/", ""},
		{"http://exact-path-rules/FOO", ""},
		{"http://exact-path-rules/bar", ""},
		{"http://prefix-path-rules/foo", "foo-prefix"},
		{"http://prefix-path-rules/foo/", "foo-prefix"},
		{"http://prefix-path-rules/FOO", ""},
		{"http://prefix-path-rules/aaa/bbb", "aaa-slash-bbb-prefix"},
		{"http://prefix-path-rules/aaa/bbb/ccc", "aaa-slash-bbb-prefix"},
		{"http://prefix-path-rules/aaa/bbbxyz", "aaa-prefix"},
		{"http://prefix-path-rules/aaa/ccc", "aaa-prefix"},
		{"http://prefix-path-rules/aaaccc", ""},
		{"http://prefix-path-rules/foobar", ""},
		{"http://prefix-path-rules/", ""},
		{"http://mixed-path-rules/foo", "foo-exact"},
		{"http://mixed-path-rules/foo/", "foo-prefix"},
		{"http://trailing-slash-path-rules/aaa/bbb", "aaa-slash-bbb-slash-prefix"},
		{"http://trailing-slash-path-rules/aaa/bbb/", "aaa-slash-bbb-slash-prefix"},
		{"http://trailing-slash-path-rules/foo", ""},
		{"http://trailing-slash-path-rules/foo/", "foo-slash-exact"},
		{"http://root-path-rules/aaa/ccc", "aaa-prefix"},
		{"http://root-path-rules/aaa/bbb", "aaa-slash-bbb-prefix"},
		{"http://root-path-rules/ccc", "root"},
		{"http://root-path-rules/", "root"},
		{"http://root-path-rules/?q=/aaa/bbb", "root"},
		// Matching is on the normalized path, as nginx does: dot
		// segments and doubled slashes cannot reach around a rule.
		{"http://root-path-rules/x/../aaa/bbb/", "aaa-slash-bbb-prefix"},
		{"http://root-path-rules//aaa//bbb", "aaa-slash-bbb-prefix"},
		{"http://root-path-rules/aaa/%62bb", "aaa-slash-bbb-prefix"},
		{"http://exact-path-rules/./foo", "foo-exact"},
		{"http://exact-path-rules/bar/../foo", "foo-exact"},
		{"http://impl-path-rules/impl/x", "impl"},
		{"http://impl-path-rules/implx", ""},
		// A regex-looking path is a literal prefix.
		{"http://impl-path-rules/api/x", ""},
		{"http://impl-path-rules/api(/%7C$)(.*)/x", "regex"},
		// "/foo" and "/foo/" both match /foo: the longer one wins.
		{"http://slash-pair/foo", "aaa-prefix"},
		{"http://slash-pair/foo/x", "aaa-prefix"},
	} {
		if tc.want == "" {
			status(t, c, tc.url, http.StatusNotFound)
		} else {
			served(t, c, tc.url, tc.want)
		}
	}
	// The request goes to the backend as the client sent it.
	if got := served(t, c, "http://root-path-rules/x/../aaa/b%2Fb?q=1&r=%20", "aaa-prefix"); got.URI != "/x/../aaa/b%2Fb?q=1&r=%20" {
		t.Errorf("backend got URI %q, want the client's", got.URI)
	}
}

// Of two Ingresses with the same host and path, the older one serves it
// (then the first by namespace/name); each Ingress's other paths are
// merged into the host; deleting the older one hands the path over.
func TestPrecedenceAcrossIngresses(t *testing.T) {
	e := newEnv(t)
	e.services(t, "old", "new", "a", "b")
	e.p.UpdateIngress(ingress("newer", 2, rule("site.example", "Prefix /app new", "Prefix /app/v2 new")))
	e.p.UpdateIngress(ingress("older", 1, rule("site.example", "Prefix /app old", "Exact /app/v2 old")))
	e.p.UpdateIngress(ingress("b-same-age", 3, rule("tie.example", "Prefix / b")))
	e.p.UpdateIngress(ingress("a-same-age", 3, rule("tie.example", "Prefix / a")))
	c := e.client(false)
	served(t, c, "http://site.example/app", "old")
	served(t, c, "http://site.example/app/v1", "old")
	served(t, c, "http://site.example/app/v2", "old")   // Exact beats Prefix at equal length
	served(t, c, "http://site.example/app/v2/x", "new") // the longer path, from the newer Ingress
	served(t, c, "http://tie.example/", "a")
	want := []types.NamespacedName{{Namespace: ns, Name: "older"}, {Namespace: ns, Name: "newer"}, {Namespace: ns, Name: "a-same-age"}, {Namespace: ns, Name: "b-same-age"}}
	if got := e.p.Served(); !slices.Equal(got, want) {
		t.Errorf("Served() = %v, want %v", got, want)
	}

	e.p.DeleteIngress(ns, "older")
	served(t, c, "http://site.example/app", "new")
	served(t, c, "http://site.example/app/v2", "new")
	e.p.DeleteIngress(ns, "a-same-age")
	served(t, c, "http://tie.example/", "b")
}

// defaultBackend: an Ingress without rules takes every request nothing
// else matches (conformance default_backend.feature); an Ingress's
// defaultBackend takes its hosts' unmatched paths; without either, 404.
func TestDefaultBackend(t *testing.T) {
	e := newEnv(t)
	e.services(t, "echo-service", "x", "site-default", "p")
	def := ingress("default-backend", 1)
	def.Spec.DefaultBackend = ptr.To(svcBackend("echo-service"))
	e.p.UpdateIngress(def)
	site := ingress("site", 2, rule("site.example", "Exact /x x"))
	site.Spec.DefaultBackend = ptr.To(svcBackend("site-default"))
	e.p.UpdateIngress(site)
	e.p.UpdateIngress(ingress("plain", 3, rule("plain.example", "Exact /p p")))
	c := e.client(false)

	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
		for _, u := range []string{"http://my-host/", "http://my-host/sub-path", "http://some-host/resource"} {
			r := get(t, c, m, u)
			if r.code != 200 || r.echo.Backend != "echo-service" || r.echo.Method != m || r.echo.Proto != "HTTP/1.1" {
				t.Errorf("%s %s: %d %+v, want 200 from echo-service with the same method over HTTP/1.1", m, u, r.code, r.echo)
			}
			if want := strings.TrimPrefix(strings.TrimPrefix(u, "http://my-host"), "http://some-host"); r.echo.URI != want {
				t.Errorf("%s %s: the backend saw %q", m, u, r.echo.URI)
			}
		}
	}
	served(t, c, "http://site.example/x", "x")
	served(t, c, "http://site.example/y", "site-default")
	served(t, c, "http://plain.example/p", "p")
	served(t, c, "http://plain.example/q", "echo-service")

	e.p.DeleteIngress(ns, "default-backend")
	status(t, c, "http://my-host/", http.StatusNotFound)
	status(t, c, "http://plain.example/q", http.StatusNotFound)
	served(t, c, "http://site.example/y", "site-default")
}

// Only Ingresses of the proxy's classes are served: a class whose
// controller is the proxy's, by ingressClassName, by the deprecated
// annotation, or by the default class for those naming none.
func TestIngressClass(t *testing.T) {
	e := newEnv(t)
	e.services(t, "svc")
	e.p.UpdateIngressClass(&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}})
	mk := func(name string, class *string, annotation string) {
		ing := ingress(name, 1, rule(name+".example", "Prefix / svc"))
		ing.Spec.IngressClassName = class
		if annotation != "" {
			ing.Annotations = map[string]string{ingressproxy.AnnotationIngressClass: annotation}
		}
		e.p.UpdateIngress(ing)
	}
	mk("other", ptr.To("nginx"), "")
	mk("invalid", ptr.To("some-invalid-class-name"), "")
	mk("named", ptr.To("logplane"), "")
	mk("classless", nil, "")
	mk("annotated-other", nil, "nginx")
	mk("annotated", nil, "logplane")
	mk("field-wins", ptr.To("nginx"), "logplane")
	c := e.client(false)
	check := func(servedNames ...string) {
		t.Helper()
		for _, n := range []string{"other", "invalid", "named", "classless", "annotated-other", "annotated", "field-wins"} {
			if slices.Contains(servedNames, n) {
				served(t, c, "http://"+n+".example/", "svc")
			} else {
				status(t, c, "http://"+n+".example/", http.StatusNotFound)
			}
		}
		var got []string
		for _, nn := range e.p.Served() {
			got = append(got, nn.Name)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(servedNames))
		if !slices.Equal(got, want) {
			t.Errorf("Served() = %v, want %v", got, want)
		}
	}
	check("named", "classless", "annotated")

	// No longer the default: Ingresses without a class are left alone.
	e.p.UpdateIngressClass(&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "logplane"}, Spec: networkingv1.IngressClassSpec{Controller: ingressproxy.DefaultController}})
	check("named", "annotated")
	// A class of the same name for another controller is not ours.
	e.p.UpdateIngressClass(&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "logplane"}, Spec: networkingv1.IngressClassSpec{Controller: "example.com/other"}})
	check()
	e.p.UpdateIngressClass(&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "logplane"}, Spec: networkingv1.IngressClassSpec{Controller: ingressproxy.DefaultController}})
	check("named", "annotated")
	e.p.DeleteIngressClass("logplane")
	check()
}

// A rule that cannot be served as written is left out with a Warning and
// leaves the rest of its Ingress served.
func TestInvalidRulesWarn(t *testing.T) {
	e := newEnv(t)
	e.services(t, "svc")
	ing := ingress("odd", 1,
		rule("bad host.example", "Prefix / svc"),
		rule("*.*.example", "Prefix / svc"),
		rule("good.example", "Prefix relative svc", "Prefix /ok svc", "Regex /r svc"),
	)
	ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: "res.example", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
		Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
		Backend: networkingv1.IngressBackend{Resource: &corev1TypedRef},
	}}}}})
	e.p.UpdateIngress(ing)
	c := e.client(false)
	served(t, c, "http://good.example/ok", "svc")
	status(t, c, "http://good.example/relative", http.StatusNotFound)
	status(t, c, "http://res.example/", http.StatusServiceUnavailable)
	ws := e.takeWarnings()
	reasons := map[string]int{}
	for _, w := range ws {
		if w.Ingress.Name != "odd" {
			t.Errorf("warning for %v", w.Ingress)
		}
		reasons[w.Reason]++
	}
	if reasons[ingressproxy.ReasonInvalidRule] != 4 || reasons[ingressproxy.ReasonUnsupportedBackend] != 1 {
		t.Errorf("warnings %v, want 4 %s and 1 %s", ws, ingressproxy.ReasonInvalidRule, ingressproxy.ReasonUnsupportedBackend)
	}
	// Reported once: another change does not report them again.
	e.services(t, "other")
	e.p.UpdateIngress(ingress("another", 2, rule("another.example", "Prefix / other")))
	if ws := e.takeWarnings(); len(ws) != 0 {
		t.Errorf("warnings reported again: %v", ws)
	}
	if got := len(e.p.Warnings()); got != 5 {
		t.Errorf("Warnings() has %d, want 5", got)
	}
	e.p.DeleteIngress(ns, "odd")
	if got := e.p.Warnings(); len(got) != 0 {
		t.Errorf("Warnings() after the Ingress went: %v", got)
	}
}

var corev1TypedRef = corev1.TypedLocalObjectReference{APIGroup: ptr.To("storage.example.com"), Kind: "Bucket", Name: "static"}
