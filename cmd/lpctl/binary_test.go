package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/nodeagent"
)

// The tests of this file run lpctl as users run it: the binary, built once per run, in a process
// of its own, with no KUBECONFIG in its environment and a home of its own, so that only the flags
// it is given say which cluster it talks to.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir) // this run's binary; a leftover temp dir is not a failure
	}
	os.Exit(code)
}

// lpctlBinary builds lpctl (go build, as ops/up.sh does) at the first call and returns its path.
func lpctlBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "lpctl-bin-"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "lpctl"), ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "lpctl")
}

// ran is what a program printed and how it ended.
type ran struct {
	out, errOut string
	err         error
}

func (r ran) String() string {
	return fmt.Sprintf("exit: %v\nstdout:\n%sstderr:\n%s", r.err, r.out, r.errOut)
}

// runProgram runs name with args in an environment without KUBECONFIG, with a home and
// discovery cache of its own, and PATH starting with pathDir when it is not empty.
func runProgram(t *testing.T, pathDir, name string, args ...string) ran {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	home := t.TempDir()
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "KUBECONFIG", "HOME", "KUBECACHEDIR":
			continue
		case "PATH":
			if pathDir != "" {
				kv = "PATH=" + pathDir + string(os.PathListSeparator) + v
			}
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "HOME="+home, "KUBECACHEDIR="+filepath.Join(home, "cache"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return ran{out: out.String(), errOut: errOut.String(), err: err}
}

// lpctlRun runs the lpctl binary with args as they are (flags first or last, as the test says).
func lpctlRun(t *testing.T, args ...string) ran {
	t.Helper()
	return runProgram(t, "", lpctlBinary(t), args...)
}

// lpctlOK runs the lpctl binary and fails the test unless it succeeds.
func lpctlOK(t *testing.T, args ...string) string {
	t.Helper()
	r := lpctlRun(t, args...)
	if r.err != nil {
		t.Fatalf("lpctl %s: %s", strings.Join(args, " "), r)
	}
	return r.out
}

// TestGlobalFlagsFirst: kubectl's global flags (--kubeconfig, -n, --namespace, --context,
// --server) may come before logplane's verbs, as before kubectl's own, also when lpctl runs as
// the kubectl plugin `kubectl lp`.
func TestGlobalFlagsFirst(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	kc := s.Kubeconfig
	lpctlOK(t, "--kubeconfig", kc, "create", "configmap", "settings", "--from-literal=a=1")
	lpctlOK(t, "--kubeconfig", kc, "patch", "configmap", "settings", "-p", `{"data":{"a":"2"}}`)

	history := func(out string) error {
		if !strings.Contains(out, `~ data.a: "1" → "2"`) {
			return fmt.Errorf("no change of data.a in the history")
		}
		return nil
	}
	audit := func(out string) error {
		if n := strings.Count(out, "configmaps/default/settings"); n != 2 {
			return fmt.Errorf("%d changes to the configmap in the audit, want 2", n)
		}
		return nil
	}
	for _, c := range []struct {
		args  []string
		check func(string) error
	}{
		{[]string{"--kubeconfig", kc, "history", "cm/settings"}, history},
		{[]string{"--kubeconfig=" + kc, "-n", "default", "history", "configmap", "settings"}, history},
		{[]string{"--kubeconfig", kc, "--namespace", "default", "--context", "logplane", "history", "cm/settings"}, history},
		{[]string{"--kubeconfig", kc, "--server", s.URL, "history", "cm/settings"}, history},
		{[]string{"--kubeconfig", kc, "audit", "--resource", "configmaps"}, audit},
		{[]string{"-n", "default", "--kubeconfig", kc, "audit", "--resource", "configmaps"}, audit},
		{[]string{"history", "--kubeconfig", kc, "cm/settings"}, history},
	} {
		r := lpctlRun(t, c.args...)
		if r.err != nil {
			t.Errorf("lpctl %s: %s", strings.Join(c.args, " "), r)
			continue
		}
		if err := c.check(r.out); err != nil {
			t.Errorf("lpctl %s: %v:\n%s", strings.Join(c.args, " "), err, r.out)
		}
	}

	// As a kubectl plugin: kubectl runs kubectl-lp with the arguments after "lp".
	apiservertest.NeedKubectl(t)
	plugins := t.TempDir()
	if err := os.Symlink(lpctlBinary(t), filepath.Join(plugins, "kubectl-lp")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args  []string
		check func(string) error
	}{
		{[]string{"lp", "--kubeconfig", kc, "history", "cm/settings"}, history},
		{[]string{"lp", "-n", "default", "--kubeconfig", kc, "audit", "--resource", "configmaps"}, audit},
	} {
		r := runProgram(t, plugins, apiservertest.KubectlBin, c.args...)
		if r.err != nil {
			t.Errorf("kubectl %s: %s", strings.Join(c.args, " "), r)
			continue
		}
		if err := c.check(r.out); err != nil {
			t.Errorf("kubectl %s: %v:\n%s", strings.Join(c.args, " "), err, r.out)
		}
	}
}

// TestImageLoadSimulatedNodes: image load goes through the API server to the node agents; a
// simulated node says clearly that it loads no images, and an unknown node is 404. Global flags
// come first here too.
func TestImageLoadSimulatedNodes(t *testing.T) {
	dir := t.TempDir()
	mat, err := pki.Load(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	kc, kk, err := mat.CA.Issue("logplane-apiserver-kubelet-client", []string{"system:masters"}, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	ktls, err := apiserver.KubeletClientTLS(mat.CA.CertPEM, kc, kk)
	if err != nil {
		t.Fatal(err)
	}
	s := apiservertest.Start(t, apiservertest.Options{DataDir: dir, Configure: func(cfg *apiserver.Config) { cfg.KubeletTLS = ktls }})

	// Two simulated nodes behind one streaming endpoint, as `logplane agent --runtime sim` runs them.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(ln.Addr().String()) // a listener's address always splits
	port, _ := strconv.Atoi(portStr)                       // and its port is a number
	fleet, err := nodeagent.NewFleet(nodeagent.FleetConfig{
		Template: nodeagent.Config{Registry: s.API.Registry(), Store: s.API.Store(), StreamPort: int32(port)},
		Nodes:    2, Prefix: "sim", NodeIP: "127.0.0.1", VolumeDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	sc, sk, err := mat.CA.Issue("system:node:sim", []string{"system:nodes"}, []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		t.Fatal(err)
	}
	stls, err := nodeagent.ServerTLS(mat.CA.CertPEM, sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 2)
	go func() { done <- fleet.Run(ctx) }()
	go func() { done <- nodeagent.NewServer(nil, fleet.Agents()...).Serve(ctx, ln, stls) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("simulated nodes: %v", err)
			}
		}
	})
	rctx, rcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer rcancel()
	if err := fleet.Ready(rctx); err != nil {
		t.Fatal(err)
	}

	archive := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(archive, []byte("an archive a simulated node never reads"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := lpctlRun(t, "--kubeconfig", s.Kubeconfig, "-n", "default", "image", "load", archive)
	for _, node := range []string{"sim-0", "sim-1"} {
		want := "node " + node + ": cannot load images: this node's runtime keeps none"
		if r.err == nil || !strings.Contains(r.errOut, want) {
			t.Errorf("image load into simulated nodes: want %q:\n%s", want, r)
		}
	}
	r = lpctlRun(t, "--kubeconfig", s.Kubeconfig, "image", "load", archive, "--node", "nosuch")
	if want := `node nosuch: nodes "nosuch" not found`; r.err == nil || !strings.Contains(r.errOut, want) {
		t.Errorf("image load --node nosuch: want %q:\n%s", want, r)
	}
}
