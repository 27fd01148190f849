package apiserver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/eventlog"
)

func TestWatchBookmarksAndInitialEvents(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{Configure: func(c *apiserver.Config) { c.BookmarkInterval = 200 * time.Millisecond }})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	send := true
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{
		SendInitialEvents: &send, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var got []string
	for len(got) < 3 {
		select {
		case ev := <-w.ResultChan():
			c := ev.Object.(*corev1.ConfigMap)
			got = append(got, fmt.Sprintf("%s %s %s", ev.Type, c.Name, c.Annotations[metav1.InitialEventsAnnotationKey]))
		case <-ctx.Done():
			t.Fatalf("events %v", got)
		}
	}
	if got[0] != "ADDED b " || got[1] != "BOOKMARK  true" || got[2] != "BOOKMARK  " {
		t.Fatalf("events %v, want the object, the initial-events-end bookmark, then a periodic bookmark", got)
	}
	// sendInitialEvents without resourceVersionMatch is invalid.
	if _, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{SendInitialEvents: &send}); !apierrors.IsInvalid(err) {
		t.Fatalf("sendInitialEvents alone: %v", err)
	}
}

func TestWatchTooOld(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{LogConfig: func(c *eventlog.Config) { c.MaxBytes = 64 << 10 }})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	big := strings.Repeat("x", 4096)
	for i := 0; i < 60; i++ {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("c", i)}, Data: map[string]string{"d": big}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from a resourceVersion retention dropped: %v, want 410", err)
	}
	// A list at an exact resourceVersion that retention dropped is 410 too.
	_, err = cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{ResourceVersion: "2", ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("exact list at a dropped resourceVersion: %v, want 410", err)
	}
}

func TestDryRunDeleteCollectionMetrics(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	dry, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dry"}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || dry.Name != "dry" || dry.UID == "" {
		t.Fatalf("dry-run create: %v %+v", err, dry)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a dry run created: %v", err)
	}
	for i := 0; i < 4; i++ {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("d", i),
			Labels: map[string]string{"batch": fmt.Sprint(i % 2)}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.CoreV1().ConfigMaps("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "batch=0"}); err != nil {
		t.Fatal(err)
	}
	l, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 2 || l.Items[0].Name != "d1" || l.Items[1].Name != "d3" {
		t.Fatalf("after deletecollection: %v %v", err, l.Items)
	}
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	// A watch is counted when the server sees it end, which follows the client's Stop by a moment.
	var code int
	var m string
	for deadline := time.Now().Add(10 * time.Second); ; {
		var body []byte
		code, body = raw(t, s.Config, "GET", "/metrics", nil, "")
		m = string(body)
		if strings.Contains(m, `verb="WATCH"`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 200 || !strings.Contains(m, `apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 4`) ||
		!strings.Contains(m, `scope="namespace",subresource="",verb="DELETE"`) || !strings.Contains(m, "apiserver_request_duration_seconds_bucket") ||
		!strings.Contains(m, `verb="WATCH"`) {
		t.Fatalf("metrics: %d\n%s", code, m)
	}
}

// TestWatchReplayWithSelector resumes a selective watch from before a restart: the events come
// from the log, and an object that stopped matching is DELETED for the watcher, as from the hub.
func TestWatchReplayWithSelector(t *testing.T) {
	dir := t.TempDir()
	s1 := apiservertest.Start(t, apiservertest.Options{DataDir: dir})
	cs := kubernetes.NewForConfigOrDie(s1.Config)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	mk := func(name, w string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"w": w}}}
	}
	first, err := cs.CoreV1().ConfigMaps("default").Create(ctx, mk("stays", "1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, mk("leaves", "1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rv := first.ResourceVersion
	if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, mk("leaves", "0"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	changed := mk("stays", "1")
	changed.Data = map[string]string{"changed": "yes"}
	if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, changed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, mk("other", "0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s1.Stop()
	s2 := apiservertest.Start(t, apiservertest.Options{DataDir: dir})
	w, err := kubernetes.NewForConfigOrDie(s2.Config).CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: rv, LabelSelector: "w=1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var got []string
	for len(got) < 3 {
		select {
		case ev := <-w.ResultChan():
			got = append(got, fmt.Sprintf("%s %s", ev.Type, ev.Object.(*corev1.ConfigMap).Name))
		case <-ctx.Done():
			t.Fatalf("events %v", got)
		}
	}
	if fmt.Sprint(got) != "[ADDED leaves DELETED leaves MODIFIED stays]" {
		t.Fatalf("replayed events %v", got)
	}
}
