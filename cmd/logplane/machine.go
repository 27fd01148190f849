package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// machineLock is held by the one process that runs a data directory's node agent on this
// machine (`logplane up` or `logplane agent` on containerd) or takes it down (`logplane
// down`): an exclusive flock on <data-dir>/agent/lock, which the kernel releases when that
// process dies, however it dies. The file holds the holder's PID and command line.
type machineLock struct{ f *os.File }

// machineBusyError says which process holds a data directory's machine lock.
type machineBusyError struct {
	dir     string
	pid     int    // 0 if the holder has not written it yet
	command string // its command line
}

func (e *machineBusyError) Error() string {
	who := "another logplane process"
	if e.command != "" {
		who = "`" + e.command + "`"
	}
	if e.pid != 0 {
		who += " (pid " + strconv.Itoa(e.pid) + ")"
	}
	return fmt.Sprintf("%s is running the node agent of %s", who, e.dir)
}

func lockPath(dataDir string) string { return filepath.Join(dataDir, "agent", "lock") }

// lockMachine takes the data directory's machine lock, or fails with a *machineBusyError.
func lockMachine(dataDir string) (*machineLock, error) {
	path := lockPath(dataDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("machine lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("machine lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			busy := &machineBusyError{dir: dataDir}
			if b, err := io.ReadAll(f); err == nil { // what the holder wrote; it may not have yet
				pid, command, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
				busy.pid, _ = strconv.Atoi(pid) // 0 if not written yet
				busy.command = command
			}
			return nil, busy
		}
		return nil, fmt.Errorf("machine lock %s: %w", path, err)
	}
	holder := fmt.Sprintf("%d\n%s\n", os.Getpid(), strings.Join(os.Args, " "))
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(holder), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("machine lock %s: %w", path, err)
	}
	return &machineLock{f: f}, nil
}

// release gives the lock up (closing the file releases the flock).
func (l *machineLock) release() {
	l.f.Close() // the lock goes with the descriptor; nothing was written since it was taken
}

// nodeRecord is what a data directory's node agent uses on this machine, written at every
// start to <data-dir>/agent/node.json, for `logplane down` to know what to remove.
type nodeRecord struct {
	// Containerd is "own" (a daemon of its own under <data-dir>/containerd) or the socket of the
	// daemon it used (the system's).
	Containerd string `json:"containerd"`
	Namespace  string `json:"namespace"`
	// Bridges is every pod bridge an agent of this directory used, newest last.
	Bridges    []string `json:"bridges"`
	PodCIDR    string   `json:"podCIDR"`
	CNIBinDirs []string `json:"cniBinDirs"`
	// NetNSDir, RuncRoot and FIFODir are where the pinned network namespaces, runc's state and
	// the containers' stdio FIFOs are (the latter two empty: the runtime's defaults).
	NetNSDir string `json:"netnsDir"`
	RuncRoot string `json:"runcRoot,omitempty"`
	FIFODir  string `json:"fifoDir,omitempty"`
	// NetworkPolicy: the agent enforced NetworkPolicy (--network-policy), in nftables.
	NetworkPolicy bool `json:"networkPolicy,omitempty"`
	// ServiceProxy: the agent ran the service proxy (its nftables table, device and routes).
	ServiceProxy bool `json:"serviceProxy,omitempty"`
}

func nodeRecordPath(dataDir string) string { return filepath.Join(dataDir, "agent", "node.json") }

// readNodeRecord reads the data directory's node record; nil if no agent on containerd ever
// ran there.
func readNodeRecord(dataDir string) (*nodeRecord, error) {
	b, err := os.ReadFile(nodeRecordPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node record: %w", err)
	}
	var r nodeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("node record %s: %w", nodeRecordPath(dataDir), err)
	}
	return &r, nil
}

// writeNodeRecord records r, keeping the bridges earlier agents of the directory recorded.
func writeNodeRecord(dataDir string, r nodeRecord) error {
	if old, err := readNodeRecord(dataDir); err == nil && old != nil {
		bridges := slices.DeleteFunc(slices.Clone(old.Bridges), func(b string) bool { return slices.Contains(r.Bridges, b) })
		r.Bridges = append(bridges, r.Bridges...)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("node record: %w", err)
	}
	path := nodeRecordPath(dataDir)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("node record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("node record: %w", err)
	}
	return nil
}
