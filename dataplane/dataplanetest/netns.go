package dataplanetest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	cnins "github.com/containernetworking/plugins/pkg/ns"
)

// RequireNetworking skips the test (or fails it under
// LOGPLANE_REQUIRE_ROOT_TESTS=1) unless it can make network namespaces and
// program nftables in them: root, ip (iproute2) and nft (nftables).
func RequireNetworking(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ") + " (apt-get install -y iproute2 nftables; run as root)"
	if os.Getenv(RequireEnvVar) == "1" {
		t.Fatalf("%s; %s=1 forbids skipping", msg, RequireEnvVar)
	}
	t.Skip(msg)
}

// NetNS is a named network namespace of the test's own (ip netns add),
// deleted with everything in it (links, routes, nftables tables) when the
// test ends, also when it fails.
type NetNS struct {
	Name string
	t    testing.TB
}

// NewNetNS creates the namespace "lpt<random>-<suffix>" with its loopback up.
func NewNetNS(t testing.TB, suffix string) *NetNS {
	t.Helper()
	n := &NetNS{Name: "lpt" + randHex(6) + "-" + suffix, t: t}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	n.IP("link", "set", "lo", "up")
	return n
}

// Path is the namespace's file, for setns.
func (n *NetNS) Path() string { return "/run/netns/" + n.Name }

// IP runs `ip -n <ns> args...`, failing the test on error.
func (n *NetNS) IP(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
}

// Exec runs a command inside the namespace and returns its output.
func (n *NetNS) Exec(name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...).CombinedOutput()
	return string(out), err
}

// Sysctl sets a sysctl of the namespace (name as in /proc/sys, with slashes).
func (n *NetNS) Sysctl(name, value string) {
	n.t.Helper()
	err := n.Do(func() error { return os.WriteFile("/proc/sys/"+name, []byte(value), 0o644) })
	if err != nil {
		n.t.Fatalf("sysctl %s=%s in %s: %v", name, value, n.Name, err)
	}
}

// Do runs fn on a thread inside the namespace: sockets fn opens, and
// processes it starts, belong to the namespace.
func (n *NetNS) Do(fn func() error) error {
	return cnins.WithNetNSPath(n.Path(), func(cnins.NetNS) error { return fn() })
}
