package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/podnet"
)

// keepLogsEnv names a directory where each test's process logs are copied before cleanup.
const keepLogsEnv = "LOGPLANE_E2E_LOGS"

// machine is one test's single-machine cluster: what a user would set up on a host, with every
// name and address the test's own.
type machine struct {
	t   *testing.T
	bin binaries
	// dir is the data directory (--data-dir) of every role; logs holds the processes' output.
	dir, logs string
	node      string
	bridge    string
	podCIDR   string
	// apiAddr, natsAddr and streamAddr are free loopback addresses for the API server, the
	// embedded NATS server and the node agent's streaming endpoint.
	apiAddr, natsAddr, streamAddr string

	// procs are the processes started on the machine, shared by the copies for subtests.
	procs *procList
}

type procList struct {
	mu    sync.Mutex
	procs []*proc
}

// newMachine makes an empty machine; start roles on it with up, apiserver, reconcile and agent.
// Its cleanup stops every process it started and removes everything they made.
func newMachine(t *testing.T) *machine {
	t.Helper()
	bin := requireMachine(t)
	subnet, err := dataplanetest.ClaimSubnet(t) // released last, after the network is gone
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "lpe2e-")
	if err != nil {
		t.Fatal(err)
	}
	m := &machine{
		t: t, bin: bin, dir: dir, logs: dir + "-logs",
		node:    "e2e-node",
		bridge:  "lpe" + randHex(8),
		podCIDR: subnet,
		procs:   &procList{},
	}
	t.Cleanup(m.cleanup)
	if err := os.MkdirAll(m.logs, 0o755); err != nil {
		t.Fatal(err)
	}
	m.apiAddr, m.natsAddr, m.streamAddr = freeAddr(t), freeAddr(t), freeAddr(t)
	// Nothing from the pods' bridge goes to another interface: only loopback and the test's own
	// network namespaces see traffic.
	if out, err := exec.Command("iptables", m.forwardRule("-I")...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	return m
}

func (m *machine) forwardRule(op string) []string {
	return []string{op, "FORWARD", "-i", m.bridge, "!", "-o", m.bridge, "-j", "DROP", "-m", "comment", "--comment", "logplane e2e " + m.bridge}
}

// loadImages puts the demo image archives into the data directory, where the node agent loads
// them at start (as ops/up.sh does).
func (m *machine) loadImages() {
	m.t.Helper()
	dst := filepath.Join(m.dir, "images")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		m.t.Fatal(err)
	}
	entries, err := os.ReadDir(m.bin.images)
	if err != nil {
		m.t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Link(filepath.Join(m.bin.images, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			m.t.Fatal(err)
		}
	}
}

func (m *machine) natsURL() string    { return "nats://" + m.natsAddr }
func (m *machine) kubeconfig() string { return filepath.Join(m.dir, "kubeconfig") }

// apiFlags and nodeFlags are the flags of the API server and of this machine's node agent, as
// a user on this machine would give them.
func (m *machine) apiFlags() []string {
	return []string{"--listen", m.apiAddr, "--nats-listen", m.natsAddr}
}

func (m *machine) nodeFlags() []string {
	return []string{"--node-name", m.node, "--node-ip", "127.0.0.1", "--stream-listen", m.streamAddr,
		"--bridge", m.bridge, "--pod-cidr", m.podCIDR, "--containerd", "own",
		// Machines of concurrent tests share the host's network namespace, where there is one
		// service proxy table: tests of Services turn it on for their own machine.
		"--service-proxy=false",
		// and one port 80 and 443: tests of Ingresses give their machine ports of its own.
		"--ingress-http-port=0", "--ingress-https-port=0"}
}

// upMachine makes a machine with the demo images loaded and `logplane up` running on it, its API
// answering and its node Ready, as the README's quick start leaves one.
func upMachine(t *testing.T) (*machine, *proc) {
	t.Helper()
	m := newMachine(t)
	m.loadImages()
	up := m.up()
	m.waitAPI()
	m.waitNodeReady()
	return m, up
}

// up starts `logplane up`: every role in one process.
func (m *machine) up() *proc {
	return m.start("up", slices.Concat([]string{"up", "--data-dir", m.dir}, m.apiFlags(), m.nodeFlags())...)
}

// apiserver starts `logplane apiserver`, which embeds the NATS server.
func (m *machine) apiserver() *proc {
	return m.start("apiserver", slices.Concat([]string{"apiserver", "--data-dir", m.dir}, m.apiFlags())...)
}

// reconcile starts `logplane reconcile` (every reconciler unless flags say --reconcilers).
func (m *machine) reconcile(name string, flags ...string) *proc {
	return m.start(name, slices.Concat([]string{"reconcile", "--nats", m.natsURL(), "--data-dir", m.dir}, flags)...)
}

// agent starts `logplane agent` for this machine, with a containerd of its own, serving its
// metrics.
func (m *machine) agent() *proc {
	return m.start("agent", slices.Concat([]string{"agent", "--nats", m.natsURL(), "--data-dir", m.dir, "--metrics-listen", "127.0.0.1:0"}, m.nodeFlags())...)
}

// proc is a logplane process the test started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (m *machine) start(name string, args ...string) *proc {
	m.t.Helper()
	m.procs.mu.Lock()
	n := len(m.procs.procs)
	m.procs.mu.Unlock()
	logPath := filepath.Join(m.logs, fmt.Sprintf("%02d-%s.log", n, name))
	f, err := os.Create(logPath)
	if err != nil {
		m.t.Fatal(err)
	}
	cmd := exec.Command(m.bin.logplane, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// If the test binary dies, so do its processes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		m.t.Fatalf("start logplane %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // how it ended is in its log; stop and kill say what they expect
		f.Close()
		close(p.done)
	}()
	m.procs.mu.Lock()
	m.procs.procs = append(m.procs.procs, p)
	m.procs.mu.Unlock()
	return p
}

// stop ends the process as Ctrl-C would (SIGTERM) and waits for it to exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("stop %s: %v", p.name, err)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("logplane %s exited with %d after SIGTERM, want 0 (log %s)", p.name, code, p.log)
	}
}

// kill ends the process with kill -9 and waits for it to exit.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.signal(syscall.SIGKILL, 30*time.Second); err != nil {
		t.Fatalf("kill %s: %v", p.name, err)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process (by PID) and waits up to wait for it to exit, then kills it.
func (p *proc) signal(sig syscall.Signal, wait time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(wait):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return fmt.Errorf("logplane %s did not exit within %s of %s; killed", p.name, wait, sig)
}

// requireRunning fails the test if a process the test expects to be running has exited.
func (m *machine) requireRunning(ps ...*proc) {
	m.t.Helper()
	for _, p := range ps {
		if p.exited() {
			m.t.Fatalf("logplane %s exited (%v); log:\n%s", p.name, p.cmd.ProcessState, tail(p.log, 40))
		}
	}
}

// cleanup stops every process and removes everything the machine made, also after a failure.
func (m *machine) cleanup() {
	t := m.t
	m.procs.mu.Lock()
	procs := m.procs.procs
	m.procs.mu.Unlock()
	// The newest first, and the log's server (the API server, or up) last, so the others need not
	// wait for it on their way out.
	for _, embedsLog := range []bool{false, true} {
		for i := len(procs) - 1; i >= 0; i-- {
			if (procs[i].name == "apiserver" || procs[i].name == "up") != embedsLog {
				continue
			}
			if err := procs[i].signal(syscall.SIGTERM, 20*time.Second); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	if t.Failed() {
		for _, p := range procs {
			t.Logf("---- logplane %s (%s):\n%s", p.name, p.log, tail(p.log, 60))
		}
	}
	if keep := os.Getenv(keepLogsEnv); keep != "" {
		// containerd's own log too.
		if b, err := os.ReadFile(filepath.Join(m.dir, "containerd", "containerd.log")); err == nil {
			_ = os.WriteFile(filepath.Join(m.logs, "containerd.log"), b, 0o644) // best effort, for a person
		}
		dst := filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
		if out, err := exec.Command("cp", "-r", m.logs, dst).CombinedOutput(); err != nil {
			t.Errorf("keeping the logs: %v: %s", err, out)
		} else {
			t.Logf("logs kept in %s", dst)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.removePods(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	// Whatever still runs from this machine (shims of containers the runtime could not remove).
	for _, pid := range pidsUnder(m.dir) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("cleanup: kill %d: %v", pid, err)
		}
	}
	if err := unmountUnder(m.dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if exec.Command("ip", "link", "show", m.bridge).Run() == nil {
		if out, err := exec.Command("ip", "link", "del", m.bridge).CombinedOutput(); err != nil {
			t.Errorf("cleanup: delete bridge %s: %v: %s", m.bridge, err, out)
		}
	}
	if out, err := exec.Command("iptables", m.forwardRule("-D")...).CombinedOutput(); err != nil {
		t.Errorf("cleanup: iptables -D: %v: %s", err, out)
	}
	for _, d := range []string{m.dir, m.logs} {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// removePods removes every sandbox (containers, IP, network namespace) and the containerd
// namespace the node agent left: `logplane up` and `logplane agent` leave pods running when they
// stop, so that the next start adopts them. It uses the machine's containerd, started again if
// it is not running; a daemon left running is killed with the shims afterwards.
func (m *machine) removePods(ctx context.Context) error {
	cdir := filepath.Join(m.dir, "containerd")
	if _, err := os.Stat(filepath.Join(cdir, "config.toml")); err != nil {
		return nil // no agent ever ran
	}
	// Use a daemon still running (one not yet gone after its agent died); else start it again.
	addr := filepath.Join(cdir, "containerd.sock")
	if containerd.Ping(ctx, addr) != nil {
		d, err := containerd.StartDaemon(ctx, containerd.DaemonConfig{Dir: cdir})
		if err != nil {
			return err
		}
		defer func() {
			if err := d.Stop(context.WithoutCancel(ctx)); err != nil {
				m.t.Errorf("cleanup: %v", err)
			}
		}()
		addr = d.Address
	}
	network, err := podnet.New(podnet.Config{StateDir: filepath.Join(m.dir, "agent", "net"), Bridge: m.bridge, Subnet: m.podCIDR})
	if err != nil {
		return err
	}
	rt, err := containerd.New(ctx, containerd.Config{Address: addr, DataDir: filepath.Join(m.dir, "agent", "runtime"), Network: network})
	if err != nil {
		return err
	}
	defer rt.Close()
	sbs, err := rt.ListSandboxes(ctx)
	errs := []error{err}
	for _, sb := range sbs {
		errs = append(errs, rt.RemoveSandbox(ctx, sb.ID))
	}
	errs = append(errs, rt.DeleteNamespace(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing the pods: %w", err)
	}
	return nil
}

// pidsUnder lists the processes whose command line names a path under dir (shims and daemons of
// this machine's containerd, whose socket is under it).
func pidsUnder(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountUnder unmounts everything mounted under dir (pinned network namespaces), deepest first.
func unmountUnder(dir string) error {
	mounts, err := mountsIn(dir)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists what is mounted under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	mounts, err := mountsIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	return mounts
}

// mountsIn lists the mount points under dir, parents first.
func mountsIn(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	return mounts, nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// The kernel may give a port just closed again: never hand out one twice.
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

// handedOut are the addresses freeAddr gave, which the processes of a test may not be
// listening on yet.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)[:n]
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
