package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/netpolicy"
	"github.com/logplane/logplane/dataplane/podnet"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/dataplane/serviceproxy"
)

func downCommand() *cobra.Command {
	var dataDir string
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every container this machine's node agent started and remove what logplane made on the machine",
		Long: `Stop every container the node agent of --data-dir started and remove what logplane made on
this machine for it: the pods' containers (SIGTERM, then SIGKILL after --grace-period), their
IPs, host-port rules and pinned network namespaces, the containerd namespace, the containerd
that logplane ran for itself (--containerd own) with its shims and state tmpfs, the pod bridge
(and with it its route), host-local's IP allocations and CNI's cached results, the portmap
plugin's chains once empty, the service proxy's nftables table, device and routes, and every mount under the data directory. Afterwards the data
directory can be deleted (rm -rf).

It refuses while a logplane up or agent runs on the data directory: stop that first. The log
(the cluster's objects and history) is only files in the data directory: down leaves it, so
that logplane up on the same directory brings the cluster back and starts its pods anew.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return down(cmd.Context(), dataDir, grace, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "/var/lib/logplane", "the data directory of the logplane up or agent to take down")
	cmd.Flags().DurationVar(&grace, "grace-period", 10*time.Second, "how long the containers get between SIGTERM and SIGKILL")
	return cmd
}

// down takes a data directory's node down, as logplane down says.
func down(ctx context.Context, dataDir string, grace time.Duration, out io.Writer) error {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dataDir); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, "logplane down: "+format+"\n", args...) }

	// Holding the lock for the whole teardown also keeps an agent from starting in the middle.
	lock, err := lockMachine(dataDir)
	var busy *machineBusyError
	if errors.As(err, &busy) {
		stop := "stop it first (Ctrl-C where it runs, or its service manager)"
		if busy.pid != 0 {
			stop = fmt.Sprintf("stop it first (Ctrl-C where it runs, its service manager, or kill %d)", busy.pid)
		}
		return fmt.Errorf("%w: %s, then run logplane down again", busy, stop)
	}
	if err != nil {
		return err
	}
	defer lock.release()

	rec, err := readNodeRecord(dataDir)
	if err != nil {
		return err
	}
	ownDir := filepath.Join(dataDir, "containerd")
	_, statErr := os.Stat(filepath.Join(ownDir, "config.toml"))
	hasOwn := statErr == nil
	if rec == nil && hasOwn {
		// A node agent of a logplane that kept no record: its own containerd's pods can still be
		// found; its bridge cannot be known.
		state := containerd.StateDir(ownDir)
		rec = &nodeRecord{Containerd: "own", Namespace: containerd.DefaultNamespace, PodCIDR: podnet.DefaultSubnet,
			CNIBinDirs: []string{podnet.DefaultPluginDir}, NetNSDir: filepath.Join(state, "netns"),
			RuncRoot: filepath.Join(state, "runc"), FIFODir: filepath.Join(state, "fifo")}
		say("no record of the node agent's pod bridge in %s: if it made one, remove it with ip link del BRIDGE", dataDir)
	}
	var errs []error
	if rec != nil {
		errs = append(errs, removePods(ctx, dataDir, rec, hasOwn, grace, say))
	} else {
		say("no node agent on containerd ever ran on %s: no pods to stop", dataDir)
	}
	if hasOwn {
		// Whatever still runs from the own daemon's directory: shims whose containers could not
		// be removed, with their containers.
		if n, err := killTreesUnder(ownDir); err != nil {
			errs = append(errs, err)
		} else if n > 0 {
			say("killed %d leftover processes (shims and their containers)", n)
		}
	}
	if rec != nil {
		for _, bridge := range rec.Bridges {
			network, err := podnet.New(podnet.Config{StateDir: filepath.Join(dataDir, "agent", "net"), NetNSDir: rec.NetNSDir,
				PluginDirs: rec.CNIBinDirs, Bridge: bridge, Subnet: rec.PodCIDR})
			if err == nil {
				err = network.Teardown(ctx)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			say("removed the pod network on bridge %s", bridge)
		}
		if rec.NetworkPolicy {
			if err := netpolicy.Cleanup(ctx, netpolicy.Config{}); err != nil {
				errs = append(errs, err)
			} else {
				say("removed the NetworkPolicy rules (nftables table %s)", netpolicy.DefaultTable)
			}
		}
	}
	if rec != nil && rec.ServiceProxy {
		if err := serviceproxy.Cleanup(ctx, serviceproxy.Config{}); err != nil {
			errs = append(errs, err)
		} else {
			say("removed the service proxy's nftables table, device and routes")
		}
	}
	mounts, err := unmountUnder(dataDir)
	errs = append(errs, err)
	if len(mounts) > 0 {
		say("unmounted %s", strings.Join(mounts, ", "))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("taking %s down: %w", dataDir, err)
	}
	say("nothing of logplane's runs or is mounted from %s any more; it can be deleted (rm -rf %s)", dataDir, dataDir)
	return nil
}

// removePods stops and removes every pod of the data directory's node agent through its
// containerd (its own, started for the purpose, or the system's), then the containerd namespace.
func removePods(ctx context.Context, dataDir string, rec *nodeRecord, hasOwn bool, grace time.Duration, say func(string, ...any)) (err error) {
	addr := rec.Containerd
	var stopDaemon func() error
	if addr == "own" || hasOwn && addr == filepath.Join(dataDir, "containerd", "containerd.sock") {
		own := filepath.Join(dataDir, "containerd")
		if pid, err := containerd.StopLeftover(ctx, own); err != nil {
			return err
		} else if pid != 0 {
			say("stopped the containerd left running under %s (pid %d)", own, pid)
		}
		d, err := containerd.StartDaemon(ctx, containerd.DaemonConfig{Dir: own})
		if err != nil {
			return err
		}
		addr = d.Address
		stopDaemon = func() error { return d.Stop(context.WithoutCancel(ctx)) }
		defer func() {
			if stopDaemon != nil {
				err = errors.Join(err, stopDaemon())
			}
		}()
	} else if err := containerd.Ping(ctx, addr); err != nil {
		return fmt.Errorf("containerd at %s does not answer (%v): start it, then run logplane down again, so that the containers it runs for logplane can be stopped", addr, err)
	}
	agentDir := filepath.Join(dataDir, "agent")
	bridge := "" // podnet's default: CNI DEL removes a pod's interface whatever the bridge is
	if len(rec.Bridges) > 0 {
		bridge = rec.Bridges[len(rec.Bridges)-1]
	}
	network, err := podnet.New(podnet.Config{StateDir: filepath.Join(agentDir, "net"), NetNSDir: rec.NetNSDir,
		PluginDirs: rec.CNIBinDirs, Bridge: bridge, Subnet: rec.PodCIDR})
	if err != nil {
		return err
	}
	rt, err := containerd.New(ctx, containerd.Config{Address: addr, Namespace: rec.Namespace, DataDir: filepath.Join(agentDir, "runtime"),
		Network: network, RuncRoot: rec.RuncRoot, FIFODir: rec.FIFODir})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, rt.Close()) }()
	sbs, err := rt.ListSandboxes(ctx)
	if err != nil {
		return err
	}
	// Every container gets its SIGTERM at once, and the grace period runs for all together.
	g, gctx := errgroup.WithContext(ctx)
	stopped := 0
	for _, sb := range sbs {
		cs, err := rt.ListContainers(ctx, sb.PodUID)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.State != runtimeapi.StateRunning {
				continue
			}
			stopped++
			g.Go(func() error { return rt.StopContainer(gctx, c.ID, grace) })
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var errs []error
	for _, sb := range sbs {
		errs = append(errs, rt.RemoveSandbox(ctx, sb.ID))
	}
	errs = append(errs, rt.DeleteNamespace(ctx))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	say("stopped %d containers and removed %d pods and the containerd namespace %s", stopped, len(sbs), rec.Namespace)
	if stopDaemon != nil {
		stop := stopDaemon
		stopDaemon = nil
		if err := stop(); err != nil {
			return err
		}
		say("stopped logplane's containerd")
	}
	return nil
}

// killTreesUnder kills (SIGKILL) every process whose command line names a path under dir,
// with all its descendants, and waits for them to go. It returns how many it killed.
func killTreesUnder(dir string) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	children := map[int][]int{}
	var roots []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 1 {
				if ppid, err := strconv.Atoi(f[1]); err == nil {
					children[ppid] = append(children[ppid], pid)
				}
			}
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) {
			roots = append(roots, pid)
		}
	}
	var victims []int
	var add func(int)
	add = func(pid int) {
		if slices.Contains(victims, pid) {
			return
		}
		victims = append(victims, pid)
		for _, c := range children[pid] {
			add(c)
		}
	}
	for _, r := range roots {
		add(r)
	}
	var errs []error
	for _, pid := range victims {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range victims {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			errs = append(errs, fmt.Errorf("process %d still alive after SIGKILL", pid))
		}
	}
	return len(victims), errors.Join(errs...)
}

// alive tells whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// unmountUnder unmounts (detached) everything mounted under dir, deepest first, and returns
// what it unmounted.
func unmountUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") && !slices.Contains(mounts, f[4]) {
			mounts = append(mounts, f[4])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	var done []string
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			continue
		}
		done = append(done, m)
	}
	return done, errors.Join(errs...)
}
