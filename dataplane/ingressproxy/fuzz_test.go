package ingressproxy

import (
	"bufio"
	"bytes"
	"cmp"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// The fuzz targets below run their seed corpus (testdata/fuzz/) as normal
// tests; `go test -fuzz FuzzRoutes ./dataplane/ingressproxy/` explores.

// fuzzIngresses reads Ingresses from lines "I|HOST|TYPE|PATH": a path rule
// of Ingress I (0-3, created in that order) for HOST, whose backend is
// named after the line; TYPE "D" makes the line's backend Ingress I's
// defaultBackend instead, and "N" a rule without paths. Lines that do not
// parse are skipped.
func fuzzIngresses(spec string) []*networkingv1.Ingress {
	var ings [4]*networkingv1.Ingress
	for n, line := range strings.Split(spec, "\n") {
		f := strings.SplitN(line, "|", 4)
		if len(f) != 4 || len(f[0]) != 1 || f[0][0] < '0' || f[0][0] > '3' {
			continue
		}
		i := int(f[0][0] - '0')
		if ings[i] == nil {
			ings[i] = &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{
				Namespace: "ns", Name: "ing" + f[0],
				CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)),
			}}
		}
		ing := ings[i]
		be := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "b" + strconv.Itoa(n), Port: networkingv1.ServiceBackendPort{Number: 80}}}
		if f[2] == "D" {
			if ing.Spec.DefaultBackend == nil {
				ing.Spec.DefaultBackend = &be
			}
			continue
		}
		var r *networkingv1.IngressRule
		for k := range ing.Spec.Rules {
			if ing.Spec.Rules[k].Host == f[1] {
				r = &ing.Spec.Rules[k]
			}
		}
		if r == nil {
			ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: f[1]})
			r = &ing.Spec.Rules[len(ing.Spec.Rules)-1]
		}
		if f[2] == "N" {
			continue
		}
		if r.HTTP == nil {
			r.HTTP = &networkingv1.HTTPIngressRuleValue{}
		}
		hp := networkingv1.HTTPIngressPath{Path: f[3], Backend: be}
		if f[2] != "" {
			hp.PathType = ptr.To(networkingv1.PathType(f[2]))
		}
		r.HTTP.Paths = append(r.HTTP.Paths, hp)
	}
	var out []*networkingv1.Ingress
	for _, ing := range ings {
		if ing != nil {
			out = append(out, ing)
		}
	}
	return out
}

func fuzzBuild(ings []*networkingv1.Ingress) *table {
	resolve := func(ns string, sb *networkingv1.IngressServiceBackend) *backend {
		return &backend{key: backendKey{service: types.NamespacedName{Namespace: ns, Name: sb.Name}, port: sb.Port}}
	}
	return buildTable(ings, resolve, func(Warning) {})
}

// FuzzRoutes builds a routing table from arbitrary rules and matches an
// arbitrary request: nothing panics, and the answer is the one a plain
// reading of the spec gives (refMatch: every rule tried, paths compared
// element by element).
func FuzzRoutes(f *testing.F) {
	f.Add("0|foo.bar.com|Prefix|/\n0|*.foo.com|Prefix|/\n1||D|", "baz.foo.com", "/x")
	f.Fuzz(func(t *testing.T, spec, host, reqPath string) {
		ings := fuzzIngresses(spec)
		tbl := fuzzBuild(ings)
		got := ""
		if r := tbl.match(requestHost(host), reqPath); r != nil && r.backend != nil {
			got = r.backend.key.service.Name
		}
		if want := refMatch(ings, requestHost(host), reqPath); got != want {
			t.Errorf("rules:\n%s\nrequest %q %q: table gives %q, the spec %q", spec, host, reqPath, got, want)
		}
	})
}

// refMatch is the spec read plainly: pick the host's rules (exact name,
// else a wildcard covering one label, else the rules without a host); of
// their paths that match, the longest match, Exact before Prefix, the
// longer path as written, the older Ingress, the earlier rule; else the
// defaultBackend of the first Ingress with a rule for that host, else the
// default backend (the first Ingress with a defaultBackend and no rules or
// a rule without a host); "" for 404.
func refMatch(ings []*networkingv1.Ingress, host, reqPath string) string {
	ings = slices.Clone(ings)
	precedence(ings)
	type cand struct {
		mlen, exact, plen, ing, rule int
		backend                      string
	}
	inGroup := func(rh string, g int) bool {
		kind, key := ruleHost(rh)
		switch g {
		case 0:
			return kind == hostExact && key == host
		case 1:
			i := strings.IndexByte(host, '.')
			return kind == hostWildcard && i > 0 && host[i+1:] == key
		default:
			return kind == hostAny
		}
	}
	group := 2
	for g := 0; g < 2 && group == 2; g++ {
		for _, ing := range ings {
			for _, r := range ing.Spec.Rules {
				if inGroup(r.Host, g) {
					group = g
				}
			}
		}
	}
	req := cleanPath(reqPath)
	reqElems := elements(req)
	var cands []cand
	n := 0
	for ii, ing := range ings {
		for _, r := range ing.Spec.Rules {
			if !inGroup(r.Host, group) || r.HTTP == nil {
				continue
			}
			for _, hp := range r.HTTP.Paths {
				n++
				pt := networkingv1.PathTypeImplementationSpecific
				if hp.PathType != nil {
					pt = *hp.PathType
				}
				p := hp.Path
				if p == "" && pt == networkingv1.PathTypeImplementationSpecific {
					p = "/"
				}
				if !strings.HasPrefix(p, "/") {
					continue
				}
				cp := cleanPath(p)
				c := cand{plen: len(cp), ing: ii, rule: n, backend: hp.Backend.Service.Name}
				switch pt {
				case networkingv1.PathTypeExact:
					if cp != req {
						continue
					}
					c.mlen, c.exact = len(cp), 1
				case networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific:
					pe := elements(cp)
					if len(pe) > len(reqElems) || !slices.Equal(pe, reqElems[:len(pe)]) {
						continue
					}
					for _, e := range pe {
						c.mlen += 1 + len(e)
					}
				default:
					continue
				}
				cands = append(cands, c)
			}
		}
	}
	if len(cands) > 0 {
		best := slices.MinFunc(cands, func(a, b cand) int {
			return cmp.Or(-cmp.Compare(a.mlen, b.mlen), -cmp.Compare(a.exact, b.exact), -cmp.Compare(a.plen, b.plen), cmp.Compare(a.ing, b.ing), cmp.Compare(a.rule, b.rule))
		})
		return best.backend
	}
	fallback := func(g int) string {
		for _, ing := range ings {
			if ing.Spec.DefaultBackend == nil {
				continue
			}
			if g == 2 && len(ing.Spec.Rules) == 0 {
				return ing.Spec.DefaultBackend.Service.Name
			}
			for _, r := range ing.Spec.Rules {
				if inGroup(r.Host, g) {
					return ing.Spec.DefaultBackend.Service.Name
				}
			}
		}
		return ""
	}
	if b := fallback(group); b != "" {
		return b
	}
	return fallback(2)
}

// elements splits a clean path into its elements, without the empty one
// a trailing '/' leaves.
func elements(p string) []string {
	var out []string
	for _, e := range strings.Split(p, "/") {
		if e != "" {
			out = append(out, e)
		}
	}
	return out
}

// FuzzNames checks the request normalization on arbitrary input: no
// panic; a clean path starts with '/', is clean, and cleaning it again
// changes nothing; a host has no upper case.
func FuzzNames(f *testing.F) {
	f.Add("Foo.Example.COM.:8080", "/a/./b/../../c//d/")
	f.Fuzz(func(t *testing.T, host, p string) {
		h := requestHost(host)
		if requestHost(h) != h && !strings.HasSuffix(h, ".") && !strings.Contains(h, ":") {
			t.Errorf("requestHost(%q) = %q is not stable", host, h)
		}
		for _, c := range []byte(h) {
			if 'A' <= c && c <= 'Z' {
				t.Errorf("requestHost(%q) = %q has upper case", host, h)
			}
		}
		c := cleanPath(p)
		if !strings.HasPrefix(c, "/") || !isClean(c) || cleanPath(c) != c {
			t.Errorf("cleanPath(%q) = %q: not clean or not stable", p, c)
		}
		ruleHost(host)
		wildcardSuffix(h)
	})
}

// FuzzTLSSecret feeds arbitrary bytes as a TLS Secret's certificate and
// key: nothing panics, and a Secret that does not parse leaves the host
// to the default certificate with a Warning.
func FuzzTLSSecret(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----\n"), "a.example.com")
	f.Fuzz(func(t *testing.T, crt, key []byte, host string) {
		s := parseTLSSecret(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key},
		})
		ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "i"}, Spec: networkingv1.IngressSpec{
			TLS:   []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: "s"}, {SecretName: "s"}},
			Rules: []networkingv1.IngressRule{{Host: host}},
		}}
		var warned []Warning
		ct := buildCerts([]*networkingv1.Ingress{ing}, map[types.NamespacedName]*tlsSecret{{Namespace: "ns", Name: "s"}: s}, func(w Warning) { warned = append(warned, w) })
		c := ct.lookup(host)
		if s.err != nil && (c != nil || len(warned) == 0) {
			t.Errorf("an unreadable Secret (%v) gave certificate %v, warnings %v", s.err, c != nil, warned)
		}
	})
}

// FuzzRequestHead checks the front end's request parser against
// net/http's on arbitrary bytes: what it takes, net/http reads the same
// way (method, target, path, Host, Connection: close, no body), and the
// request it forwards is exactly one request without a body, as net/http
// reads it.
func FuzzRequestHead(f *testing.F) {
	f.Add([]byte("GET /a/b?c=d HTTP/1.1\r\nHost: x.example\r\nConnection: close\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h h1Head
		if err := readHead(bufio.NewReaderSize(bytes.NewReader(data), h1ReadBuffer), &h); err != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:h.size])))
		if err != nil {
			t.Fatalf("the front end took %q, net/http refuses it: %v", data[:h.size], err)
		}
		if req.Method != string(h.method) || req.RequestURI != string(h.target) || req.Host != string(h.host) ||
			req.URL.Path != h.path || req.Close != h.close || req.ContentLength != 0 || len(req.TransferEncoding) != 0 {
			t.Fatalf("%q: front end %q %q %q path %q close %v; net/http %q %q %q path %q close %v length %d te %v",
				data[:h.size], h.method, h.target, h.host, h.path, h.close, req.Method, req.RequestURI, req.Host, req.URL.Path, req.Close, req.ContentLength, req.TransferEncoding)
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		if err := writeH1Request(bw, &h, "192.0.2.1", "80"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(bytes.NewReader(out.Bytes()))
		fwd, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("forwarded %q does not parse: %v", out.Bytes(), err)
		}
		if fwd.Method != req.Method || fwd.RequestURI != req.RequestURI || fwd.Host != req.Host || fwd.ContentLength != 0 ||
			len(fwd.TransferEncoding) != 0 || br.Buffered() != 0 || fwd.Header.Get("X-Forwarded-For") != "192.0.2.1" {
			t.Fatalf("forwarded %q: %s %s host %q length %d te %v, %d bytes left", out.Bytes(), fwd.Method, fwd.RequestURI, fwd.Host, fwd.ContentLength, fwd.TransferEncoding, br.Buffered())
		}
		for k, vv := range req.Header {
			if skipRequestHeader([]byte(k)) || k == "Connection" || k == "Host" {
				continue
			}
			if !slices.Equal(fwd.Header[k], vv) {
				t.Fatalf("header %s: forwarded %q, client sent %q", k, fwd.Header[k], vv)
			}
		}
	})
}

// FuzzResponseHead checks the endpoint response parser and the relay
// against net/http on arbitrary bytes: what the relay passes on parses as
// one response with net/http's status and body.
func FuzzResponseHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), false)
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		ubr := bufio.NewReaderSize(bytes.NewReader(data), upReadBuffer)
		var r upHead
		if err := readUpHead(ubr, &r); err != nil {
			return
		}
		wbr := bufio.NewReader(bytes.NewReader(data))
		var want *http.Response
		for { // net/http returns interim responses; the relay skips them
			var err error
			if want, err = http.ReadResponse(wbr, &http.Request{Method: method}); err != nil {
				t.Fatalf("the relay took %q, net/http refuses it: %v", data, err)
			}
			if want.StatusCode >= 200 {
				break
			}
		}
		wantBody, wantErr := io.ReadAll(want.Body)
		p := &Proxy{buffers: newBufferPool()}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		keep, _ := p.relay(bw, &upConn{br: ubr}, &r, head, false)
		bw.Flush()
		if !keep {
			return // a broken body: the client's connection is closed
		}
		got, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out.Bytes())), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("relayed %q does not parse: %v", out.Bytes(), err)
		}
		gotBody, err := io.ReadAll(got.Body)
		if err != nil || got.StatusCode != want.StatusCode {
			t.Fatalf("relayed %q: %d %v, want %d", out.Bytes(), got.StatusCode, err, want.StatusCode)
		}
		if wantErr == nil && !bytes.Equal(gotBody, wantBody) {
			t.Fatalf("relayed body %q, net/http reads %q from %q", gotBody, wantBody, data)
		}
	})
}
