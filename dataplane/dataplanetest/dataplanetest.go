// Package dataplanetest is the harness of tests that run real pods: a
// containerd of the test's own under a temporary directory, a CNI bridge and
// pod subnet of its own, an in-memory registry on 127.0.0.1 holding the busybox
// and hello images, and a containerd namespace of its own. Everything is torn
// down in t.Cleanup, also when the test fails: containers, sandboxes (IPs,
// network namespaces), the namespace, the daemon (by its PID), the bridge,
// iptables rules and mounts.
//
// Such tests need root, containerd, runc, the CNI plugins and busybox-static
// (apt-get install -y containerd runc containernetworking-plugins
// busybox-static iptables). Without them they are skipped, unless
// LOGPLANE_REQUIRE_ROOT_TESTS=1 (CI sets it): then they fail.
//
// Only tests and benchmarks import it.
package dataplanetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/ociimage"
	"github.com/logplane/logplane/dataplane/ociregistry"
	"github.com/logplane/logplane/dataplane/podnet"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// RequireEnvVar names the variable that turns a missing capability into a failure.
const RequireEnvVar = "LOGPLANE_REQUIRE_ROOT_TESTS"

// RequireRoot skips the test (or fails it under LOGPLANE_REQUIRE_ROOT_TESTS=1)
// unless the machine can run real pods.
func RequireRoot(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"containerd", "runc", "iptables", "ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := os.Stat(filepath.Join(podnet.DefaultPluginDir, "bridge")); err != nil {
		missing = append(missing, "CNI plugins in "+podnet.DefaultPluginDir)
	}
	if _, err := os.Stat(ociimage.DefaultBusybox); err != nil {
		missing = append(missing, "busybox-static")
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ") + " (apt-get install -y containerd runc containernetworking-plugins busybox-static iptables nftables iproute2; run as root)"
	if os.Getenv(RequireEnvVar) == "1" {
		t.Fatalf("%s; %s=1 forbids skipping", msg, RequireEnvVar)
	}
	t.Skip(msg)
}

// Env is a machine ready to run pods for one test.
type Env struct {
	Dir      string
	Daemon   *containerd.Daemon
	Network  *podnet.Network
	Runtime  *containerd.Runtime
	Registry *ociregistry.Registry
	// Subnet and Bridge are this Env's pod range and bridge.
	Subnet string
	Bridge string
	// Busybox and Hello are the images' references in Registry.
	Busybox string
	Hello   string
}

var (
	imagesOnce sync.Once
	busyboxImg v1.Image
	helloImg   v1.Image
	imagesErr  error
)

// Images returns the busybox and hello images, built once per test binary
// (hello with `go build`, so the Go toolchain must be on PATH).
func Images(t testing.TB) (busybox, hello v1.Image) {
	t.Helper()
	imagesOnce.Do(func() {
		busyboxImg, imagesErr = ociimage.Busybox("")
		if imagesErr != nil {
			return
		}
		var bin string
		bin, imagesErr = buildHello(t.TempDir())
		if imagesErr != nil {
			return
		}
		helloImg, imagesErr = ociimage.Hello(bin, "")
	})
	if imagesErr != nil {
		t.Fatalf("build test images: %v", imagesErr)
	}
	return busyboxImg, helloImg
}

func buildHello(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/hello")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/hello: %w: %s", err, out)
	}
	return bin, nil
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)[:n]
}

// New sets up an Env, torn down when the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	RequireRoot(t)
	busybox, hello := Images(t)
	ctx := t.Context()
	dir, err := os.MkdirTemp("", "lpdp-")
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Dir: dir, Bridge: "lpt" + randHex(8)}
	t.Cleanup(func() { e.cleanupDir(t) })

	e.Subnet, err = ClaimSubnet(t)
	if err != nil {
		t.Fatal(err)
	}
	e.Daemon, err = containerd.StartDaemon(ctx, containerd.DaemonConfig{Dir: filepath.Join(dir, "c")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Daemon.Stop(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("stop containerd: %v", err)
		}
	})
	natBefore := hostportChains()
	t.Cleanup(func() { e.cleanupNetwork(t, natBefore) })
	// No traffic from the test's pods leaves the test's bridge for another interface.
	if out, err := exec.Command("iptables", e.forwardRule("-I")...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	e.Network, err = podnet.New(podnet.Config{
		StateDir:    filepath.Join(dir, "net"),
		NetNSDir:    filepath.Join(e.Daemon.StateDir, "netns"),
		NetworkName: "lpt-" + e.Bridge,
		Bridge:      e.Bridge,
		Subnet:      e.Subnet,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Runtime = e.NewRuntime(t)

	e.Registry, err = ociregistry.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Registry.Close(); err != nil {
			t.Errorf("registry: %v", err)
		}
	})
	if e.Busybox, err = e.Registry.Push(ctx, "logplane/busybox:test", busybox); err != nil {
		t.Fatal(err)
	}
	if e.Hello, err = e.Registry.Push(ctx, "logplane/hello:test", hello); err != nil {
		t.Fatal(err)
	}
	return e
}

// NewRuntime returns another Runtime on the Env's daemon, namespace and data
// directory, as a restarted node agent would create: it must adopt what the
// first one started. The first call creates the namespace, and its cleanup
// removes everything in it.
func (e *Env) NewRuntime(t testing.TB) *containerd.Runtime {
	t.Helper()
	ns := "lptest-" + filepath.Base(e.Dir)
	if e.Runtime != nil {
		ns = e.Runtime.Namespace()
	}
	cfg := containerd.Config{
		Address:   e.Daemon.Address,
		Namespace: ns,
		DataDir:   filepath.Join(e.Dir, "data"),
		Network:   e.Network,
	}
	// Per-container state on the daemon's tmpfs, as the node agent keeps it.
	cfg.RuncRoot = filepath.Join(e.Daemon.StateDir, "runc")
	cfg.FIFODir = filepath.Join(e.Daemon.StateDir, "fifo")
	rt, err := containerd.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := e.Runtime == nil
	t.Cleanup(func() {
		ctx := context.WithoutCancel(t.Context())
		if first {
			var errs []error
			sbs, err := rt.ListSandboxes(ctx)
			errs = append(errs, err)
			for _, sb := range sbs {
				errs = append(errs, rt.RemoveSandbox(ctx, sb.ID))
			}
			errs = append(errs, rt.DeleteNamespace(ctx))
			left, err := containerd.NamespaceCgroups(rt.Namespace())
			errs = append(errs, err)
			if len(left) > 0 {
				errs = append(errs, fmt.Errorf("cgroups left behind: %v", left))
			}
			if err := errors.Join(errs...); err != nil {
				t.Errorf("cleanup containerd namespace: %v", err)
			}
		}
		if err := rt.Close(); err != nil {
			t.Errorf("close runtime: %v", err)
		}
	})
	return rt
}

func (e *Env) forwardRule(op string) []string {
	return []string{op, "FORWARD", "-i", e.Bridge, "!", "-o", e.Bridge, "-j", "DROP", "-m", "comment", "--comment", "logplane test " + e.Bridge}
}

func hostportChains() bool {
	return exec.Command("iptables", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT").Run() == nil
}

func (e *Env) cleanupNetwork(t testing.TB, natExisted bool) {
	if out, err := exec.Command("iptables", e.forwardRule("-D")...).CombinedOutput(); err != nil {
		t.Errorf("iptables -D: %v: %s", err, out)
	}
	if err := exec.Command("ip", "link", "show", e.Bridge).Run(); err == nil {
		if out, err := exec.Command("ip", "link", "del", e.Bridge).CombinedOutput(); err != nil {
			t.Errorf("delete bridge: %v: %s", err, out)
		}
	}
	if !natExisted && hostportChains() {
		// The portmap plugin made its top-level chains for this test: remove
		// them once no other rule is in them.
		out, err := exec.Command("iptables", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT").Output()
		if err == nil && strings.Count(string(out), "\n") <= 1 {
			for _, args := range [][]string{
				{"-t", "nat", "-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
				{"-t", "nat", "-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
				{"-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"},
				{"-t", "nat", "-F", "CNI-HOSTPORT-DNAT"}, {"-t", "nat", "-X", "CNI-HOSTPORT-DNAT"},
				{"-t", "nat", "-F", "CNI-HOSTPORT-MASQ"}, {"-t", "nat", "-X", "CNI-HOSTPORT-MASQ"},
				{"-t", "nat", "-F", "CNI-HOSTPORT-SETMARK"}, {"-t", "nat", "-X", "CNI-HOSTPORT-SETMARK"},
			} {
				// Rules that this plugin version did not make are absent: not an error.
				_ = exec.Command("iptables", args...).Run()
			}
		}
	}
}

func (e *Env) cleanupDir(t testing.TB) {
	// Unmount whatever is still mounted under the Env (pinned netns left by a
	// failed test), deepest first, then remove it.
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("mountinfo: %v", err)
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], e.Dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mounts[i], err)
		}
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		t.Errorf("remove %s: %v", e.Dir, err)
	}
}

// ClaimSubnet picks a /24 of 10.244.0.0/16 that no other test on the
// machine holds (a lock file per subnet, shared by every test that runs
// pods), released at cleanup.
func ClaimSubnet(t testing.TB) (string, error) {
	lockDir := filepath.Join(os.TempDir(), "logplane-test-subnets")
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return "", err
	}
	start := int(time.Now().UnixNano() % 150)
	for i := range 150 {
		n := 100 + (start+i)%150
		lock := filepath.Join(lockDir, fmt.Sprint(n))
		if fi, err := os.Stat(lock); err == nil && time.Since(fi.ModTime()) > 2*time.Hour {
			os.Remove(lock) // stale: its test died long ago; a failed remove just skips n
		}
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			continue
		}
		f.Close() // empty lock file
		t.Cleanup(func() {
			if err := os.Remove(lock); err != nil {
				t.Errorf("release subnet lock: %v", err)
			}
		})
		return fmt.Sprintf("10.244.%d.0/24", n), nil
	}
	return "", errors.New("dataplanetest: no free test subnet")
}
