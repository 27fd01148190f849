package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/encryption"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// startProcess runs a process embedding the log in dir (listening on loopback when listen is
// set) until stop is called.
func startProcess(t *testing.T, dir string, listen bool) (p *process, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	lf := logFlags{dataDir: dir, durability: "group-commit", replicas: 1}
	if listen {
		lf.natsListen = "127.0.0.1:-1"
	}
	p, err := openProcess(ctx, &lf, &processFlags{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := p.wait(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return p, stop
}

func kindOf(t *testing.T, p *process, resource string) *kinds.Kind {
	t.Helper()
	k, ok := p.reg.Catalog().ByGroupResource(schema.GroupResource{Resource: resource})
	if !ok {
		t.Fatalf("no %s", resource)
	}
	return k
}

func putSecret(ctx context.Context, p *process, k *kinds.Kind, name, value string) error {
	_, err := p.reg.Create(ctx, k, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Data: map[string][]byte{"v": []byte(value)}}, registry.Request{Actor: registry.User("test")})
	return err
}

func checkSecret(t *testing.T, p *process, k *kinds.Kind, name, want string) {
	t.Helper()
	obj, err := p.reg.Get(t.Context(), k, "default", name, registry.ReadOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	if got := string(obj.(*corev1.Secret).Data["v"]); got != want {
		t.Fatalf("secret %s = %q, want %q", name, got, want)
	}
}

// TestRefusesToStartWithoutItsKey: a missing, damaged, too open or foreign key-encryption key
// stops every start with a message that says so; nothing is served undecrypted and no new key
// ring replaces the lost one. With the right one back, the Secrets read as before.
func TestRefusesToStartWithoutItsKey(t *testing.T) {
	dir := t.TempDir()
	p, stop := startProcess(t, dir, false)
	ctx := t.Context()
	if _, err := p.reg.Create(ctx, kindOf(t, p, "namespaces"), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, registry.Request{Actor: registry.User("test")}); err != nil {
		t.Fatal(err)
	}
	sk := kindOf(t, p, "secrets")
	if err := putSecret(ctx, p, sk, "s", "the-value"); err != nil {
		t.Fatal(err)
	}
	stop()

	kek := filepath.Join(dir, "keys", encryption.KeyRingFile)
	good, err := os.ReadFile(kek)
	if err != nil {
		t.Fatal(err)
	}
	var ring struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(good, &ring); err != nil {
		t.Fatal(err)
	}
	ring.Keys[0]["key"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" // 32 zero bytes: a flipped key
	flipped, _ := json.Marshal(ring)                                     // maps of JSON values marshal
	foreignDir := t.TempDir()
	if _, err := encryption.CreateKeyRing(foreignDir, time.Now()); err != nil {
		t.Fatal(err)
	}
	foreign, err := os.ReadFile(filepath.Join(foreignDir, encryption.KeyRingFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		data  []byte // nil: no file
		mode  os.FileMode
		words []string
	}{
		{"missing", nil, 0, []string{"refusing to start", "key-encryption key", "is missing", "data keys"}},
		{"truncated", good[:len(good)/2], 0o600, []string{"refusing to start", "damaged"}},
		{"flipped", flipped, 0o600, []string{"refusing to start", "damaged", "check value"}},
		{"world-readable", good, 0o644, []string{"refusing to start", "readable by others"}},
		{"another ring", foreign, 0o600, []string{"refusing to start", "does not unwrap"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(kek)
			if tc.data != nil {
				if err := os.WriteFile(kek, tc.data, tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(kek, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			lf := logFlags{dataDir: dir, durability: "group-commit", replicas: 1}
			p, err := openProcess(t.Context(), &lf, &processFlags{})
			if err == nil {
				p.log.Close()
				t.Fatal("the process started")
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.data == nil {
				if _, err := os.Stat(kek); err == nil {
					t.Error("a new key ring replaced the missing one")
				}
			}
		})
	}
	if err := os.WriteFile(kek, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(kek, 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ = startProcess(t, dir, false)
	checkSecret(t, p, sk, "s", "the-value")
}

// TestKeysRotateUnderWrites: `logplane keys rotate` against a running process while Secrets are
// being written loses none of them, leaves every data key wrapped by the new key-encryption
// key, and a restart (cold caches, snapshot-less replay) reads them all; --retire then leaves
// only the new key, which still reads them all.
func TestKeysRotateUnderWrites(t *testing.T) {
	dir := t.TempDir()
	p, stop := startProcess(t, dir, true)
	ctx := t.Context()
	if _, err := p.reg.Create(ctx, kindOf(t, p, "namespaces"), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, registry.Request{Actor: registry.User("test")}); err != nil {
		t.Fatal(err)
	}
	sk := kindOf(t, p, "secrets")
	for i := range 100 {
		if err := putSecret(ctx, p, sk, fmt.Sprintf("before-%d", i), fmt.Sprintf("value-before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	url := p.log.ClientURL()
	rotate := func(args ...string) string {
		t.Helper()
		cmd := keysCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"rotate", "--data-dir", dir, "--nats", url, "--durability", "group-commit"}, args...))
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("keys rotate: %v\n%s", err, out.String())
		}
		t.Logf("keys rotate: %s", out.String())
		return out.String()
	}

	// Writers go on while the key is rotated.
	var mu sync.Mutex
	written := map[string]string{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				name, value := fmt.Sprintf("during-%d-%d", w, i), fmt.Sprintf("value-%d-%d", w, i)
				if err := putSecret(ctx, p, sk, name, value); err != nil {
					t.Errorf("create %s during the rotation: %v", name, err)
					return
				}
				mu.Lock()
				written[name] = value
				mu.Unlock()
			}
		}()
	}
	rotate()
	close(done)
	wg.Wait()
	if len(written) == 0 {
		t.Fatal("no Secret was written during the rotation")
	}
	ring, err := encryption.LoadKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ring.IDs()); n != 2 {
		t.Fatalf("the key ring holds %d keys after a rotation, want 2", n)
	}
	// Secrets made after the rotation began by a process that had not yet seen the new key are
	// re-wrapped by the next rotate pass; a second rotate with --retire checks nothing is left.
	out := rotate("--retire")
	if !strings.Contains(out, "retired") {
		t.Fatalf("rotate --retire did not retire: %s", out)
	}
	stop()

	// Cold: a new process, new caches, one key in the ring.
	if err := os.RemoveAll(filepath.Join(dir, "log", "nats", "jetstream", "$G", "streams", "OBJ_LOGPLANE_SNAPSHOTS")); err != nil {
		t.Fatal(err)
	}
	p, _ = startProcess(t, dir, false)
	for i := range 100 {
		checkSecret(t, p, sk, fmt.Sprintf("before-%d", i), fmt.Sprintf("value-before-%d", i))
	}
	for name, v := range written {
		checkSecret(t, p, sk, name, v)
	}
	by, err := p.sealer.WrappedBy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ring, err = encryption.LoadKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if ids := ring.IDs(); len(ids) != 1 || len(by) != 1 || by[ids[0]] == 0 {
		t.Errorf("after rotate --retire: ring %v, data keys by key-encryption key %v", ids, by)
	}
	if n := p.store.Skipped(); n != 0 {
		t.Errorf("%d events could not be read after the rotation", n)
	}
}
