package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImageLoadThroughAPI: on `logplane up` with no image loaded at start (its containerd is its
// own, under the data directory), `lpctl --kubeconfig FILE image load ARCHIVE` loads the archive
// through the API server into the node, as `kind load image-archive` does, and a pod runs from
// it. An archive that is none is refused by the node with a 400.
func TestImageLoadThroughAPI(t *testing.T) {
	m := newMachine(t)
	m.up()
	m.waitAPI()
	m.waitNodeReady()

	out := m.lpctl("--kubeconfig", m.kubeconfig(), "image", "load", filepath.Join(m.bin.images, "busybox.tar"))
	if want := "loaded logplane.local/busybox:latest into node " + m.node + "\n"; out != want {
		t.Fatalf("lpctl image load printed %q, want %q", out, want)
	}
	out = m.lpctl("-n", "default", "image", "load", filepath.Join(m.bin.images, "hello.tar"), "--node", m.node)
	if want := "loaded logplane.local/hello:latest into node " + m.node + "\n"; out != want {
		t.Fatalf("lpctl image load --node printed %q, want %q", out, want)
	}

	if out := m.k("run", "loaded", "--image=logplane.local/busybox:latest", "--restart=Never", "--",
		"sh", "-c", "echo from a loaded image; sleep 3600"); out != "pod/loaded created\n" {
		t.Fatalf("kubectl run printed %q", out)
	}
	if out := m.k("wait", "--for=condition=Ready", "pod/loaded", "--timeout=60s"); out != "pod/loaded condition met\n" {
		t.Fatalf("kubectl wait printed %q", out)
	}
	eventually(t, 10*time.Second, func() error {
		if logs := m.k("logs", "loaded"); logs != "from a loaded image\n" {
			return fmt.Errorf("kubectl logs loaded: %q", logs)
		}
		return nil
	})

	bad := filepath.Join(m.dir, "not-an-image.tar")
	if err := os.WriteFile(bad, []byte("not a tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := m.run(time.Minute, "", m.bin.lpctl, "--kubeconfig", m.kubeconfig(), "image", "load", bad)
	if want := "error: node " + m.node + ": containerd: import: runtime: invalid image archive"; r.err == nil || !strings.Contains(r.errOut, want) {
		t.Errorf("lpctl image load of a file that is no archive: want %q:\n%s", want, r)
	}
}
