package apiserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/apiserver/logplaneapi"
)

// raw sends a request with the given client configuration's transport and returns the status
// code and body.
func raw(t *testing.T, cfg *rest.Config, method, path string, header map[string]string, body string) (int, []byte) {
	t.Helper()
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, cfg.Host+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
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
	return resp.StatusCode, b
}

// anonymous is a client configuration that trusts the server but presents no credentials.
func anonymous(cfg *rest.Config) *rest.Config {
	c := rest.AnonymousClientConfig(cfg)
	return c
}

func TestAuthentication(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{Tokens: "s3cret,alice,1001,\"devs,ops\"\n"})
	bindClusterAdmin(t, s, "alice")
	anon := anonymous(s.Config)
	for _, p := range []string{"/healthz", "/readyz", "/livez", "/version"} {
		if code, body := raw(t, anon, "GET", p, nil, ""); code != http.StatusOK {
			t.Fatalf("%s without credentials: %d %s", p, code, body)
		}
	}
	for _, p := range []string{"/api", "/apis", "/api/v1/namespaces", "/metrics", "/openapi/v3"} {
		code, body := raw(t, anon, "GET", p, nil, "")
		if code != http.StatusUnauthorized {
			t.Fatalf("%s without credentials: %d %s", p, code, body)
		}
		var st metav1.Status
		if err := json.Unmarshal(body, &st); err != nil || st.Reason != metav1.StatusReasonUnauthorized {
			t.Fatalf("%s: not a Status: %s", p, body)
		}
	}
	bad := rest.CopyConfig(anon)
	bad.BearerToken = "wrong"
	if _, err := kubernetes.NewForConfigOrDie(bad).CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Fatalf("wrong token: %v", err)
	}
	good := rest.CopyConfig(anon)
	good.BearerToken = "s3cret"
	cs := kubernetes.NewForConfigOrDie(good)
	if _, err := cs.CoreV1().ConfigMaps("default").Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "by-alice"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The token's user is the actor of the change.
	code, body := raw(t, s.Config, "GET", logplaneapi.HistoryPath("/api/v1/namespaces/default/configmaps/by-alice"), nil, "")
	var h logplaneapi.History
	if code != http.StatusOK || json.Unmarshal(body, &h) != nil || len(h.Items) != 1 || h.Items[0].Actor.Name != "alice" || h.Items[0].Actor.Kind != "user" {
		t.Fatalf("history: %d %s", code, body)
	}
	// Who am I (kubectl auth whoami).
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || review.Status.UserInfo.Username != "alice" || review.Status.UserInfo.UID != "1001" ||
		!slices.Contains(review.Status.UserInfo.Groups, "ops") || !slices.Contains(review.Status.UserInfo.Groups, "system:authenticated") {
		t.Fatalf("self subject review: %v %+v", err, review)
	}
	// A client certificate from another CA is not trusted.
	foreign := rest.CopyConfig(anon)
	foreign.TLSClientConfig.CertData, foreign.TLSClientConfig.KeyData = selfSignedPair(t)
	if _, err := kubernetes.NewForConfigOrDie(foreign).CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); err == nil {
		t.Fatal("a foreign client certificate was accepted")
	}
}

func TestProtobufClient(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cfg := rest.CopyConfig(s.Config)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	p, err := cs.CoreV1().Pods("default").Create(ctx, pod("proto"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().Pods("default").Get(ctx, "proto", metav1.GetOptions{})
	if err != nil || got.Spec.Containers[0].Image != "busybox" || got.ResourceVersion != p.ResourceVersion {
		t.Fatalf("get: %v %+v", err, got)
	}
	l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 1 || l.ResourceVersion == "" || l.Items[0].Name != "proto" {
		t.Fatalf("list: %v %+v", err, l)
	}
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Added || ev.Object.(*corev1.Pod).Name != "proto" {
			t.Fatalf("watch: %v %v", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("no watch event")
	}
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "missing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("missing: %v", err)
	}
}

func pod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
}

func TestDynamicClientAndErrors(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	dc := dynamic.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	gvr := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	d := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "dyn"},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "dyn"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "dyn"}},
				"spec":     map[string]any{"containers": []any{map[string]any{"name": "c", "image": "busybox"}}},
			},
		},
	}}
	created, err := dc.Resource(gvr).Namespace("default").Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := unstructured.NestedInt64(created.Object, "spec", "replicas"); r != 1 {
		t.Fatalf("defaulted replicas: %d", r)
	}
	// Server-side apply through the dynamic client: the creator owns the defaulted replicas,
	// as on Kubernetes, so taking them over is a conflict unless forced.
	apply := []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"dyn"},"spec":{"replicas":3}}`)
	if _, err := dc.Resource(gvr).Namespace("default").Patch(ctx, "dyn", types.ApplyPatchType, apply, metav1.PatchOptions{FieldManager: "tester"}); !apierrors.IsConflict(err) {
		t.Fatalf("apply over another manager's field: %v", err)
	}
	out, err := dc.Resource(gvr).Namespace("default").Patch(ctx, "dyn", types.ApplyPatchType, apply, metav1.PatchOptions{FieldManager: "tester", Force: ptrTrue()})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := unstructured.NestedInt64(out.Object, "spec", "replicas"); r != 3 {
		t.Fatalf("applied replicas: %d", r)
	}
	// Errors are Statuses with the right codes, and change nothing.
	for _, c := range []struct {
		name, method, path, ct, body string
		code                         int
	}{
		{"bad json", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"kind":`, 400},
		{"bad yaml", "POST", "/api/v1/namespaces/default/configmaps", "application/yaml", "a: [b", 400},
		{"wrong kind", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`, 400},
		{"invalid", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}`, 422},
		{"missing", "GET", "/api/v1/namespaces/default/configmaps/nope", "", "", 404},
		{"unknown resource", "GET", "/api/v1/widgets", "", "", 404},
		{"unknown group", "GET", "/apis/example.com/v1/widgets", "", "", 404},
		{"bad selector", "GET", "/api/v1/pods?labelSelector=a%20in%20(", "", "", 400},
		{"bad field selector", "GET", "/api/v1/pods?fieldSelector=spec.bogus=1", "", "", 400},
		{"bad patch type", "PATCH", "/apis/apps/v1/namespaces/default/deployments/dyn", "text/plain", "{}", 415},
		{"bad json patch", "PATCH", "/apis/apps/v1/namespaces/default/deployments/dyn", "application/json-patch+json", `[{"op":"nope"}]`, 422},
		{"too old", "GET", "/api/v1/pods?resourceVersion=999999999&resourceVersionMatch=NotOlderThan", "", "", 504},
		{"bad rv", "GET", "/api/v1/pods?resourceVersion=abc", "", "", 400},
		{"bad continue", "GET", "/api/v1/pods?limit=1&continue=zzz", "", "", 400},
		{"namespaced by name outside namespace", "GET", "/api/v1/pods/x", "", "", 404},
		{"create at an item", "POST", "/api/v1/namespaces/default/configmaps/x", "application/json", `{}`, 405},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{}
			if c.ct != "" {
				h["Content-Type"] = c.ct
			}
			code, body := raw(t, s.Config, c.method, c.path, h, c.body)
			if code != c.code {
				t.Fatalf("%s %s: %d, want %d: %s", c.method, c.path, code, c.code, body)
			}
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" || int(st.Code) != c.code {
				t.Fatalf("not a Status with code %d: %s", c.code, body)
			}
		})
	}
	cs := kubernetes.NewForConfigOrDie(s.Config)
	if l, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Fatalf("errors wrote configmaps: %v %d", err, len(l.Items))
	}
}

func TestPagingAndSelectors(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	for i := 0; i < 7; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Labels: map[string]string{"parity": []string{"even", "odd"}[i%2]}}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	opts := metav1.ListOptions{Limit: 3, LabelSelector: "parity!=odd"}
	listRV := ""
	for pages := 0; ; pages++ {
		l, err := cs.CoreV1().ConfigMaps("default").List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if listRV == "" {
			listRV = l.ResourceVersion
			// Changes after the first page do not show in the next ones.
			extra := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm-5a", Labels: map[string]string{"parity": "even"}}}
			if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, extra, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "cm-6", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		} else if l.ResourceVersion != listRV {
			t.Fatalf("page at %s, first page at %s", l.ResourceVersion, listRV)
		}
		for _, cm := range l.Items {
			names = append(names, cm.Name)
		}
		if l.Continue == "" {
			if pages != 1 {
				t.Fatalf("%d pages", pages+1)
			}
			break
		}
		opts.Continue = l.Continue
	}
	if fmt.Sprint(names) != "[cm-0 cm-2 cm-4 cm-6]" {
		t.Fatalf("paged list: %v", names)
	}
	// A continue token the server does not know (expired, or from another server) is 410.
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"id":"nope","rv":1,"n":"cm-0"}`))
	if _, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{Limit: 3, Continue: forged}); !apierrors.IsResourceExpired(err) {
		t.Fatalf("unknown continue token: %v", err)
	}
	l, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=cm-3,metadata.namespace=default"})
	if err != nil || len(l.Items) != 1 || l.Items[0].Name != "cm-3" {
		t.Fatalf("field selector: %v %v", err, l)
	}
}

func TestHistoryTimeTravelAudit(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "tt"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rv1 := cm.ResourceVersion
	time.Sleep(1100 * time.Millisecond)
	t1 := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond)
	cm.Data["v"] = "2"
	if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "tt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	code, body := raw(t, s.Config, "GET", logplaneapi.HistoryPath("/api/v1/namespaces/default/configmaps/tt"), nil, "")
	var h logplaneapi.History
	if code != 200 || json.Unmarshal(body, &h) != nil || len(h.Items) != 3 {
		t.Fatalf("history: %d %s", code, body)
	}
	if h.Items[0].Type != "ADDED" || h.Items[0].Reason != "create" || h.Items[0].Actor.Name != "admin" ||
		h.Items[1].Reason != "update" || !strings.Contains(string(h.Items[1].Changes), `"v":"2"`) || h.Items[2].Type != "DELETED" {
		t.Fatalf("history items: %s", body)
	}
	// Get and list as they were, by resourceVersion and by time, on the Kubernetes URLs.
	for _, at := range []string{rv1, t1.Format(time.RFC3339Nano)} {
		code, body := raw(t, s.Config, "GET", "/api/v1/namespaces/default/configmaps/tt", map[string]string{logplaneapi.AtHeader: at}, "")
		var got corev1.ConfigMap
		if code != 200 || json.Unmarshal(body, &got) != nil || got.Data["v"] != "1" {
			t.Fatalf("get at %s: %d %s", at, code, body)
		}
		code, body = raw(t, s.Config, "GET", "/api/v1/namespaces/default/configmaps", map[string]string{logplaneapi.AtHeader: at}, "")
		var l corev1.ConfigMapList
		if code != 200 || json.Unmarshal(body, &l) != nil || len(l.Items) != 1 || l.Items[0].Data["v"] != "1" {
			t.Fatalf("list at %s: %d %s", at, code, body)
		}
	}
	code, body = raw(t, s.Config, "GET", logplaneapi.AuditPath+"?actor=admin&resource=cm&since=1h", nil, "")
	var a logplaneapi.Audit
	if code != 200 || json.Unmarshal(body, &a) != nil || len(a.Items) != 3 || a.Items[0].Name != "tt" || a.Items[2].Type != "DELETED" {
		t.Fatalf("audit: %d %s", code, body)
	}
	code, body = raw(t, s.Config, "GET", logplaneapi.AuditPath+"?actor=nobody", nil, "")
	if code != 200 || json.Unmarshal(body, &a) != nil || len(a.Items) != 0 {
		t.Fatalf("audit of nobody: %d %s", code, body)
	}
	// A limit keeps the newest, still oldest first.
	code, body = raw(t, s.Config, "GET", logplaneapi.AuditPath+"?actor=admin&resource=cm&limit=2", nil, "")
	if code != 200 || json.Unmarshal(body, &a) != nil || len(a.Items) != 2 || a.Items[0].Reason != "update" || a.Items[1].Type != "DELETED" {
		t.Fatalf("audit limit=2: %d %s", code, body)
	}

	// Beyond the log: a resourceVersion it has not reached is Kubernetes' "Too large resource
	// version" as the etcd3 store answers it (504, cause ResourceVersionTooLarge, no retry
	// advice); a time in the future is a 400.
	for _, path := range []string{"/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/configmaps/tt"} {
		code, body = raw(t, s.Config, "GET", path, map[string]string{logplaneapi.AtHeader: "99999999"}, "")
		var st metav1.Status
		if code != http.StatusGatewayTimeout || json.Unmarshal(body, &st) != nil || st.Reason != metav1.StatusReasonTimeout ||
			st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Type != metav1.CauseTypeResourceVersionTooLarge ||
			st.Details.RetryAfterSeconds != 0 || !strings.Contains(st.Message, "Too large resource version: 99999999, current: ") {
			t.Errorf("GET %s at 99999999: %d %s", path, code, body)
		}
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		code, body = raw(t, s.Config, "GET", path, map[string]string{logplaneapi.AtHeader: future}, "")
		if code != http.StatusBadRequest || json.Unmarshal(body, &st) != nil || !strings.Contains(st.Message, "is in the future") {
			t.Errorf("GET %s at %s: %d %s", path, future, code, body)
		}
	}
}

func ptrTrue() *bool { b := true; return &b }

func TestBindingEvictionAndYAML(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("bound"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "bound"}, Target: corev1.ObjectReference{Kind: "Node", Name: "node-1"}}
	if err := cs.CoreV1().Pods("default").Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := cs.CoreV1().Pods("default").Get(ctx, "bound", metav1.GetOptions{})
	if err != nil || p.Spec.NodeName != "node-1" || len(p.Status.Conditions) == 0 || p.Status.Conditions[0].Type != corev1.PodScheduled {
		t.Fatalf("bound pod: %v %+v", err, p)
	}
	if err := cs.CoreV1().Pods("default").Bind(ctx, b, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("second binding: %v", err)
	}
	// Evicting a pod on a node deletes it gracefully: it stays, terminating, for its node agent.
	if err := cs.CoreV1().Pods("default").EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "bound"}}); err != nil {
		t.Fatal(err)
	}
	p, err = cs.CoreV1().Pods("default").Get(ctx, "bound", metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("evicted pod: %v %+v", err, p)
	}
	// As on Kubernetes, the eviction gave it the DisruptionTarget condition first.
	disrupted := false
	for _, c := range p.Status.Conditions {
		disrupted = disrupted || c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == "EvictionByEvictionAPI"
	}
	if !disrupted {
		t.Errorf("evicted pod's conditions: %+v", p.Status.Conditions)
	}
	code, body := raw(t, s.Config, "GET", "/api/v1/namespaces/default/pods/bound", map[string]string{"Accept": "application/yaml"}, "")
	if code != 200 || !strings.Contains(string(body), "nodeName: node-1") || !strings.Contains(string(body), "kind: Pod") {
		t.Fatalf("yaml: %d %s", code, body)
	}
	code, body = raw(t, s.Config, "POST", "/api/v1/namespaces/default/configmaps", map[string]string{"Content-Type": "application/yaml"},
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n")
	if code != 201 {
		t.Fatalf("yaml create: %d %s", code, body)
	}
	code, _ = raw(t, s.Config, "GET", "/api/v1/namespaces/default/configmaps", map[string]string{"Accept": "text/html"}, "")
	if code != http.StatusNotAcceptable {
		t.Fatalf("unacceptable type: %d", code)
	}
}
