package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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

// StartDaemon starts a containerd of our own with everything under cfg.Dir
// (the CRI plugin disabled; its state on a tmpfs, see StateDir) and waits
// until it answers. Stop it with Stop.
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
	// Not CommandContext: the daemon outlives the start request.
	cmd := exec.Command(bin, "--config", confPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.closeLog()
		return nil, fmt.Errorf("containerd: start daemon: %w", err)
	}
	d.cmd, d.PID = cmd, cmd.Process.Pid
	go func() { d.done <- cmd.Wait() }()

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

// Ping tells whether a containerd answers on the socket at address: a
// daemon that an earlier process started under the same directory and left
// running (kill -9) is to be used again, not started twice.
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

// releaseState unmounts the state tmpfs if it is a mount point with no task
// and no mount left in it.
func (d *Daemon) releaseState() error {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("containerd: mountinfo: %w", err)
	}
	mounted := false
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) <= 4:
		case f[4] == d.StateDir:
			mounted = true
		case strings.HasPrefix(f[4], d.StateDir+"/"):
			return nil // a pinned network namespace of a pod still there
		}
	}
	if !mounted {
		return nil // on disk, or inside a tmpfs that is not ours
	}
	tasks, err := filepath.Glob(filepath.Join(d.StateDir, "io.containerd.runtime.v2.task", "*", "*"))
	if err != nil || len(tasks) > 0 {
		return nil // tasks of running shims: the next daemon needs them
	}
	// Detached: a shim that has just removed its task may not have exited yet, and keeps the
	// tmpfs busy for a moment; the memory goes when it does.
	if err := unix.Unmount(d.StateDir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("containerd: unmount %s: %w", d.StateDir, err)
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
