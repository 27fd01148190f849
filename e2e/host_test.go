package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procInfo is a process of the host as /proc shows it.
type procInfo struct {
	pid, ppid int
	args      []string
	netns     string // the link of /proc/PID/ns/net, e.g. "net:[4026532281]"
}

// processes lists the host's processes, zombies left out.
func processes() []procInfo {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])                                          // the kernel writes a number
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")) // empty for kernel threads
		netns, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")) // gone meanwhile: empty
		out = append(out, procInfo{pid: pid, ppid: ppid, netns: netns,
			args: strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")})
	}
	return out
}

// alive tells whether pid runs (a zombie does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// containerdPIDs are the containerd daemons running with the configuration under the machine's
// data directory (the one `--containerd own` starts).
func (m *machine) containerdPIDs() []int {
	conf := filepath.Join(m.dir, "containerd", "config.toml")
	var pids []int
	for _, p := range processes() {
		if len(p.args) == 3 && filepath.Base(p.args[0]) == "containerd" && p.args[1] == "--config" && p.args[2] == conf {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

// shims are the containerd shims of the machine's containerd, by PID, with the PIDs of their
// children (the containers' first processes).
func (m *machine) shims() map[int][]int {
	all := processes()
	shims := map[int][]int{}
	for _, p := range all {
		if strings.HasPrefix(filepath.Base(p.args[0]), "containerd-shim") && strings.Contains(strings.Join(p.args, " "), m.dir+"/") {
			shims[p.pid] = nil
		}
	}
	for _, p := range all {
		if _, ok := shims[p.ppid]; ok {
			shims[p.ppid] = append(shims[p.ppid], p.pid)
		}
	}
	return shims
}

// waitExit waits until the process pid (not a child of the test) is gone.
func waitExit(t *testing.T, pid int, timeout time.Duration, what string) {
	t.Helper()
	eventually(t, timeout, func() error {
		if alive(pid) {
			return fmt.Errorf("%s (pid %d) still runs", what, pid)
		}
		return nil
	})
}

// waitExited waits until the logplane process exits by itself and returns its log.
func (p *proc) waitExited(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("logplane %s still runs after %s, want it to exit; log:\n%s", p.name, timeout, tail(p.log, 30))
	}
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
