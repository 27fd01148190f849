package apiserver_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/apiserver/logplaneapi"
	"github.com/logplane/logplane/encryption"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/logcheck"
)

// scanFiles returns which of needles occur in the bytes of any file under dir.
func scanFiles(t *testing.T, dir string, needles map[string][]byte) map[string]bool {
	t.Helper()
	found := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for name, n := range needles {
			if bytes.Contains(b, n) {
				found[name] = true
				t.Logf("%s found in %s", name, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// secretNeedles are the forms a value can take in the log: as is, and base64 (JSON, and the
// last-applied annotation kubectl apply writes).
func secretNeedles(prefix, v string) map[string][]byte {
	return map[string][]byte{
		prefix:             []byte(v),
		prefix + "-base64": []byte(base64.StdEncoding.EncodeToString([]byte(v))),
	}
}

func secretWithValue(name, v string) *corev1.Secret {
	// The annotation stands for what kubectl apply keeps: the whole object, values included.
	applied, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"data":     map[string]string{"password": base64.StdEncoding.EncodeToString([]byte(v))}})
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(applied)}},
		Data:       map[string][]byte{"password": []byte(v), "username": []byte("admin")},
	}
}

// TestSecretsSealedAtRest: no Secret value is in the stopped store's files (the log, its
// snapshots, the data keys), while a ConfigMap's value is (so the scan works); the API sees the
// Secrets in clear, also after a restart from a snapshot and the log's tail.
func TestSecretsSealedAtRest(t *testing.T) {
	dir := t.TempDir()
	s := apiservertest.Start(t, apiservertest.Options{DataDir: dir, Encryption: true})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	const cmValue = "configmap-value-7d1f0c2a9e4b"
	const secValue = "secret-value-5b8e3a61c0d4f"
	const tailValue = "secret-after-snapshot-93ac1e"
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Data: map[string]string{"v": cmValue}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, secretWithValue("db", secValue), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().Secrets("default").Get(ctx, "db", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != secValue {
		t.Fatalf("get: %v, %q", err, got.Data["password"])
	}
	if _, err := s.API.Store().Snapshot(ctx, s.Log); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, secretWithValue("tail", tailValue), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.Stop()

	needles := map[string][]byte{"configmap": []byte(cmValue)}
	for k, v := range secretNeedles("secret", secValue) {
		needles[k] = v
	}
	for k, v := range secretNeedles("tail-secret", tailValue) {
		needles[k] = v
	}
	found := scanFiles(t, filepath.Join(dir, "log"), needles)
	if !found["configmap"] {
		t.Fatalf("the scan did not find the ConfigMap's value in %s: it cannot be trusted", dir)
	}
	for name := range needles {
		if name != "configmap" && found[name] {
			t.Errorf("the %s value is in the store's files in clear", name)
		}
	}

	// Restart: the snapshot and the tail are opened again.
	s = apiservertest.Start(t, apiservertest.Options{DataDir: dir, Encryption: true})
	cs = kubernetes.NewForConfigOrDie(s.Config)
	for name, want := range map[string]string{"db": secValue, "tail": tailValue} {
		got, err := cs.CoreV1().Secrets("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil || string(got.Data["password"]) != want {
			t.Fatalf("after restart, get %s: %v, %q", name, err, got.Data["password"])
		}
	}
	// log check reads every envelope and the sealing of every Secret, with no key, and finds
	// nothing wrong (snapshots included).
	rep, err := logcheck.Check(ctx, s.Log, logcheck.Options{Catalog: builtin.Catalog()})
	if err != nil || !rep.OK() {
		t.Fatalf("log check: %v %+v", err, rep)
	}
	// The snapshot, decompressed, holds the ConfigMap's value and not the Secret's.
	snaps, err := s.Log.Snapshots(ctx, "objects")
	if err != nil || len(snaps) == 0 {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	rc, err := s.Log.OpenSnapshot(ctx, snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	snap, err := io.ReadAll(s2.NewReader(rc))
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(snap, []byte(cmValue)) {
		t.Fatal("the snapshot does not hold the ConfigMap's value: the check cannot be trusted")
	}
	for name, n := range secretNeedles("secret", secValue) {
		if bytes.Contains(snap, n) {
			t.Errorf("the snapshot holds the %s value in clear", name)
		}
	}
}

// TestSecretHistoryForgets: history never shows a Secret's values, only which keys changed and
// their sizes; once the Secret is deleted and its data key destroyed, history says its values
// were forgotten and reads as of its past revisions find nothing, nor do the key-store files
// hold its data key any more.
func TestSecretHistoryForgets(t *testing.T) {
	dir := t.TempDir()
	s := apiservertest.Start(t, apiservertest.Options{DataDir: dir, Encryption: true})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	const v1, v2 = "first-value-a81c3", "second-value-longer-4be0"
	created, err := cs.CoreV1().Secrets("default").Create(ctx, secretWithValue("api", v1), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Data["password"] = []byte(v2)
	created.Data["token"] = []byte("tok")
	delete(created.Data, "username")
	delete(created.Annotations, "kubectl.kubernetes.io/last-applied-configuration")
	if _, err := cs.CoreV1().Secrets("default").Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	const path = "/api/v1/namespaces/default/secrets/api"
	values := map[string][]byte{}
	for k, v := range secretNeedles("v1", v1) {
		values[k] = v
	}
	for k, v := range secretNeedles("v2", v2) {
		values[k] = v
	}
	history := func() logplaneapi.History {
		t.Helper()
		code, body := raw(t, s.Config, "GET", logplaneapi.HistoryPath(path), nil, "")
		if code != http.StatusOK {
			t.Fatalf("history: %d %s", code, body)
		}
		for name, v := range values {
			if bytes.Contains(body, v) {
				t.Errorf("history shows the %s value: %s", name, body)
			}
		}
		var h logplaneapi.History
		if err := json.Unmarshal(body, &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := history()
	if len(h.Items) != 2 || h.Items[1].Secret == nil {
		t.Fatalf("history: %+v", h)
	}
	want := []logplaneapi.SecretKey{
		{Field: "data", Key: "password", Bytes: len(v2), Change: "changed"},
		{Field: "data", Key: "token", Bytes: 3, Change: "added"},
		{Field: "data", Key: "username", Change: "removed"},
	}
	if got := h.Items[1].Secret.Keys; !equalKeys(got, want) {
		t.Errorf("changed keys: got %+v, want %+v", got, want)
	}
	firstRV := h.Items[0].ResourceVersion
	// Before the delete, a read as of the first revision sees the first value.
	code, body := raw(t, s.Config, "GET", path, map[string]string{logplaneapi.AtHeader: firstRV}, "")
	if code != http.StatusOK || !strings.Contains(string(body), base64.StdEncoding.EncodeToString([]byte(v1))) {
		t.Fatalf("as of %s before the delete: %d %s", firstRV, code, body)
	}

	// The wrapped data key, as the key store holds it: it must not survive the shredding.
	o, ok := s.API.Store().Get(eventlog.Key{Resource: "secrets", Namespace: "default", Name: "api"})
	if !ok || o.Stored == nil {
		t.Fatalf("the Secret is not sealed in the projection: %+v", o)
	}
	dks, err := s.Log.DataKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dk, _, err := dks.Get(ctx, encryption.KeyIDOf(o.Stored))
	if err != nil {
		t.Fatal(err)
	}
	values["wrapped data key"] = dk.GetWrapped()
	if found := scanFiles(t, filepath.Join(dir, "log"), map[string][]byte{"key": dk.GetWrapped()}); !found["key"] {
		t.Fatal("the scan does not find the wrapped data key before it is destroyed: it cannot be trusted")
	}
	if err := cs.CoreV1().Secrets("default").Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sw := encryption.NewSweeper(s.Sealer, encryption.LiveKeys(s.API.Store()), 0)
	destroyed, err := sw.Sweep(ctx)
	if err != nil || len(destroyed) != 1 {
		t.Fatalf("sweep: destroyed %v, %v; want the deleted Secret's one key", destroyed, err)
	}
	h = history()
	if len(h.Items) != 3 {
		t.Fatalf("history after the delete: %+v", h)
	}
	for _, rev := range h.Items {
		if rev.Secret == nil || !rev.Secret.Forgotten {
			t.Errorf("revision %s (%s): values not said to be forgotten: %+v", rev.ResourceVersion, rev.Type, rev.Secret)
		}
	}
	for _, at := range []string{firstRV, h.Items[1].ResourceVersion} {
		code, body = raw(t, s.Config, "GET", path, map[string]string{logplaneapi.AtHeader: at}, "")
		if code != http.StatusNotFound || !strings.Contains(string(body), "forgotten") {
			t.Errorf("get as of %s after the shredding: %d %s, want 404 saying the values were forgotten", at, code, body)
		}
		code, body = raw(t, s.Config, "GET", "/api/v1/namespaces/default/secrets", map[string]string{logplaneapi.AtHeader: at}, "")
		if code != http.StatusOK || strings.Contains(string(body), `"api"`) {
			t.Errorf("list as of %s after the shredding: %d %s", at, code, body)
		}
	}
	// A replay from the start of the log (a fresh server with no snapshot) serves nothing of it.
	s.Stop()
	s = apiservertest.Start(t, apiservertest.Options{DataDir: dir, Encryption: true})
	if n := s.API.Store().Skipped(); n != 0 {
		t.Errorf("the replay skipped %d events as unreadable: forgotten ones are not damage", n)
	}
	cs = kubernetes.NewForConfigOrDie(s.Config)
	if _, err := cs.CoreV1().Secrets("default").Get(ctx, "api", metav1.GetOptions{}); err == nil {
		t.Error("the deleted Secret is served after a replay")
	}
	s.Stop()
	// A copy of the disk: no value, and no wrapping of the destroyed key, in any file.
	if found := scanFiles(t, filepath.Join(dir, "log"), values); len(found) > 0 {
		t.Errorf("values in the store's files: %v", found)
	}
}

func equalKeys(a, b []logplaneapi.SecretKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
