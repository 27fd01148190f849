package apiserver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

func clientset(t *testing.T, s *apiservertest.Server) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestCRUD(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := clientset(t, s)
	ctx := t.Context()

	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nss.Items) != 4 {
		t.Fatalf("namespaces: %d, want default, kube-system, kube-public, kube-node-lease", len(nss.Items))
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Labels: map[string]string{"app": "web"}}, Data: map[string]string{"k": "v"}}
	created, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.UID == "" || created.ResourceVersion == "" || created.CreationTimestamp.IsZero() || len(created.ManagedFields) == 0 {
		t.Fatalf("created without server fields: %+v", created.ObjectMeta)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: %v, want AlreadyExists", err)
	}
	if _, err := cs.CoreV1().ConfigMaps("nope").Create(ctx, cm, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("create in a missing namespace: %v, want NotFound", err)
	}
	got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "cfg", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" || got.ResourceVersion != created.ResourceVersion {
		t.Fatalf("get: %v %+v", err, got)
	}
	got.Data["k"] = "v2"
	updated, err := cs.CoreV1().ConfigMaps("default").Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if updated.ResourceVersion == created.ResourceVersion {
		t.Fatal("update kept the resourceVersion")
	}
	// A stale resourceVersion is a conflict, and changes nothing.
	got.Data["k"] = "stale"
	if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, got, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v, want Conflict", err)
	}
	// Patches: merge, strategic, JSON.
	if _, err := cs.CoreV1().ConfigMaps("default").Patch(ctx, "cfg", types.MergePatchType, []byte(`{"data":{"m":"1"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Patch(ctx, "cfg", types.StrategicMergePatchType, []byte(`{"data":{"s":"1"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := cs.CoreV1().ConfigMaps("default").Patch(ctx, "cfg", types.JSONPatchType, []byte(`[{"op":"add","path":"/data/j","value":"1"}]`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Data["k"] != "v2" || p.Data["m"] != "1" || p.Data["s"] != "1" || p.Data["j"] != "1" {
		t.Fatalf("patched data %v", p.Data)
	}
	list, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: "app in (web,db)"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("list by set selector: %v %d", err, len(list.Items))
	}
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "cfg", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "cfg", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
}

func TestDeploymentStatusAndScale(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := clientset(t, s)
	ctx := t.Context()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
		Status: appsv1.DeploymentStatus{Replicas: 9},
	}
	created, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Generation != 1 || created.Status.Replicas != 0 {
		t.Fatalf("generation %d, status %+v: want 1 and an empty status", created.Generation, created.Status)
	}
	created.Status.Replicas = 2
	st, err := cs.AppsV1().Deployments("default").UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Replicas != 2 || st.Generation != 1 {
		t.Fatalf("status update: %+v gen %d", st.Status, st.Generation)
	}
	sc, err := cs.AppsV1().Deployments("default").GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 2 {
		t.Fatalf("scale: %v %+v", err, sc)
	}
	sc.Spec.Replicas = 5
	if _, err := cs.AppsV1().Deployments("default").UpdateScale(ctx, "web", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || *got.Spec.Replicas != 5 || got.Generation != 2 || got.Status.Replicas != 2 {
		t.Fatalf("after scale: %v replicas %d gen %d status %d", err, *got.Spec.Replicas, got.Generation, got.Status.Replicas)
	}
}

func TestWatch(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := clientset(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	list, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion, LabelSelector: "w=1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for i := 0; i < 3; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i), Labels: map[string]string{"w": "1"}}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Patch(ctx, "c1", types.MergePatchType, []byte(`{"metadata":{"labels":{"w":null}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "c2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"ADDED c0", "ADDED c1", "ADDED c2", "DELETED c1", "DELETED c2"}
	for _, wnt := range want {
		select {
		case ev := <-w.ResultChan():
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok {
				t.Fatalf("event %v with %T", ev.Type, ev.Object)
			}
			if got := fmt.Sprintf("%s %s", ev.Type, cm.Name); got != wnt {
				t.Fatalf("event %q, want %q", got, wnt)
			}
		case <-ctx.Done():
			t.Fatalf("waiting for %q: %v", wnt, ctx.Err())
		}
	}
	// A watch from a resourceVersion replays what came after it.
	w2, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	var types []watch.EventType
	for len(types) < 5 {
		select {
		case ev := <-w2.ResultChan():
			types = append(types, ev.Type)
		case <-ctx.Done():
			t.Fatalf("replay: got %v", types)
		}
	}
	if fmt.Sprint(types) != "[ADDED ADDED ADDED MODIFIED DELETED]" {
		t.Fatalf("replay: %v", types)
	}
}
