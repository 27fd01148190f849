package apiserver_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/apiservertest"
)

// proxyDialer stands in for the network between the API server and the pods: it dials the
// test's backend for the pod addresses it knows and records every address the server dialled.
type proxyDialer struct {
	mu      sync.Mutex
	routes  map[string]string // pod ip:port -> backend address on loopback
	dialled []string
}

func (d *proxyDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialled = append(d.dialled, addr)
	to, ok := d.routes[addr]
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	}
	return (&net.Dialer{}).DialContext(ctx, network, to)
}

func (d *proxyDialer) last() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.dialled) == 0 {
		return ""
	}
	return d.dialled[len(d.dialled)-1]
}

// TestProxySubresources: pods/proxy and services/proxy reach the pod by the forms kubectl proxy
// and client-go's ProxyGet use (name, name:port, name:portname), with every method, the
// path after /proxy and the query; HTML links are rewritten under the proxy path; a path
// without its trailing slash is redirected; an unknown pod or Service is 404, a Service without
// endpoints or without the port 503, a pod without an address 400; an upgraded connection goes
// through; RBAC decides on the proxy subresource itself.
func TestProxySubresources(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/echo" && r.Header.Get("Upgrade") == "echo" {
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			rw.Flush()
			line, _ := rw.ReadString('\n')
			fmt.Fprint(rw, "echo: "+line)
			rw.Flush()
			return
		}
		if r.URL.Path == "/page" {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<html><body><a href="/other">other</a></body></html>`)
			return
		}
		fmt.Fprintf(w, "%s %s ?%s body=%s", r.Method, r.URL.Path, r.URL.RawQuery, body)
	}))
	t.Cleanup(backend.Close)
	dialer := &proxyDialer{routes: map[string]string{
		"10.244.0.5:8080": backend.Listener.Addr().String(),
		"10.244.0.6:8080": backend.Listener.Addr().String(),
	}}
	s := apiservertest.Start(t, apiservertest.Options{
		Tokens: "alice-token,alice,1001\n",
		Configure: func(c *apiserver.Config) {
			c.ProxyTransport = &http.Transport{DialContext: dialer.DialContext}
		},
	})
	ctx := t.Context()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ns := "default"
	mkPod := func(name, ip string) {
		t.Helper()
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "side", Image: "busybox"},
			{Name: "web", Image: "hello", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
		}}}
		p, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ip != "" {
			p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
			if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mkPod("web", "10.244.0.5")
	mkPod("web2", "10.244.0.6")
	mkPod("pending", "")
	for _, name := range []string{"web", "empty"} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
		if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The endpoints of web: a stale address (its pod has another IP now) and web2's.
	eps := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Subsets: []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{
			{IP: "10.244.0.9", TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web"}},
			{IP: "10.244.0.6", TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web2"}},
		},
		Ports: []corev1.EndpointPort{{Name: "http", Port: 8080}},
	}}}
	if _, err := cs.CoreV1().Endpoints(ns).Create(ctx, eps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	get := func(res rest.ResponseWrapper) string {
		t.Helper()
		b, err := res.DoRaw(ctx)
		if err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return string(b)
	}
	if got := get(cs.CoreV1().Pods(ns).ProxyGet("", "web", "8080", "/a/b", map[string]string{"q": "1"})); got != "GET /a/b ?q=1 body=" {
		t.Errorf("pods/web:8080/proxy/a/b/?q=1: %q", got)
	}
	if d := dialer.last(); d != "10.244.0.5:8080" {
		t.Errorf("the pod was dialled at %q", d)
	}
	// No port: the first port a container declares.
	if got := get(cs.CoreV1().Pods(ns).ProxyGet("", "web", "", "/x", nil)); got != "GET /x ? body=" {
		t.Errorf("pods/web/proxy/x: %q", got)
	}
	for _, port := range []string{"80", "http"} {
		for range 5 { // the stale address is never chosen
			if got := get(cs.CoreV1().Services(ns).ProxyGet("", "web", port, "/s", nil)); got != "GET /s ? body=" {
				t.Errorf("services/web:%s/proxy/s: %q", port, got)
			}
			if d := dialer.last(); d != "10.244.0.6:8080" {
				t.Errorf("services/web:%s: dialled %q", port, d)
			}
		}
	}
	// Every method, with its body.
	for _, method := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		res := cs.CoreV1().RESTClient().Verb(method).Namespace(ns).Resource("services").Name("web:80").SubResource("proxy", "m").
			Body([]byte("payload")).Do(ctx)
		b, err := res.Raw()
		if want := method + " /m ? body=payload"; err != nil || string(b) != want {
			t.Errorf("%s services/web:80/proxy/m: %q %v, want %q", method, b, err, want)
		}
	}
	// HTML links are rewritten to stay under the proxy.
	if got := get(cs.CoreV1().Pods(ns).ProxyGet("", "web", "8080", "/page", nil)); !strings.Contains(got, `href="/api/v1/namespaces/default/pods/web:8080/proxy/other"`) {
		t.Errorf("an HTML page through the proxy: %s", got)
	}
	// Without the trailing slash after proxy: a redirect to it, as Kubernetes does.
	hc, err := rest.HTTPClientFor(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(s.Config.Host + "/api/v1/namespaces/default/services/web:80/proxy")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp2, err := hc.Get(s.Config.Host + "/api/v1/namespaces/default/pods/web:8080/proxy/dir/?x=y")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if string(b) != "GET /dir/ ?x=y body=" {
		t.Errorf("pods/web:8080/proxy/dir/?x=y: %s %q", resp2.Status, b)
	}
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/api/v1/namespaces/default/services/web:80/proxy/" {
		t.Errorf("services/web:80/proxy without a slash: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}

	// An upgraded connection goes through to the pod.
	tlsConfig, err := rest.TLSConfigFor(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(s.Config.Host, "https://")
	conn, err := tls.Dial("tcp", host, tlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/namespaces/default/services/web:http/proxy/echo HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", host)
	br := bufio.NewReader(conn)
	up, err := http.ReadResponse(br, nil)
	if err != nil || up.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("an upgrade through services/web:http/proxy/echo: %v %v", up, err)
	}
	fmt.Fprint(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo: ping\n" {
		t.Errorf("through the upgraded connection: %q %v", line, err)
	}

	// Errors are Statuses (ProxyGet's DoRaw does not decode them: Do does).
	proxyGet := func(cs *kubernetes.Clientset, resource, name string) error {
		return cs.CoreV1().RESTClient().Get().Namespace(ns).Resource(resource).Name(name).SubResource("proxy").Do(ctx).Error()
	}
	for _, c := range []struct {
		name     string
		resource string
		id       string
		code     int32
		msg      string
	}{
		{"unknown pod", "pods", "nope:8080", 404, `pods "nope" not found`},
		{"pod without an address", "pods", "pending:8080", 400, "address not allowed"},
		{"bad name", "pods", "a:b:c:d", 400, `invalid pod request "a:b:c:d"`},
		{"unknown service", "services", "nope:80", 404, `services "nope" not found`},
		{"service without endpoints", "services", "empty:http", 404, `endpoints "empty" not found`},
		{"no such service port", "services", "web:81", 503, `no service port 81 found for service "web"`},
		{"no such port name", "services", "web:grpc", 503, `no endpoints available for service "web:grpc"`},
		{"pod port nothing listens on", "pods", "web2:9090", 503, "error trying to reach service"},
	} {
		err := proxyGet(cs, c.resource, c.id)
		var st apierrors.APIStatus
		if !errors.As(err, &st) || st.Status().Code != c.code || !strings.Contains(st.Status().Message, c.msg) {
			t.Errorf("%s: %v, want %d %q", c.name, err, c.code, c.msg)
		}
	}
	if _, err := cs.CoreV1().Endpoints(ns).Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := proxyGet(cs, "services", "empty:http"); !apierrors.IsServiceUnavailable(err) ||
		!strings.Contains(err.Error(), `no endpoints available for service "empty"`) {
		t.Errorf("a Service with empty Endpoints: %v", err)
	}

	// RBAC: reading services is not proxying to them.
	alice := kubernetes.NewForConfigOrDie(tokenConfig(s, "alice-token"))
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "svc"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "pods"}, Verbs: []string{"get"}}}}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "svc"}, Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "svc"}}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := proxyGet(alice, "services", "web:80"); !apierrors.IsForbidden(err) ||
		!strings.Contains(err.Error(), `cannot get resource "services/proxy"`) {
		t.Errorf("alice, who may get services, proxying: %v", err)
	}
	role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services/proxy"}, Verbs: []string{"get"}})
	if _, err := cs.RbacV1().Roles(ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.CoreV1().Services(ns).ProxyGet("", "web", "80", "/", nil).DoRaw(ctx); err != nil {
		t.Errorf("alice with get services/proxy: %v", err)
	}
	if _, err := alice.CoreV1().RESTClient().Post().Namespace(ns).Resource("services").Name("web:80").SubResource("proxy").Do(ctx).Raw(); !apierrors.IsForbidden(err) {
		t.Errorf("alice, who may only get services/proxy, posting through it: %v", err)
	}
	if err := proxyGet(alice, "pods", "web:8080"); !apierrors.IsForbidden(err) {
		t.Errorf("alice proxying to a pod: %v", err)
	}
}
