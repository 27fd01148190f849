package dataplanetest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU is the CPU time spent so far on the Env's pods, by who spent it. Take
// it before and after a step and subtract: containers must still run at the
// second reading (an exited shim's time is lost).
type CPU struct {
	// Self is this process: the runtime's client side (and, in node agent
	// tests, the agent, API server and log).
	Self time.Duration
	// Execs are this process's exited children: the CNI plugins.
	Execs time.Duration
	// Containerd is the daemon with its exited children (the shims' start
	// commands).
	Containerd time.Duration
	// Shims are the running shims of the daemon with their exited children
	// (runc create, runc start).
	Shims time.Duration
	// Init are the containers' first processes (runc's init before it
	// executes the container's command).
	Init time.Duration
}

// Total is the sum of all parts.
func (c CPU) Total() time.Duration { return c.Self + c.Execs + c.Containerd + c.Shims + c.Init }

// Sub returns c - o, part by part.
func (c CPU) Sub(o CPU) CPU {
	return CPU{c.Self - o.Self, c.Execs - o.Execs, c.Containerd - o.Containerd, c.Shims - o.Shims, c.Init - o.Init}
}

// Add returns c + o, part by part.
func (c CPU) Add(o CPU) CPU {
	return CPU{c.Self + o.Self, c.Execs + o.Execs, c.Containerd + o.Containerd, c.Shims + o.Shims, c.Init + o.Init}
}

// CPU reads the CPU time of this process, its children, the Env's
// containerd and its shims and containers from /proc (clock-tick resolution
// for other processes: measure many pods).
func (e *Env) CPU() CPU {
	var ru, ruc syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)      // cannot fail for RUSAGE_SELF
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ruc) // nor for RUSAGE_CHILDREN
	c := CPU{
		Self:  time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		Execs: time.Duration(ruc.Utime.Nano() + ruc.Stime.Nano()),
	}
	self, kids := procStat(e.Daemon.PID)
	c.Containerd = self + kids
	procs, _ := filepath.Glob("/proc/[0-9]*") // a constant pattern: no error
	shims := map[int]bool{}
	ppids := map[int]int{}
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		st, err := os.ReadFile(filepath.Join(p, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		f := statFields(st)
		if len(f) < 2 {
			continue
		}
		ppids[pid], _ = strconv.Atoi(f[1])
		cmd, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte("containerd-shim")) {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		for i := range len(args) - 1 {
			if args[i] == "-address" && args[i+1] == e.Daemon.Address {
				shims[pid] = true
				self, kids := procStat(pid)
				c.Shims += self + kids
			}
		}
	}
	for pid, ppid := range ppids {
		if shims[ppid] {
			self, _ := procStat(pid)
			c.Init += self
		}
	}
	return c
}

func statFields(st []byte) []string {
	i := bytes.LastIndexByte(st, ')')
	if i < 0 || i+2 > len(st) {
		return nil
	}
	return strings.Fields(string(st[i+2:]))
}

// procStat returns a process's own CPU time and that of its waited-for
// children.
func procStat(pid int) (self, kids time.Duration) {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0 // gone
	}
	f := statFields(st)
	if len(f) < 15 {
		return 0, 0
	}
	n := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)      // the kernel writes numbers
		return time.Duration(v) * time.Second / 100 // USER_HZ
	}
	return n(11) + n(12), n(13) + n(14)
}
