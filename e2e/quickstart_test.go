package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestQuickstart is the README's quick start: what ops/up.sh does (build, the demo images into
// DATA/images, logplane up), then the tour's first pod, reached on its IP.
func TestQuickstart(t *testing.T) {
	m := newMachine(t)
	images := filepath.Join(m.dir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil { // mkdir -p "$data/images"
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"image", "build", "busybox", "-o", filepath.Join(images, "busybox.tar")},
		{"image", "build", "hello", "--hello-binary", m.bin.hello, "-o", filepath.Join(images, "hello.tar")},
	} {
		out := m.lpctl(args...)
		if !strings.HasPrefix(out, "wrote logplane.local/") {
			t.Fatalf("lpctl %s printed %q", strings.Join(args, " "), out)
		}
	}
	up := m.up()
	m.waitAPI()
	m.waitNodeReady()
	m.waitRootCA("default")

	nodes := m.get("nodes", "-o", "wide")
	expect(t, nodes, nodes.row(t, m.node), map[string]string{"STATUS": "Ready", "INTERNAL-IP": "127.0.0.1", "VERSION": "v1.34.0-logplane"})
	if rt := nodes.row(t, m.node)["CONTAINER-RUNTIME"]; !strings.HasPrefix(rt, "containerd://") {
		t.Errorf("CONTAINER-RUNTIME %q, want containerd://…", rt)
	}

	if out := m.k("run", "hello", "--image=logplane.local/hello:latest", "--port", "8080"); out != "pod/hello created\n" {
		t.Fatalf("kubectl run printed %q", out)
	}
	if out := m.k("wait", "--for=condition=Ready", "pod/hello", "--timeout=60s"); out != "pod/hello condition met\n" {
		t.Fatalf("kubectl wait printed %q", out)
	}
	pods := m.get("pods", "-o", "wide")
	hello := pods.row(t, "hello")
	expect(t, pods, hello, map[string]string{"READY": "1/1", "STATUS": "Running", "RESTARTS": "0", "NODE": m.node})
	ip, err := netip.ParseAddr(hello["IP"])
	if err != nil || !netip.MustParsePrefix(m.podCIDR).Contains(ip) {
		t.Fatalf("pod IP %q is not in the node's pod range %s", hello["IP"], m.podCIDR)
	}

	// curl http://<pod IP>:8080/
	body := httpGet(t, "http://"+ip.String()+":8080/")
	if body != "Hello from hello\n" {
		t.Errorf("GET / on the pod answered %q", body)
	}
	// The container's output reaches its log file a moment after the reply.
	request := regexp.MustCompile(`(?m) GET /$`)
	eventually(t, 10*time.Second, func() error {
		logs := m.k("logs", "hello")
		if !strings.Contains(logs, "hello listening on :8080 as hello\n") || !request.MatchString(logs) {
			return fmt.Errorf("kubectl logs hello:\n%s", logs)
		}
		return nil
	})
	if out := m.k("exec", "hello", "--", "hostname"); out != "hello\n" {
		t.Errorf("kubectl exec hello -- hostname printed %q", out)
	}

	if out := m.k("delete", "pod", "hello"); out != "pod \"hello\" deleted\n" {
		t.Errorf("kubectl delete printed %q", out)
	}
	up.stop(t)
	// A deleted pod leaves nothing on the machine: no network namespace is still pinned.
	if left := mountsUnder(t, m.dir); len(left) > 0 {
		t.Errorf("mounts left after the pod was deleted: %v", left)
	}
}

// httpGet fetches url (a pod's, on the test's bridge) and returns the body, retrying for a while
// if the server does not answer yet.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	var body string
	eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
		}
		body = string(b)
		return nil
	})
	return body
}

// httpPost posts an empty body to url (a pod's) and fails the test unless it answers 200.
func httpPost(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body) // only for the message
		t.Fatalf("POST %s: %s: %s", url, resp.Status, b)
	}
}
