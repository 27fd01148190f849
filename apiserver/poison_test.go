package apiserver_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
)

// TestUnreadableRevisionNeverBlocksItsObject appends bytes that are no event on the subjects of
// live objects (a bug, a bad tool, a bad disk) and on the subject of one that never existed:
// updates, deletes and creates of those objects must succeed, superseding the unreadable
// message. Before the fix every update and delete of such an object answered 500, forever.
func TestUnreadableRevisionNeverBlocksItsObject(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{LogListen: "127.0.0.1:-1"})
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cms := cs.CoreV1().ConfigMaps("default")
	for _, name := range []string{"updated", "deleted"} {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"updated", "deleted", "never"} {
		eventlogtest.PublishRaw(t, s.Log, s.Log.Subject(eventlog.Key{Resource: "configmaps", Namespace: "default", Name: name}), []byte("\xff\x00 not an event"))
	}
	// The projection reads the unreadable messages in order; wait until it is past them by
	// reading an object written after them.
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "marker"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cur, err := cms.Get(ctx, "updated", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get of an object whose latest message is unreadable: %v", err)
	}
	cur.Data["v"] = "2"
	if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update of an object whose latest message is unreadable: %v", err)
	}
	// A client holding the revision from before the unreadable message gets a conflict, rereads
	// and succeeds: kubectl's edit and apply loops do that.
	out, err := s.Kubectl(t, "", "label", "configmap", "updated", "fixed=yes")
	if err != nil {
		t.Fatalf("kubectl label: %v: %s", err, out)
	}
	if out, err := s.Kubectl(t, "", "delete", "configmap", "deleted"); err != nil {
		t.Fatalf("kubectl delete of an object whose latest message is unreadable: %v: %s", err, out)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "never"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create over a subject holding only an unreadable message: %v", err)
	}
	got, err := cms.Get(ctx, "updated", metav1.GetOptions{})
	if err != nil || got.Data["v"] != "2" || got.Labels["fixed"] != "yes" {
		t.Fatalf("after the writes: %v, %v", got, err)
	}
}
