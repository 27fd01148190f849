package nodeagent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// MachineCapacity measures this machine: its CPUs, memory (MemTotal), the
// size of the file system holding dir (ephemeral-storage; skipped when dir is
// empty), and the kubelet's default of 110 pods.
func MachineCapacity(dir string) (corev1.ResourceList, error) {
	mem, err := meminfo("MemTotal")
	if err != nil {
		return nil, err
	}
	c := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(DefaultMaxPods, resource.DecimalSI),
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("nodeagent: %w", err)
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(dir, &fs); err != nil {
			return nil, fmt.Errorf("nodeagent: statfs %s: %w", dir, err)
		}
		c[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(fs.Blocks)*fs.Bsize, resource.BinarySI)
	}
	return c, nil
}

// meminfo reads one field of /proc/meminfo, in bytes.
func meminfo(field string) (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("nodeagent: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == field+":" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("nodeagent: /proc/meminfo %s: %w", field, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("nodeagent: /proc/meminfo has no %s", field)
}

// pressure is what the Node's pressure conditions report.
type pressure struct{ memory, disk, pid bool }

// Pressure thresholds, as the kubelet's default hard eviction thresholds.
const (
	memoryAvailableMin = 100 << 20 // memory.available < 100Mi
	diskAvailableRatio = 0.10      // nodefs.available < 10%
	pidAvailableRatio  = 0.05
)

// measurePressure looks at this machine's available memory, the free space
// of dir's file system and the number of processes.
func measurePressure(dir string) pressure {
	var p pressure
	if avail, err := meminfo("MemAvailable"); err == nil {
		p.memory = avail < memoryAvailableMin
	}
	if dir != "" {
		var fs unix.Statfs_t
		if err := unix.Statfs(dir, &fs); err == nil && fs.Blocks > 0 {
			p.disk = float64(fs.Bavail)/float64(fs.Blocks) < diskAvailableRatio
		}
	}
	maxb, err1 := os.ReadFile("/proc/sys/kernel/pid_max")
	loadavg, err2 := os.ReadFile("/proc/loadavg") // 4th field: running/total
	if err1 == nil && err2 == nil {
		maxPIDs, _ := strconv.ParseFloat(strings.TrimSpace(string(maxb)), 64) // 0 on garbage: no pressure
		if f := strings.Fields(string(loadavg)); len(f) >= 4 {
			if _, total, ok := strings.Cut(f[3], "/"); ok {
				n, _ := strconv.ParseFloat(total, 64) // 0 on garbage: no pressure
				p.pid = maxPIDs > 0 && (maxPIDs-n)/maxPIDs < pidAvailableRatio
			}
		}
	}
	return p
}

// nodeInfo describes this machine as the kubelet does.
func nodeInfo(runtimeVersion string) corev1.NodeSystemInfo {
	var uts unix.Utsname
	kernel := ""
	if err := unix.Uname(&uts); err == nil {
		kernel = unix.ByteSliceToString(uts.Release[:])
	}
	return corev1.NodeSystemInfo{
		MachineID:               readTrim("/etc/machine-id"),
		SystemUUID:              readTrim("/sys/class/dmi/id/product_uuid"),
		BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
		KernelVersion:           kernel,
		OSImage:                 osImage(),
		ContainerRuntimeVersion: runtimeVersion,
		KubeletVersion:          KubeletVersion,
		KubeProxyVersion:        "",
		OperatingSystem:         goruntime.GOOS,
		Architecture:            goruntime.GOARCH,
	}
}

// readTrim reads a small file, or "" if it cannot (not every machine has
// every identifier; the kubelet leaves them empty too).
func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func osImage() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}
