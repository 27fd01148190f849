package apiserver_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/eventlog"
)

func p99(lat []time.Duration) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return float64(lat[(len(lat)*99)/100].Microseconds()) / 1000
}

func benchClient(b *testing.B, cfg *rest.Config) *kubernetes.Clientset {
	b.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

// BenchmarkAPICreate creates ConfigMaps through client-go with 1 and 32 concurrent clients, on
// the durable default (group commit).
func BenchmarkAPICreate(b *testing.B) {
	for _, bc := range []struct {
		clients int
		d       eventlog.Durability
	}{{1, eventlog.GroupCommit}, {32, eventlog.GroupCommit}, {32, eventlog.Lazy}} {
		clients := bc.clients
		b.Run(fmt.Sprintf("clients=%d/durability=%s", clients, bc.d), func(b *testing.B) {
			s := apiservertest.Start(b, apiservertest.Options{Durability: bc.d})
			benchCreates(b, benchClient(b, s.Config), clients)
		})
	}
	// Authorization's cost, in one run: 32 clients of a token user whom a RoleBinding lets
	// create ConfigMaps (RBAC decides every request), and the same with authorization off.
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("authz=%s", map[bool]string{true: "on", false: "off"}[on]), func(b *testing.B) {
			s := apiservertest.Start(b, apiservertest.Options{Tokens: "bench-token,bench,2001\n",
				Configure: func(c *apiserver.Config) { c.AuthorizeAll = !on }})
			benchRBAC(b, s)
			cfg := rest.AnonymousClientConfig(s.Config)
			cfg.BearerToken = "bench-token"
			benchCreates(b, benchClient(b, cfg), 32)
		})
	}
}

// benchRBAC lets the user bench create ConfigMaps in default.
func benchRBAC(b *testing.B, s *apiservertest.Server) {
	b.Helper()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := b.Context()
	if _, err := cs.RbacV1().Roles("default").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "cm-writer"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"create", "get", "list"}, APIGroups: []string{""}, Resources: []string{"configmaps"}}}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "cm-writer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "cm-writer"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "bench"}}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := s.API.Store().WaitDelivered(ctx, s.API.Store().Applied()); err != nil {
		b.Fatal(err)
	}
}

// benchCreates creates b.N ConfigMaps from clients goroutines and reports creates/s and p99-ms.
func benchCreates(b *testing.B, cs kubernetes.Interface, clients int) {
	ctx := b.Context()
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Labels: map[string]string{"app": "bench"}},
					Data: map[string]string{"key": "value", "other": "some more data for the object"}}
				t0 := time.Now()
				if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "creates/s")
	b.ReportMetric(p99(slices.Concat(lat...)), "p99-ms")
}

func benchPod(i int) *corev1.Pod {
	group := "rest"
	if i%10 == 0 {
		group = "tenth"
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%05d", i), Labels: map[string]string{"app": "bench", "group": group}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/app:1.0",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
			Env:   []corev1.EnvVar{{Name: "MODE", Value: "bench"}},
		}}},
	}
}

// BenchmarkAPIList lists 10,000 stored pods: with a selector matching 1,000 of them, and all of
// them, as JSON and as protobuf.
func BenchmarkAPIList(b *testing.B) {
	s := apiservertest.Start(b, apiservertest.Options{})
	cs := benchClient(b, s.Config)
	ctx := b.Context()
	const pods = 10000
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= pods {
					return
				}
				if _, err := cs.CoreV1().Pods("default").Create(ctx, benchPod(i), metav1.CreateOptions{}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	// One list first, in each format: the server encodes each revision once and keeps it, as it
	// would have for any earlier list or watch of the same objects.
	for _, accept := range []string{"application/json", "application/vnd.kubernetes.protobuf"} {
		cfg := rest.CopyConfig(s.Config)
		cfg.ContentType, cfg.AcceptContentTypes = accept, accept
		if _, err := benchClient(b, cfg).CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	// The server's side alone: the JSON list read whole and not decoded.
	for _, sel := range []struct{ name, selector string }{{"1000of10000", "group%3Dtenth"}, {"all10000", ""}} {
		b.Run(fmt.Sprintf("select=%s/enc=json-undecoded", sel.name), func(b *testing.B) {
			tr, err := rest.TransportFor(s.Config)
			if err != nil {
				b.Fatal(err)
			}
			hc := &http.Client{Transport: tr}
			var lat []time.Duration
			for b.Loop() {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/api/v1/namespaces/default/pods?labelSelector="+sel.selector, nil)
				req.Header.Set("Accept", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || n < 1000 {
					b.Fatalf("list: %v %d %d bytes", err, resp.StatusCode, n)
				}
				lat = append(lat, time.Since(t0))
			}
			b.ReportMetric(p99(lat), "p99-ms")
		})
	}
	for _, enc := range []string{"json", "protobuf"} {
		cfg := rest.CopyConfig(s.Config)
		if enc == "protobuf" {
			cfg.ContentType = "application/vnd.kubernetes.protobuf"
			cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
		} else {
			cfg.ContentType = "application/json"
			cfg.AcceptContentTypes = "application/json"
		}
		c := benchClient(b, cfg)
		for _, sel := range []struct{ name, selector string }{{"1000of10000", "group=tenth"}, {"all10000", ""}} {
			b.Run(fmt.Sprintf("select=%s/enc=%s", sel.name, enc), func(b *testing.B) {
				want := pods
				if sel.selector != "" {
					want = pods / 10
				}
				var lat []time.Duration
				for b.Loop() {
					t0 := time.Now()
					l, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: sel.selector})
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
					if len(l.Items) != want {
						b.Fatalf("listed %d pods, want %d", len(l.Items), want)
					}
				}
				b.ReportMetric(p99(lat), "p99-ms")
			})
		}
	}
}

// BenchmarkWatchFanout has 1,000 watchers on one ConfigMap; each iteration changes it once and
// measures how long each watcher takes to see the change.
func BenchmarkWatchFanout(b *testing.B) {
	s := apiservertest.Start(b, apiservertest.Options{})
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	cs := benchClient(b, s.Config)
	cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "fanout"}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	const watchers = 1000
	// Watchers share a few connections, as programs with one client each would not: HTTP/2
	// multiplexes them, up to the server's stream limit.
	clients := make([]*kubernetes.Clientset, 8)
	for i := range clients {
		clients[i] = benchClient(b, rest.CopyConfig(s.Config))
	}
	type seen struct {
		rv string
		at time.Time
	}
	seenCh := make(chan seen, watchers*4)
	for i := 0; i < watchers; i++ {
		w, err := clients[i%len(clients)].CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{
			FieldSelector: "metadata.name=fanout", ResourceVersion: cm.ResourceVersion})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				if ev.Type == watch.Modified {
					seenCh <- seen{rv: ev.Object.(*corev1.ConfigMap).ResourceVersion, at: time.Now()}
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // let every watch reach the server
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		t0 := time.Now()
		up, err := cs.CoreV1().ConfigMaps("default").Patch(ctx, "fanout", types.MergePatchType,
			[]byte(fmt.Sprintf(`{"data":{"n":"%d"}}`, i)), metav1.PatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for got := 0; got < watchers; {
			select {
			case sn := <-seenCh:
				if sn.rv == up.ResourceVersion {
					lat = append(lat, sn.at.Sub(t0))
					got++
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("only %d of %d watchers saw the change", got, watchers)
			}
		}
	}
	b.ReportMetric(p99(lat), "p99-ms")
}
