package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	client "github.com/containerd/containerd"
	"golang.org/x/sys/unix"
)

// DaemonConfig configures a containerd started by StartDaemon.
type DaemonConfig struct {
	// Dir holds the daemon's config, root, state and socket. Required; keep
	// it short, a unix socket path has at most 107 bytes.
	Dir string
	// Binary is the containerd executable. Default: "containerd" from PATH.
	Binary string
	// Log receives the daemon's output. Default: Dir/containerd.log.
	Log io.Writer
}

// Daemon is a containerd process started by StartDaemon.
type Daemon struct {
	// Address is the daemon's socket, for Config.Address.
	Address string
	// StateDir is the daemon's state directory, StateDir(Dir).
	StateDir string
	// PID is the daemon's process id.
	PID  int
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// StateDir is the state directory of the containerd started under dir. It
// is a tmpfs, as /run/containerd is on most machines: StartDaemon mounts one
// there unless the directory already holds something (a daemon of an
// earlier version left tasks in it). Its content is only meaningful until
// the machine restarts, and creating files there costs no disk work, so
// runtimes on that daemon keep there what is made for every container and
// lives no longer: runc's state (Config.RuncRoot = StateDir/runc), stdio
// FIFOs (Config.FIFODir = StateDir/fifo) and pinned network namespaces
// (podnet.Config.NetNSDir = StateDir/netns).
func StateDir(dir string) string { return filepath.Join(dir, "state") }

// PIDFile is where StartDaemon records the PID of the daemon it started
// under dir, for StopLeftover.
func PIDFile(dir string) string { return filepath.Join(dir, "containerd.pid") }

// StartDaemon starts a containerd of our own with everything under cfg.Dir
// (the CRI plugin disabled; its state on a tmpfs, see StateDir), records its
// PID (PIDFile) and waits until it answers. Stop it with Stop.
//
// The daemon never outlives the process that started it: it gets SIGTERM
// when that process dies, even by kill -9 (the kernel's parent-death signal).
// The shims, and with them the containers, survive it, as they survive a
// Stop; the next daemon started under cfg.Dir finds them again. If a daemon
// already answers on the socket (one started by a process that did not die
// with it), StartDaemon fails: stop that one with StopLeftover first.
func StartDaemon(ctx context.Context, cfg DaemonConfig) (*Daemon, error) {
	if cfg.Dir == "" {
		return nil, errors.New("containerd: DaemonConfig.Dir is required")
	}
	if cfg.Binary == "" {
		cfg.Binary = "containerd"
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("containerd: daemon binary (install containerd): %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	sock := filepath.Join(cfg.Dir, "containerd.sock")
	if len(sock) > 100 {
		return nil, fmt.Errorf("containerd: socket path %q too long", sock)
	}
	if ping(ctx, sock) == nil {
		return nil, fmt.Errorf("containerd: a daemon already answers on %s: stop it first (StopLeftover)", sock)
	}
	state := StateDir(cfg.Dir)
	if err := mountState(state); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(cfg.Dir, "root"), state, sock, sock+".ttrpc", filepath.Join(cfg.Dir, "opt"))
	confPath := filepath.Join(cfg.Dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("containerd: write config: %w", err)
	}
	d := &Daemon{Address: sock, StateDir: state, done: make(chan error, 1)}
	out := cfg.Log
	if out == nil {
		f, err := os.OpenFile(filepath.Join(cfg.Dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("containerd: daemon log: %w", err)
		}
		d.log, out = f, f
	}
	// Not CommandContext: the daemon outlives the start request, though not this process.
	cmd := exec.Command(bin, "--config", confPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := startLocked(cmd, d.done); err != nil {
		d.closeLog()
		return nil, fmt.Errorf("containerd: start daemon: %w", err)
	}
	d.cmd, d.PID = cmd, cmd.Process.Pid
	if err := os.WriteFile(PIDFile(cfg.Dir), []byte(strconv.Itoa(d.PID)+"\n"), 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("containerd: record the daemon's PID: %w", err), d.Stop(context.WithoutCancel(ctx)))
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := ping(ctx, sock); err == nil {
			return d, nil
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			serr := d.Stop(context.WithoutCancel(ctx))
			return nil, errors.Join(fmt.Errorf("containerd: daemon did not answer on %s: %w", sock, err), serr)
		}
		select {
		case err := <-d.done:
			d.done <- err
			d.closeLog()
			return nil, errors.Join(fmt.Errorf("containerd: daemon exited at start (see %s): %v", filepath.Join(cfg.Dir, "containerd.log"), err), d.releaseState())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startLocked starts cmd from a goroutine locked to its OS thread, which
// stays until the process exits and then sends cmd.Wait's result on done.
// The parent-death signal (Pdeathsig) is sent when the thread that forked
// the child exits, not the process: Go ends a thread when a goroutine locked
// to it returns without unlocking (podnet's and containerd's network
// namespace helpers do so), so the fork must come from a thread that lives
// exactly as long as the child.
func startLocked(cmd *exec.Cmd, done chan<- error) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-started
}

// Ping tells whether a containerd answers on the socket at address.
func Ping(ctx context.Context, address string) error { return ping(ctx, address) }

func ping(ctx context.Context, sock string) error {
	if _, err := os.Stat(sock); err != nil {
		return err
	}
	c, err := client.New(sock, client.WithTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Version(ctx)
	return err
}

// Stop sends SIGTERM to the daemon (by its PID), waits for it to exit, and
// sends SIGKILL if it has not within 10 seconds or when ctx ends. Shims of
// containers still running survive it: remove containers first. The state
// tmpfs is unmounted when nothing is left in it (no task, nothing mounted
// under it); else it stays for the next daemon, as /run would.
func (d *Daemon) Stop(ctx context.Context) error {
	defer d.closeLog()
	defer removePIDFile(filepath.Dir(d.Address), d.PID)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("containerd: stop daemon %d: %w", d.PID, err)
	}
	select {
	case <-d.done:
		return d.releaseState()
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
	}
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("containerd: kill daemon %d: %w", d.PID, err)
	}
	<-d.done
	return d.releaseState()
}

func (d *Daemon) releaseState() error { return releaseState(d.StateDir) }

// removePIDFile removes dir's PID file if it still names pid.
func removePIDFile(dir string, pid int) {
	if recorded, err := readPID(dir); err == nil && recorded == pid {
		// The file only helps StopLeftover, which checks what it names before acting on it.
		_ = os.Remove(PIDFile(dir))
	}
}

func readPID(dir string) (int, error) {
	b, err := os.ReadFile(PIDFile(dir))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("containerd: %s holds no PID", PIDFile(dir))
	}
	return pid, nil
}

// DaemonPID returns the PID of a containerd running with the configuration
// StartDaemon wrote under dir, or 0 if none runs. It trusts the PID file
// only if that process's command line is such a daemon's, and otherwise
// looks for one in /proc (a daemon of an older logplane left no PID file).
func DaemonPID(dir string) (int, error) {
	conf := filepath.Join(dir, "config.toml")
	isDaemon := func(pid int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			return false
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		return len(args) == 3 && filepath.Base(args[0]) == "containerd" && args[1] == "--config" && args[2] == conf
	}
	if pid, err := readPID(dir); err == nil && isDaemon(pid) {
		return pid, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("containerd: %w", err)
	}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && isDaemon(pid) {
			return pid, nil
		}
	}
	return 0, nil
}

// StopLeftover stops a containerd running under dir that no Daemon of this
// process owns: one that an earlier process started and that did not die
// with it (a logplane from before daemons did, or a daemon that ignored the
// signal). It sends SIGTERM by PID (see DaemonPID), waits up to 10 seconds,
// then sends SIGKILL, and returns the PID it stopped (0 if none ran). The
// shims and their containers survive, as with Stop; the state tmpfs is
// released as Stop does. Call it only when no other process uses that daemon.
func StopLeftover(ctx context.Context, dir string) (int, error) {
	pid, err := DaemonPID(dir)
	if err != nil || pid == 0 {
		return 0, err
	}
	gone := func() bool {
		// Not our child: its new parent reaps it. A zombie still counts as gone.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		return len(f) > 0 && f[0] == "Z"
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return pid, fmt.Errorf("containerd: stop daemon %d: %w", pid, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !gone() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		if gone() {
			removePIDFile(dir, pid)
			return pid, releaseState(StateDir(dir))
		}
	}
	return pid, fmt.Errorf("containerd: daemon %d under %s did not exit after SIGKILL", pid, dir)
}

// releaseState unmounts the state tmpfs at dir if it is a mount point with
// no task and no mount left in it.
func releaseState(stateDir string) error {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("containerd: mountinfo: %w", err)
	}
	mounted := false
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) <= 4:
		case f[4] == stateDir:
			mounted = true
		case strings.HasPrefix(f[4], stateDir+"/"):
			return nil // a pinned network namespace of a pod still there
		}
	}
	if !mounted {
		return nil // on disk, or inside a tmpfs that is not ours
	}
	tasks, err := filepath.Glob(filepath.Join(stateDir, "io.containerd.runtime.v2.task", "*", "*"))
	if err != nil || len(tasks) > 0 {
		return nil // tasks of running shims: the next daemon needs them
	}
	// Detached: a shim that has just removed its task may not have exited yet, and keeps the
	// tmpfs busy for a moment; the memory goes when it does.
	if err := unix.Unmount(stateDir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("containerd: unmount %s: %w", stateDir, err)
	}
	return nil
}

// mountState makes dir a tmpfs unless it is one or holds something.
func mountState(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("containerd: state dir: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("containerd: state dir: %w", err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("containerd: state dir: %w", err)
	}
	if len(ents) > 0 {
		return nil // an earlier daemon's state on disk: keep using it
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0711"); err != nil {
		return fmt.Errorf("containerd: mount a tmpfs on the state dir %s: %w", dir, err)
	}
	return nil
}

func (d *Daemon) closeLog() {
	if d.log != nil {
		d.log.Close() // a log file close error has no one to go to; the daemon is gone
		d.log = nil
	}
}
