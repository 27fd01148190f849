package containerd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/ociimage"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

func sandbox(t *testing.T, e *dataplanetest.Env, name string) runtimeapi.Sandbox {
	t.Helper()
	sb, err := e.Runtime.CreateSandbox(t.Context(), runtimeapi.SandboxConfig{PodUID: "uid-" + name, PodName: name, PodNamespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

func run(t *testing.T, rt *containerd.Runtime, sb runtimeapi.Sandbox, cfg runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx := t.Context()
	if _, err := rt.EnsureImage(ctx, cfg.Image, runtimeapi.PullIfNotPresent); err != nil {
		t.Fatal(err)
	}
	id, err := rt.CreateContainer(ctx, sb.ID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}

func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitLog waits until the log of container id holds want.
func waitLog(t *testing.T, rt *containerd.Runtime, id, want string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		var logs bytes.Buffer
		if err := rt.Logs(t.Context(), id, runtimeapi.LogOptions{TailLines: -1}, &logs); err != nil {
			return err
		}
		if !strings.Contains(logs.String(), want) {
			return fmt.Errorf("log of %s lacks %q: %q", id, want, logs.String())
		}
		return nil
	})
}

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRuntime(t *testing.T) {
	e := dataplanetest.New(t)
	rt := e.Runtime

	t.Run("network", func(t *testing.T) {
		ctx := t.Context()
		a, b := sandbox(t, e, "net-a"), sandbox(t, e, "net-b")
		if !netip.MustParsePrefix(e.Subnet).Contains(netip.MustParseAddr(a.IP)) {
			t.Fatalf("pod IP %s not in %s", a.IP, e.Subnet)
		}
		web := run(t, rt, a, runtimeapi.ContainerConfig{Name: "web", Image: e.Hello, Env: []string{"HELLO_GREETING=Hi"}})
		// From the host, to the pod IP.
		eventually(t, 10*time.Second, func() error {
			body, err := httpGet(ctx, "http://"+a.IP+":8080/")
			if err == nil && body != "Hi from net-a\n" {
				err = fmt.Errorf("body %q", body)
			}
			return err
		})
		// Inside the pod, over its loopback interface (brought up without the CNI plugin).
		var lo bytes.Buffer
		if code, err := rt.Exec(ctx, web, runtimeapi.ExecOptions{Cmd: []string{"wget", "-qO-", "http://127.0.0.1:8080/"}, Stdout: &lo, Stderr: io.Discard}); err != nil || code != 0 || lo.String() != "Hi from net-a\n" {
			t.Fatalf("wget over the pod's loopback: code %d err %v out %q", code, err, lo.String())
		}
		// From another pod.
		cid := run(t, rt, b, runtimeapi.ContainerConfig{Name: "c", Image: e.Busybox, Command: []string{"sleep", "1000"}})
		var out bytes.Buffer
		var errb bytes.Buffer
		code, err := rt.Exec(ctx, cid, runtimeapi.ExecOptions{Cmd: []string{"wget", "-qO-", "http://" + a.IP + ":8080/"}, Stdout: &out, Stderr: &errb})
		t.Logf("stderr %q", errb.String())
		if err != nil || code != 0 || out.String() != "Hi from net-a\n" {
			t.Fatalf("wget from pod b: code %d err %v out %q", code, err, out.String())
		}
		// Teardown releases the IP and the namespace.
		if err := rt.RemoveSandbox(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(a.NetNSPath); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("netns %s still there: %v", a.NetNSPath, err)
		}
		ipam, err := os.ReadDir(filepath.Join(e.Dir, "net", "ipam", "lpt-"+e.Bridge))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range ipam {
			if f.Name() == a.IP {
				t.Fatalf("IP %s still allocated", a.IP)
			}
		}
		if err := rt.RemoveSandbox(ctx, a.ID); err != nil {
			t.Fatalf("second remove: %v", err)
		}
	})

	t.Run("host port", func(t *testing.T) {
		ctx := t.Context()
		port := int32(30000 + time.Now().UnixNano()%2000)
		ports := []runtimeapi.PortMapping{{HostPort: port, ContainerPort: 8080, Protocol: "TCP"}}
		sb, err := rt.CreateSandbox(ctx, runtimeapi.SandboxConfig{PodUID: "uid-hostport", PodName: "hostport", PodNamespace: "default", Ports: ports})
		if err != nil {
			t.Fatal(err)
		}
		run(t, rt, sb, runtimeapi.ContainerConfig{Name: "web", Image: e.Hello})
		// The portmap plugin forwards the node's port (here on the bridge's address) to the pod.
		url := fmt.Sprintf("http://%s:%d/", e.Network.Gateway(), port)
		eventually(t, 10*time.Second, func() error {
			body, err := httpGet(ctx, url)
			if err == nil && body != "Hello from hostport\n" {
				err = fmt.Errorf("body %q", body)
			}
			return err
		})
		dport := fmt.Sprintf("--dport %d ", port)
		nat, err := exec.Command("iptables", "-t", "nat", "-S").CombinedOutput()
		if err != nil || !strings.Contains(string(nat), dport) {
			t.Fatalf("no DNAT rule for port %d: %v\n%s", port, err, nat)
		}
		if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
		nat, err = exec.Command("iptables", "-t", "nat", "-S").CombinedOutput()
		if err != nil || strings.Contains(string(nat), dport) {
			t.Fatalf("DNAT rule for port %d left after removal: %v\n%s", port, err, nat)
		}
	})

	t.Run("pull errors", func(t *testing.T) {
		ctx := t.Context()
		_, err := rt.EnsureImage(ctx, e.Registry.Ref("logplane/nope:1"), runtimeapi.PullIfNotPresent)
		if !errors.Is(err, runtimeapi.ErrImagePull) {
			t.Fatalf("missing image: %v", err)
		}
		_, err = rt.EnsureImage(ctx, e.Registry.Ref("logplane/nope:1"), runtimeapi.PullNever)
		if !errors.Is(err, runtimeapi.ErrImageNeverPull) {
			t.Fatalf("never: %v", err)
		}
		_, err = rt.EnsureImage(ctx, "UPPER/Case:x", runtimeapi.PullIfNotPresent)
		if !errors.Is(err, runtimeapi.ErrInvalidImageName) {
			t.Fatalf("invalid: %v", err)
		}
		img, err := rt.EnsureImage(ctx, e.Busybox, runtimeapi.PullAlways)
		if err != nil || !img.Pulled || !strings.Contains(img.ID, "@sha256:") {
			t.Fatalf("always: %+v %v", img, err)
		}
		img, err = rt.EnsureImage(ctx, e.Busybox, runtimeapi.PullIfNotPresent)
		if err != nil || img.Pulled {
			t.Fatalf("if not present: %+v %v", img, err)
		}
	})

	t.Run("local images are never pulled", func(t *testing.T) {
		ctx := t.Context()
		busybox, _ := dataplanetest.Images(t)
		archive := filepath.Join(t.TempDir(), "busybox.tar")
		if err := ociimage.WriteArchive(archive, "logplane.local/busybox:latest", busybox); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := rt.ImportArchive(ctx, f); err != nil {
			t.Fatal(err)
		}
		// :latest means policy Always: the node's copy runs.
		img, err := rt.EnsureImage(ctx, "logplane.local/busybox:latest", runtimeapi.PullAlways)
		if err != nil || img.Pulled {
			t.Fatalf("local image, policy Always: %+v %v", img, err)
		}
		_, err = rt.EnsureImage(ctx, "logplane.local/nope:latest", runtimeapi.PullAlways)
		if !errors.Is(err, runtimeapi.ErrImagePull) || !strings.Contains(err.Error(), "never pulled") {
			t.Fatalf("absent local image: %v", err)
		}
	})

	t.Run("exec logs port-forward stats mounts", func(t *testing.T) {
		ctx := t.Context()
		sb := sandbox(t, e, "tools")
		host := filepath.Join(t.TempDir(), "cfg")
		if err := os.MkdirAll(host, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(host, "key"), []byte("value"), 0o644); err != nil {
			t.Fatal(err)
		}
		cid := run(t, rt, sb, runtimeapi.ContainerConfig{
			Name: "sh", Image: e.Busybox, WorkingDir: "/tmp", Env: []string{"GREETING=hey"},
			Command: []string{"sh", "-c", `echo "$GREETING from $(pwd)"; echo oops >&2; exec sleep 1000`},
			Mounts:  []runtimeapi.Mount{{HostPath: host, ContainerPath: "/etc/cfg", ReadOnly: true}},
		})
		web := run(t, rt, sb, runtimeapi.ContainerConfig{Name: "web", Image: e.Hello})
		_ = web
		var out, errb bytes.Buffer
		code, err := rt.Exec(ctx, cid, runtimeapi.ExecOptions{Cmd: []string{"sh", "-c", "cat /etc/cfg/key; echo; hostname; touch /etc/cfg/x || echo ro >&2; exit 3"}, Stdout: &out, Stderr: &errb})
		if err != nil || code != 3 || out.String() != "value\ntools\n" || !strings.Contains(errb.String(), "ro") {
			t.Fatalf("exec: code %d err %v out %q stderr %q", code, err, out.String(), errb.String())
		}
		out.Reset()
		code, err = rt.Exec(ctx, cid, runtimeapi.ExecOptions{Cmd: []string{"cat"}, Stdin: strings.NewReader("piped\n"), Stdout: &out})
		if err != nil || code != 0 || out.String() != "piped\n" {
			t.Fatalf("exec stdin: code %d err %v out %q", code, err, out.String())
		}
		out.Reset()
		code, err = rt.Exec(ctx, cid, runtimeapi.ExecOptions{Cmd: []string{"sh", "-c", "tty && echo in-tty"}, TTY: true, Stdout: &out})
		if err != nil || code != 0 || !strings.Contains(out.String(), "in-tty") {
			t.Fatalf("exec tty: code %d err %v out %q", code, err, out.String())
		}
		tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err = rt.Exec(tctx, cid, runtimeapi.ExecOptions{Cmd: []string{"sleep", "10"}})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("exec timeout: %v", err)
		}
		// ExecOptions.Timeout (a probe's) counts from the process's start and kills it.
		start := time.Now()
		_, err = rt.Exec(ctx, cid, runtimeapi.ExecOptions{Cmd: []string{"sleep", "10"}, Timeout: 500 * time.Millisecond})
		if !errors.Is(err, runtimeapi.ErrExecTimeout) || time.Since(start) > 5*time.Second {
			t.Fatalf("exec with Timeout: %v after %s", err, time.Since(start))
		}
		out.Reset()
		if code, err := rt.Exec(ctx, cid, runtimeapi.ExecOptions{Cmd: []string{"echo", "quick"}, Stdout: &out, Timeout: time.Second}); err != nil || code != 0 || out.String() != "quick\n" {
			t.Fatalf("exec within Timeout: code %d err %v out %q", code, err, out.String())
		}

		eventually(t, 5*time.Second, func() error {
			var logs bytes.Buffer
			if err := rt.Logs(ctx, cid, runtimeapi.LogOptions{TailLines: -1}, &logs); err != nil {
				return err
			}
			// stdout and stderr are separate pipes: their order is not kept.
			if l := logs.String(); l != "hey from /tmp\noops\n" && l != "oops\nhey from /tmp\n" {
				return fmt.Errorf("logs %q", logs.String())
			}
			return nil
		})
		var tail bytes.Buffer
		if err := rt.Logs(ctx, cid, runtimeapi.LogOptions{TailLines: 1}, &tail); err != nil || strings.Count(tail.String(), "\n") != 1 {
			t.Fatalf("tail: %q %v", tail.String(), err)
		}

		var conn net.Conn
		eventually(t, 10*time.Second, func() error {
			c, err := rt.PortForward(ctx, sb.ID, 8080)
			if err != nil {
				return err
			}
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.0\r\n\r\n"); err != nil {
				c.Close()
				return err
			}
			conn = c
			return nil
		})
		resp, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.0 200") {
			t.Fatalf("port-forward: %q %v", resp, err)
		}

		st, err := rt.Stats(ctx, web)
		if err != nil || st.CPUUsageNanos == 0 || st.MemoryWorkingSetBytes == 0 {
			t.Fatalf("stats: %+v %v", st, err)
		}
	})

	t.Run("exit codes and OOM", func(t *testing.T) {
		ctx := t.Context()
		sb := sandbox(t, e, "exits")
		ok := run(t, rt, sb, runtimeapi.ContainerConfig{Name: "ok", Image: e.Busybox, Command: []string{"true"}})
		bad := run(t, rt, sb, runtimeapi.ContainerConfig{Name: "bad", Image: e.Busybox, Command: []string{"sh", "-c", "echo bye; exit 7"}})
		oom := run(t, rt, sb, runtimeapi.ContainerConfig{Name: "oom", Image: e.Hello, Env: []string{"HELLO_ALLOC_MB=64"},
			Resources: runtimeapi.Resources{MemoryLimitBytes: 16 << 20, CPULimitMilli: 500, CPURequestMilli: 100}})
		for _, want := range []struct {
			id     string
			code   int32
			reason string
		}{{ok, 0, runtimeapi.ReasonCompleted}, {bad, 7, runtimeapi.ReasonError}, {oom, 137, runtimeapi.ReasonOOMKilled}} {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			st, err := rt.WaitContainer(wctx, want.id)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if st.State != runtimeapi.StateExited || st.ExitCode != want.code || st.Reason != want.reason || st.FinishedAt.IsZero() || st.StartedAt.IsZero() {
				t.Errorf("%s: got %+v, want code %d reason %s", st.Name, st, want.code, want.reason)
			}
		}
		var logs bytes.Buffer
		if err := rt.Logs(ctx, bad, runtimeapi.LogOptions{TailLines: -1, Follow: true}, &logs); err != nil || logs.String() != "bye\n" {
			t.Fatalf("logs of exited: %q %v", logs.String(), err)
		}
	})

	t.Run("graceful stop", func(t *testing.T) {
		ctx := t.Context()
		sb := sandbox(t, e, "stop")
		// sleep as PID 1 ignores SIGTERM: it takes the whole grace period.
		stubborn := run(t, rt, sb, runtimeapi.ContainerConfig{Name: "stubborn", Image: e.Busybox, Command: []string{"sleep", "1000"}})
		polite := run(t, rt, sb, runtimeapi.ContainerConfig{Name: "polite", Image: e.Hello})
		// hello says it listens once its signal handler is in place; PID 1 ignores SIGTERM before.
		waitLog(t, rt, polite, "hello listening")
		start := time.Now()
		if err := rt.StopContainer(ctx, polite, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("polite stop took %s", d)
		}
		start = time.Now()
		if err := rt.StopContainer(ctx, stubborn, time.Second); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < time.Second || d > 3*time.Second {
			t.Errorf("stubborn stop took %s, want about 1s", d)
		}
		st, err := rt.ContainerStatus(ctx, stubborn)
		if err != nil || st.ExitCode != 137 {
			t.Fatalf("stubborn: %+v %v", st, err)
		}
		st, err = rt.ContainerStatus(ctx, polite)
		if err != nil || st.ExitCode != 0 {
			t.Fatalf("polite: %+v %v", st, err)
		}
		if err := rt.RemoveContainer(ctx, polite); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.ContainerStatus(ctx, polite); !errors.Is(err, runtimeapi.ErrNotFound) {
			t.Fatalf("removed: %v", err)
		}
	})

	t.Run("adoption", func(t *testing.T) {
		ctx := t.Context()
		sb := sandbox(t, e, "adopt")
		cid := run(t, rt, sb, runtimeapi.ContainerConfig{Name: "web", Image: e.Hello, Attempt: 2})
		eventually(t, 10*time.Second, func() error { _, err := httpGet(ctx, "http://"+sb.IP+":8080/"); return err })

		rt2 := e.NewRuntime(t)
		sbs, err := rt2.ListSandboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range sbs {
			found = found || (s.ID == sb.ID && s.IP == sb.IP)
		}
		if !found {
			t.Fatalf("sandbox %s not listed by new runtime: %+v", sb.ID, sbs)
		}
		cs, err := rt2.ListContainers(ctx, sb.PodUID)
		if err != nil || len(cs) != 1 || cs[0].ID != cid || cs[0].State != runtimeapi.StateRunning || cs[0].Attempt != 2 || cs[0].Name != "web" {
			t.Fatalf("adopted: %+v %v", cs, err)
		}
		// Output after adoption still reaches the log.
		if _, err := httpGet(ctx, "http://"+sb.IP+":8080/after-adoption"); err != nil {
			t.Fatal(err)
		}
		waitLog(t, rt2, cid, "GET /after-adoption")
		if err := rt2.StopContainer(ctx, cid, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		st, err := rt2.WaitContainer(ctx, cid)
		if err != nil || st.State != runtimeapi.StateExited {
			t.Fatalf("after stop: %+v %v", st, err)
		}
	})
}

func TestDaemonStateOnTmpfs(t *testing.T) {
	dataplanetest.RequireRoot(t)
	dir, err := os.MkdirTemp("", "lpdd-")
	if err != nil {
		t.Fatal(err)
	}
	state := containerd.StateDir(dir)
	t.Cleanup(func() {
		_ = unix.Unmount(state, unix.MNT_DETACH) // left mounted only if the test failed
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	isTmpfs := func() bool {
		var fs unix.Statfs_t
		if err := unix.Statfs(state, &fs); err != nil {
			t.Fatal(err)
		}
		return fs.Type == unix.TMPFS_MAGIC
	}
	d, err := containerd.StartDaemon(t.Context(), containerd.DaemonConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if d.StateDir != state || !isTmpfs() {
		t.Errorf("state dir %s (want %s) is not a tmpfs", d.StateDir, state)
	}
	if err := d.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	// No task was left: the tmpfs is gone with the daemon.
	if isTmpfs() {
		t.Errorf("state dir %s still a tmpfs after Stop with no task", state)
	}
}
