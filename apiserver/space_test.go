package apiserver_test

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/disktest"
	"github.com/logplane/logplane/eventlog"
)

// TestFullDiskAnswers507AndWritesResume runs the API server on a 64 MiB tmpfs and fills it:
// writes answer 507 Insufficient Storage (kubectl says InsufficientStorage), fast, while gets,
// lists and a watch opened before go on; once space is freed, writes resume within 5 s and the
// watch sees them. Before the fix writes answered 500, then 504 after 5 s, until a restart.
func TestFullDiskAnswers507AndWritesResume(t *testing.T) {
	apiservertest.NeedKubectl(t)
	dir := disktest.Tmpfs(t, 64<<20)
	s := apiservertest.Start(t, apiservertest.Options{DataDir: dir, LogConfig: func(c *eventlog.Config) { c.MinFreeBytes = 4 << 20 }})
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cms := cs.CoreV1().ConfigMaps("default")
	cm := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": strings.Repeat("v", 4000)}}
	}
	if _, err := cms.Create(ctx, cm("before"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	filler := disktest.Fill(t, dir)
	var status *apierrors.StatusError
	for i := 0; ; i++ {
		_, err := cms.Create(ctx, cm("filling-"+string(rune('a'+i%26))+strings.Repeat("x", i/26)), metav1.CreateOptions{})
		if err == nil {
			continue
		}
		if !errors.As(err, &status) {
			t.Fatalf("create on a full disk: %v", err)
		}
		break
	}
	if status.ErrStatus.Code != http.StatusInsufficientStorage || status.ErrStatus.Reason != "InsufficientStorage" {
		t.Fatalf("create on a full disk: %d %s %q, want 507 InsufficientStorage", status.ErrStatus.Code, status.ErrStatus.Reason, status.ErrStatus.Message)
	}
	start := time.Now()
	out, err := s.Kubectl(t, "", "create", "configmap", "while-full", "--from-literal=a=b")
	if err == nil || !strings.Contains(out, "out of disk space") {
		t.Fatalf("kubectl create while full: %v: %s", err, out)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("kubectl create took %v to fail", d)
	}
	if _, err := cms.Get(ctx, "before", metav1.GetOptions{}); err != nil {
		t.Fatalf("get while full: %v", err)
	}
	if _, err := cms.List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list while full: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for {
		if _, err = cms.Create(ctx, cm("after"), metav1.CreateOptions{}); err == nil {
			break
		}
		if time.Since(freed) > 10*time.Second {
			t.Fatalf("writes did not resume within 10 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(freed)
	t.Logf("writes resumed %v after the space was freed", took)
	if took > 5*time.Second {
		t.Errorf("writes resumed after %v, want at most 5 s", took)
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("the watch opened before the disk filled ended")
			}
			if c, isCM := ev.Object.(*corev1.ConfigMap); isCM && ev.Type == watch.Added && c.Name == "after" {
				return
			}
		case <-deadline:
			t.Fatal("the watch opened before the disk filled did not see the write after it")
		}
	}
}
