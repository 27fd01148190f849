package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/logplane/logplane/disktest"
)

// childArgsEnv carries the arguments of `logplane` to a re-executed test binary (see
// TestLogplaneChild): the power-loss test runs the real command tree in a process it can kill.
const childArgsEnv = "LOGPLANE_CHILD_ARGS"

// TestLogplaneChild runs `logplane <args>` when the power-loss test re-executes this binary.
func TestLogplaneChild(t *testing.T) {
	args := os.Getenv(childArgsEnv)
	if args == "" {
		t.Skip("only run as the child of the power-loss test")
	}
	root := rootCommand()
	root.SetArgs(strings.Split(args, "\x1f"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "logplane:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestPowerLossKeepsAcknowledgedWrites runs power losses in a row with group commit
// (LOGPLANE_POWERLOSS_ROUNDS, 2 by default; ops/powerloss.sh runs 20), then one with --durability
// lazy. A power loss: `logplane up` on ext4 over a loop device; 16 clients create ConfigMaps
// through the API; the process is killed with SIGKILL while they write; the loop device is copied
// as the device holds it (O_DIRECT, past the page cache: what a power loss leaves). The next round
// mounts that copy, runs `logplane log check` and `logplane up` on it, checks that the TLS files
// and every create acknowledged in any earlier round are there, and writes on; a last restart
// checks the last copy.
//
// Why this emulates power loss: after kill -9 the kernel still holds what the process wrote
// without fsync in its page cache, and writes it back about 30 s later; a test that restarts on
// the same filesystem, or one that syncs or unmounts it, sees those writes, so lazy fsync
// "survives". The device copy taken right after the kill holds only what the filesystem had
// sent to the device: what fsync forced out, and the journal's own commits. Not emulated: a
// disk whose volatile cache loses or reorders writes it had acknowledged without a flush
// (dm-log-writes replay would, and this kernel has no device-mapper), and writeback racing the
// copy (the copy takes well under a second, writeback waits 30 s).
//
// With lazy fsync the copy must miss acknowledged creates, or this test could not tell the
// difference.
func TestPowerLossKeepsAcknowledgedWrites(t *testing.T) {
	if os.Getenv(childArgsEnv) != "" {
		t.Skip("this is a child")
	}
	disktest.RequireRoot(t, "losetup", "mkfs.ext4")
	rounds := 2
	if s := os.Getenv("LOGPLANE_POWERLOSS_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("LOGPLANE_POWERLOSS_ROUNDS=%q", s)
		}
		rounds = n
	}
	images := t.TempDir()
	acked := map[string]bool{} // every create acknowledged in any round
	img := ""                  // the copy the last power loss left
	for i := range rounds {
		next := filepath.Join(images, fmt.Sprintf("round-%d.img", i))
		ok := t.Run(fmt.Sprintf("group-commit-%d", i), func(t *testing.T) {
			before := len(acked)
			missing := powerLoss(t, img, next, "group-commit", acked)
			t.Logf("group commit, power loss %d: %d of %d acknowledged creates before it missing; %d more acknowledged before this one",
				i+1, len(missing), before, len(acked)-before)
			if len(missing) > 0 {
				t.Errorf("group commit lost %d acknowledged creates, e.g. %v", len(missing), missing[:min(5, len(missing))])
			}
		})
		if img != "" {
			os.Remove(img) // its mount is gone with the subtest; a leftover is removed with images
		}
		img = next
		if !ok {
			return
		}
	}
	t.Run("group-commit-restart", func(t *testing.T) {
		missing := powerLoss(t, img, "", "group-commit", acked)
		t.Logf("group commit after %d power losses in a row: %d acknowledged creates, %d missing", rounds, len(acked), len(missing))
		if len(missing) > 0 {
			t.Errorf("group commit lost %d acknowledged creates, e.g. %v", len(missing), missing[:min(5, len(missing))])
		}
	})
	if os.Getenv("LOGPLANE_POWERLOSS_SKIP_LAZY") == "" {
		t.Run("lazy", func(t *testing.T) {
			lazyAcked := map[string]bool{}
			lazyImg := filepath.Join(t.TempDir(), "lazy.img")
			powerLoss(t, "", lazyImg, "lazy", lazyAcked)
			missing := powerLoss(t, lazyImg, "", "lazy", lazyAcked)
			t.Logf("lazy: %d acknowledged creates, %d lost", len(lazyAcked), len(missing))
			if len(missing) == 0 {
				t.Errorf("lazy fsync lost none of %d acknowledged creates: the test cannot tell a durable log from one that is not", len(lazyAcked))
			}
		})
	}
}

// powerLoss runs `logplane up` on ext4 over a loop device (a new one if from is empty, else a
// mount of the image from), checks what the previous power loss left (`logplane log check`, the
// TLS files, the creates in acked) and returns the creates of acked that are missing. If to is
// set, it then has 16 clients create ConfigMaps, adding the acknowledged ones to acked, kills
// the process with SIGKILL while they write, and copies the device to to.
func powerLoss(t *testing.T, from, to, durability string, acked map[string]bool) (missing []string) {
	var disk *disktest.Loop
	if from == "" {
		disk = disktest.Ext4(t, 256<<20)
	} else {
		disk = disktest.Mount(t, from)
	}
	dir := filepath.Join(disk.Dir, "logplane")
	if from != "" {
		for _, f := range []string{"kubeconfig", "pki/ca.crt", "pki/ca.key", "pki/server.crt", "pki/server.key", "pki/admin.crt", "pki/admin.key"} {
			if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
				t.Errorf("after the power loss %s is %v (%v)", f, fi, err)
			}
		}
		check := exec.Command(os.Args[0], "-test.run=^TestLogplaneChild$", "-test.count=1")
		check.Env = append(os.Environ(), childArgsEnv+"="+strings.Join([]string{"log", "check", "--data-dir", dir}, "\x1f"))
		out, err := check.CombinedOutput()
		t.Logf("log check after the power loss:\n%s", lastLines(string(out), 6))
		if err != nil && durability != "lazy" {
			t.Errorf("log check after the power loss: %v", err)
		}
	}
	api := freeAddr(t)
	up := startChild(t, "up", "--data-dir", dir, "--durability", durability, "--listen", api,
		"--nats-listen", "", "--runtime", "sim", "--nodes", "1", "--node-name", "pl-node", "--stream-listen", "127.0.0.1:0")
	// A kubeconfig from before names another port: a fresh one is written once it serves.
	cs := waitAPIAt(t, filepath.Join(dir, "kubeconfig"), api, up)
	if len(acked) > 0 {
		list, err := cs.CoreV1().ConfigMaps("default").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, c := range list.Items {
			have[c.Name] = true
		}
		for n := range acked {
			if !have[n] {
				missing = append(missing, n)
			}
		}
	}
	if to == "" {
		stopChild(t, up)
		return missing
	}

	// 16 clients create until the kill; names carry the round so they never repeat.
	round := fmt.Sprintf("r%d", len(acked))
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("%s-w%d-%d", round, w, i)
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": strings.Repeat("x", 512)}}
				if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err == nil {
					mu.Lock()
					got = append(got, name)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(3 * time.Second) // the clients write; the kill lands in the middle of their writes
	if err := up.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	disk.CopyDeviceTo(t, to) // at once: nothing written back after the kill gets in
	_ = up.Wait()            // killed
	cancel()
	wg.Wait()
	if len(got) < 100 {
		t.Fatalf("only %d creates acknowledged before the kill", len(got))
	}
	for _, n := range got {
		acked[n] = true
	}
	return missing
}

// startChild runs `logplane <args>` in a re-executed test binary; it is killed when the test ends.
func startChild(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLogplaneChild$", "-test.count=1", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\x1f"))
	logf, err := os.Create(filepath.Join(t.TempDir(), "child.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGKILL) // it may have exited already
			_ = cmd.Wait()
		}
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("child log:\n%s", lastLines(string(b), 30))
			}
		}
	})
	return cmd
}

func stopChild(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Error("logplane did not stop within 30 s of SIGTERM")
	}
}

// waitAPIAt waits until kubeconfig names addr (any address if empty) and the API answers.
func waitAPIAt(t *testing.T, kubeconfig, addr string, cmd *exec.Cmd) *kubernetes.Clientset {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if cmd.ProcessState != nil {
			t.Fatalf("logplane exited: %v", cmd.ProcessState)
		}
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err == nil && (addr == "" || strings.HasSuffix(rc.Host, addr)) {
			rc.QPS, rc.Burst, rc.Timeout = -1, 0, 10*time.Second
			cs, err := kubernetes.NewForConfig(rc)
			if err == nil {
				if _, err = cs.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err == nil {
					return cs
				}
			}
			last = err
		} else if err != nil {
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the API did not answer within 90 s: %v", last)
	return nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
