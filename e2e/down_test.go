package e2e_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDown is `logplane down` after `logplane up` stopped with pods running: it refuses while up
// runs, then stops every container and removes everything logplane made on the machine, so
// that the data directory can be deleted and nothing of logplane's is left: no process naming
// the data directory, no container, no mount under it, no pod network namespace, no bridge, no
// route to the pod range, no iptables rule for the pods, no CNI cache entry.
func TestDown(t *testing.T) {
	m, up := upMachine(t)
	_, port, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	m.k("create", "deployment", "web", "--image=logplane.local/hello:latest", "--replicas=2")
	// A host port: the portmap plugin's rules; a memory emptyDir: a tmpfs under the data directory.
	m.k("run", "hello", "--image=logplane.local/hello:latest", "--port", "8080",
		`--overrides={"spec":{"containers":[{"name":"hello","image":"logplane.local/hello:latest","ports":[{"containerPort":8080,"hostPort":`+port+`}],`+
			`"volumeMounts":[{"name":"mem","mountPath":"/mem"}]}],"volumes":[{"name":"mem","emptyDir":{"medium":"Memory","sizeLimit":"1Mi"}}]}}`)
	rolledOut(t, m.k("rollout", "status", "deployment/web", "--timeout=60s"), "web")
	m.k("wait", "--for=condition=Ready", "pod/hello", "--timeout=60s")
	ips := strings.Fields(m.k("get", "pods", "-o", "jsonpath={.items[*].status.podIP}"))
	if len(ips) != 3 {
		t.Fatalf("pod IPs %v, want 3", ips)
	}
	if body := httpGet(t, "http://127.0.0.1:"+port+"/"); body != "Hello from hello\n" {
		t.Errorf("GET / on the host port answered %q", body)
	}

	// What logplane made for the pods, found on the host before down.
	shims := m.shims()
	var containers []int
	netns := map[string]bool{}
	for _, p := range processes() {
		if _, ok := shims[p.ppid]; ok {
			containers = append(containers, p.pid)
			netns[p.netns] = true
		}
	}
	if len(shims) != 3 || len(containers) != 3 || len(netns) != 3 {
		t.Fatalf("shims and their containers %v, network namespaces %v: want 3 pods", shims, netns)
	}
	podRules := func() []string {
		out, err := exec.Command("iptables-save").Output()
		if err != nil {
			t.Fatalf("iptables-save: %v", err)
		}
		var rules []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") && (strings.Contains(line, "--dport "+port+" ") || slices.ContainsFunc(ips, func(ip string) bool { return strings.Contains(line, ip+"/") || strings.Contains(line, ip+":") })) {
				rules = append(rules, line)
			}
		}
		return rules
	}
	if len(podRules()) == 0 {
		t.Fatal("no iptables rule for the host port before down")
	}
	if !slices.ContainsFunc(mountsUnder(t, m.dir), func(p string) bool { return strings.HasSuffix(p, "/kubernetes.io~empty-dir/mem") }) {
		t.Fatalf("no tmpfs of the memory emptyDir under the data directory: %v", mountsUnder(t, m.dir))
	}

	// Refused while up runs, with what to do.
	r := m.run(time.Minute, "", m.bin.logplane, "down", "--data-dir", m.dir)
	pid := strconv.Itoa(up.cmd.Process.Pid)
	if r.err == nil || !strings.Contains(r.errOut, "(pid "+pid+") is running the node agent of "+m.dir) || !strings.Contains(r.errOut, "kill "+pid) ||
		!strings.Contains(r.errOut, "logplane up --data-dir "+m.dir) || !strings.Contains(r.errOut, "then run logplane down again") {
		t.Fatalf("logplane down with up running: %s", r)
	}
	for _, pid := range containers {
		if !alive(pid) {
			t.Fatalf("container process %d gone after a refused down", pid)
		}
	}

	// Stopped, up leaves the pods running (the next start adopts them).
	up.stop(t)
	for _, ip := range ips[:1] {
		if body := httpGet(t, "http://"+ip+":8080/"); !strings.HasPrefix(body, "Hello from ") {
			t.Errorf("pod %s answered %q after up stopped", ip, body)
		}
	}
	r = m.run(2*time.Minute, "", m.bin.logplane, "down", "--data-dir", m.dir)
	if r.err != nil || !strings.Contains(r.out, "stopped 3 containers and removed 3 pods") || !strings.Contains(r.out, "can be deleted (rm -rf "+m.dir+")") {
		t.Fatalf("logplane down: %s", r)
	}
	t.Logf("logplane down:\n%s", r.out)

	// Nothing of logplane's runs: no process names the data directory, no container is left.
	for _, p := range processes() {
		if p.pid != os.Getpid() && slices.ContainsFunc(p.args, func(a string) bool { return strings.Contains(a, m.dir) }) {
			t.Errorf("process %d still names the data directory: %q", p.pid, p.args)
		}
		if netns[p.netns] {
			t.Errorf("process %d (%q) still in a pod's network namespace %s", p.pid, p.args, p.netns)
		}
	}
	for _, pid := range containers {
		if alive(pid) {
			t.Errorf("container process %d still runs", pid)
		}
	}
	// Nothing mounted under the data directory (state tmpfs, pinned namespaces, rootfs).
	if left := mountsUnder(t, m.dir); len(left) > 0 {
		t.Errorf("mounts left under the data directory: %v", left)
	}
	// No bridge, no route to the pod range, no rule for the pods, nothing in CNI's cache.
	if out, err := exec.Command("ip", "link", "show", m.bridge).CombinedOutput(); err == nil {
		t.Errorf("bridge %s still there:\n%s", m.bridge, out)
	}
	if out, err := exec.Command("ip", "route", "show", "to", "exact", m.podCIDR).Output(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("route to %s: %q %v", m.podCIDR, out, err)
	}
	if rules := podRules(); len(rules) > 0 {
		t.Errorf("iptables rules for the pods left:\n%s", strings.Join(rules, "\n"))
	}
	cached, _ := filepath.Glob("/var/lib/cni/results/*") // a bad pattern is impossible
	for _, f := range cached {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(m.dir)) {
			t.Errorf("CNI cache entry %s names the data directory", f)
		}
	}

	// Again: nothing to do, and it says so.
	r = m.run(time.Minute, "", m.bin.logplane, "down", "--data-dir", m.dir)
	if r.err != nil || !strings.Contains(r.out, "stopped 0 containers and removed 0 pods") {
		t.Errorf("logplane down again: %s", r)
	}
	if err := os.RemoveAll(m.dir); err != nil {
		t.Errorf("rm -rf %s after logplane down: %v", m.dir, err)
	}
	if _, err := os.Stat(m.dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after rm -rf: %v", m.dir, err)
	}
	if pids := pidsUnder(m.dir); len(pids) > 0 {
		t.Error(fmt.Sprintf("processes under the deleted data directory: %v", pids))
	}
}
