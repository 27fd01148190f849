package apiservertest

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// KubectlBin is the kubectl the tests run.
const KubectlBin = "/usr/bin/kubectl"

// NeedKubectl skips t when KubectlBin is not installed, or fails it when CI requires every test
// to run (LOGPLANE_REQUIRE_ROOT_TESTS=1).
func NeedKubectl(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(KubectlBin); err != nil {
		if os.Getenv("LOGPLANE_REQUIRE_ROOT_TESTS") == "1" {
			t.Fatalf("kubectl is not installed at %s (LOGPLANE_REQUIRE_ROOT_TESTS=1)", KubectlBin)
		}
		t.Skipf("kubectl is not installed at %s", KubectlBin)
	}
}

// KubectlCmd returns the command that runs the real kubectl against s with args, with a home and
// a discovery cache of its own; ctx kills it.
func (s *Server) KubectlCmd(ctx context.Context, t testing.TB, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, KubectlBin, append([]string{"--kubeconfig", s.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+t.TempDir(), "HOME="+t.TempDir())
	return cmd
}

// Kubectl runs the real kubectl against s, with stdin (none if empty), and returns what it
// printed (standard output and error interleaved) and its error. It gives up after 90 seconds.
func (s *Server) Kubectl(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := s.KubectlCmd(ctx, t, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Stream starts cmd, a kubectl that keeps running (logs -f, attach, get -w, port-forward), and
// returns its standard output and a function that kills it and waits for it to end.
func Stream(t testing.TB, cmd *exec.Cmd) (io.Reader, func()) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return stdout, func() {
		_ = cmd.Process.Kill() // it runs until killed
		_ = cmd.Wait()         // killed
	}
}
