package containerd_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/dataplanetest"
)

// daemonChildEnv makes the test binary a process that starts a daemon and waits to be killed.
const daemonChildEnv = "LOGPLANE_DAEMON_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(daemonChildEnv); dir != "" {
		os.Exit(daemonChild(dir))
	}
	os.Exit(m.Run())
}

// daemonChild starts a daemon under dir from a goroutine locked to its thread that then ends
// without unlocking, so that Go ends the thread (as network namespace helpers do); once the
// thread is gone it prints the daemon's PID and waits to be killed.
func daemonChild(dir string) int {
	type started struct {
		pid, tid int
		err      error
	}
	// The main thread is the process: Go never ends it, so the goroutine below must not run on it.
	runtime.LockOSThread()
	ch := make(chan started, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		d, err := containerd.StartDaemon(context.Background(), containerd.DaemonConfig{Dir: dir})
		if err != nil {
			ch <- started{err: err}
			return
		}
		ch <- started{pid: d.PID, tid: unix.Gettid()}
	}()
	s := <-ch
	if s.err != nil {
		fmt.Fprintln(os.Stderr, s.err)
		return 1
	}
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", s.tid)); os.IsNotExist(err) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println(s.pid)
	select {}
}

// A daemon never outlives the process that started it, even one killed with SIGKILL, and even
// when the thread that called StartDaemon has ended before.
func TestDaemonDiesWithItsParent(t *testing.T) {
	dataplanetest.RequireRoot(t)
	dir, err := os.MkdirTemp("", "lpdd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if pid, err := containerd.DaemonPID(dir); err == nil && pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL) // left only if the test failed
		}
		_ = unix.Unmount(containerd.StateDir(dir), unix.MNT_DETACH) // likewise
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), daemonChildEnv+"="+dir)
	var stderr bytes.Buffer
	child.Stderr = &stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = child.Process.Kill() // already dead unless the test failed early
		_ = child.Wait()         // killed: its exit status says so
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n') // empty if the child died: reported below
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(time.Minute):
		t.Fatal("the child printed no daemon PID within a minute")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("child printed %q; stderr:\n%s", line, stderr.String())
	}
	// The thread that forked it is gone; the daemon is not.
	if err := containerd.Ping(t.Context(), filepath.Join(dir, "containerd.sock")); err != nil {
		t.Fatalf("daemon gone with the thread that started it: %v", err)
	}
	if got, err := containerd.DaemonPID(dir); err != nil || got != pid {
		t.Fatalf("DaemonPID = %d, %v; want %d", got, err, pid)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := containerd.DaemonPID(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon %d still runs 20s after its parent was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Nothing runs under dir now: StopLeftover finds nothing.
	if got, err := containerd.StopLeftover(t.Context(), dir); err != nil || got != 0 {
		t.Fatalf("StopLeftover = %d, %v; want 0", got, err)
	}

	// A daemon on that configuration that no Daemon owns (as older logplanes left them): a new
	// one refuses to start beside it, and StopLeftover stops it by its PID.
	leftover := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	leftover.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := leftover.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- leftover.Wait() }()
	deadline = time.Now().Add(20 * time.Second)
	for containerd.Ping(t.Context(), filepath.Join(dir, "containerd.sock")) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the leftover daemon does not answer")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d, err := containerd.StartDaemon(t.Context(), containerd.DaemonConfig{Dir: dir}); err == nil || !strings.Contains(err.Error(), "already answers") {
		if d != nil {
			_ = d.Stop(t.Context()) // a second daemon: the test fails anyway
		}
		t.Fatalf("StartDaemon beside a running daemon: %v", err)
	}
	if got, err := containerd.StopLeftover(t.Context(), dir); err != nil || got != leftover.Process.Pid {
		t.Fatalf("StopLeftover = %d, %v; want %d", got, err, leftover.Process.Pid)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover daemon did not exit")
	}
}
