// Package e2e_test runs logplane as its users do: the binaries (logplane, lpctl, hello) are built
// once per run, then every test starts them as separate processes on a machine of its own (a data
// directory, free loopback ports, a bridge, a pod range and a containerd of its own) and drives
// them with the real kubectl (/usr/bin/kubectl), asserting on what kubectl prints. Everything a
// test made is removed when it ends, also when it fails: processes (by PID), containers and the
// containerd namespace, network namespaces, the bridge and the iptables rule.
//
// The tests need root, containerd, runc, the CNI plugins, busybox-static, iptables and kubectl;
// without them they are skipped, unless LOGPLANE_REQUIRE_ROOT_TESTS=1: then they fail.
// docs/e2e.md says what they cover.
package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/logplane/logplane/dataplane/dataplanetest"
)

// kubectlPath is the kubectl users run; the tests drive it and nothing else for the Kubernetes API.
const kubectlPath = "/usr/bin/kubectl"

// binaries are what one run of the package builds: the programs and the demo image archives.
type binaries struct {
	logplane, lpctl, hello string
	// images holds the demo image archives: busybox.tar, hello.tar and hello-v2.tar
	// (logplane.local/busybox:latest, logplane.local/hello:latest and logplane.local/hello:v2).
	images string
}

var (
	buildOnce sync.Once
	built     binaries
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir) // the binaries of this run; a leftover temp dir is not a failure
	}
	os.Exit(code)
}

// requireMachine skips the test (or fails it under LOGPLANE_REQUIRE_ROOT_TESTS=1) unless this
// machine can run real pods and has kubectl, then returns the binaries, built at the first call.
func requireMachine(t *testing.T) binaries {
	t.Helper()
	dataplanetest.RequireRoot(t)
	if _, err := os.Stat(kubectlPath); err != nil {
		msg := "needs kubectl at " + kubectlPath
		if os.Getenv(dataplanetest.RequireEnvVar) == "1" {
			t.Fatalf("%s; %s=1 forbids skipping", msg, dataplanetest.RequireEnvVar)
		}
		t.Skip(msg)
	}
	buildOnce.Do(func() { built, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("building logplane: %v", buildErr)
	}
	return built
}

// build does what ops/up.sh does before it starts logplane: the release build of the programs
// (ops/build.sh), and the demo images made with lpctl image build.
func build() (binaries, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return binaries{}, fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if buildDir, err = os.MkdirTemp("", "lpe2e-bin-"); err != nil {
		return binaries{}, err
	}
	b := binaries{
		logplane: filepath.Join(buildDir, "logplane"),
		lpctl:    filepath.Join(buildDir, "lpctl"),
		hello:    filepath.Join(buildDir, "hello"),
		images:   filepath.Join(buildDir, "images"),
	}
	steps := []struct {
		env  []string
		args []string
	}{
		{nil, []string{"bash", "ops/build.sh", buildDir}}, // the release binaries: logplane, lpctl, hello
		{nil, []string{b.lpctl, "image", "build", "busybox", "-o", filepath.Join(b.images, "busybox.tar")}},
		{nil, []string{b.lpctl, "image", "build", "hello", "--hello-binary", b.hello, "-o", filepath.Join(b.images, "hello.tar")}},
		{nil, []string{b.lpctl, "image", "build", "hello", "--hello-binary", b.hello, "--tag", "logplane.local/hello:v2", "-o", filepath.Join(b.images, "hello-v2.tar")}},
	}
	if err := os.MkdirAll(b.images, 0o755); err != nil {
		return binaries{}, err
	}
	for _, s := range steps {
		cmd := exec.Command(s.args[0], s.args[1:]...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), s.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return binaries{}, fmt.Errorf("%s: %w\n%s", strings.Join(s.args, " "), err, out)
		}
	}
	return b, nil
}
