package localvolume_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logplane/logplane/dataplane/localvolume"
)

// crashEnv tells TestCrashHelper, run as a child process, where to stop:
// "<backend> <dir> <create|delete> <step>".
const crashEnv = "LOCALVOLUME_CRASH_AT"

// TestCrashHelper is not a test: run by TestKilled in a child process, it
// creates (and deletes) a volume and stops at a step, where it is killed.
func TestCrashHelper(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("run by TestKilled")
	}
	var backend, dir, op, at string
	if _, err := fmt.Sscan(spec, &backend, &dir, &op, &at); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background() // killed, not cancelled
	m, err := localvolume.New(ctx, localvolume.Config{Dir: dir, Backend: localvolume.Backend(backend)})
	if err != nil {
		t.Fatal(err)
	}
	stop := func(step string) {
		if step == at {
			fmt.Println("AT", step)
			select {} // until killed
		}
	}
	if op == "create" {
		localvolume.SetStepHook(stop)
	}
	if _, err := m.Create(ctx, "pvc-crash", 16*mib); err != nil {
		t.Fatal(err)
	}
	localvolume.SetStepHook(stop)
	if err := m.Delete(ctx, "pvc-crash"); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("step %s of %s never reached", at, op)
}

// TestKilled kills a process with SIGKILL at each step of creating and
// deleting a volume; the next start leaves no half-made volume, no
// temporary, no mount or loop device that belongs to no volume, and a
// volume exists afterwards exactly when its creation got past the rename
// (or its deletion did not), usable and mounted.
func TestKilled(t *testing.T) {
	for _, backend := range []localvolume.Backend{localvolume.Loop, localvolume.Quota, localvolume.Dir} {
		for _, tc := range []struct {
			op, step string
			exists   bool
		}{
			{"create", "tmp", false},
			{"create", "built", false},
			{"create", "renamed", true},
			{"delete", "detached", true},
			{"delete", "trashed", false},
		} {
			t.Run(fmt.Sprintf("%s/%s-%s", backend, tc.op, tc.step), func(t *testing.T) {
				if backend != localvolume.Dir {
					requireLoop(t)
				}
				base := baseDir(t)
				if backend == localvolume.Quota {
					base = quotaFS(t, base)
				}
				killAt(t, backend, base, tc.op, tc.step)
				leftovers := len(dirEntries(t, filepath.Join(base, "tmp"))) + len(dirEntries(t, filepath.Join(base, "trash")))
				if want := tc.step == "tmp" || tc.step == "built" || tc.step == "trashed"; want != (leftovers > 0) {
					t.Fatalf("the killed process left %d temporaries, want some: %v", leftovers, want)
				}

				m := newManager(t, localvolume.Config{Dir: base, Backend: backend})
				for _, d := range []string{"tmp", "trash"} {
					if got := dirEntries(t, filepath.Join(base, d)); len(got) != 0 {
						t.Errorf("%s holds %v after a start", d, got)
					}
				}
				_, err := m.Get("pvc-crash")
				if tc.exists != (err == nil) {
					t.Fatalf("Get after a start: %v, want the volume: %v", err, tc.exists)
				}
				if !errors.Is(err, localvolume.ErrNotFound) && err != nil {
					t.Fatal(err)
				}
				wantMounts := 0
				if tc.exists {
					p, err := m.Path(t.Context(), "pvc-crash")
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(p, "f"), []byte("x"), 0o644); err != nil {
						t.Errorf("writing into the volume: %v", err)
					}
					if backend == localvolume.Loop {
						wantMounts = 1
					}
				} else if got := dirEntries(t, filepath.Join(base, "volumes")); len(got) != 0 {
					t.Errorf("volumes holds %v", got)
				}
				if got := mountsUnder(t, base); len(got) != wantMounts {
					t.Errorf("mounts %v, want %d", got, wantMounts)
				}
				if wantMounts == 0 {
					waitNoLoopDevices(t, base)
				} else if devs := loopDevicesUnder(t, base); len(devs) != 1 {
					t.Errorf("loop devices %v, want one", devs)
				}
				if tc.exists {
					if err := m.Delete(t.Context(), "pvc-crash"); err != nil {
						t.Fatal(err)
					}
					waitNoLoopDevices(t, base)
				}
			})
		}
	}
}

// killAt runs TestCrashHelper until it reports the step, then kills it.
func killAt(t *testing.T, backend localvolume.Backend, dir, op, step string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s %s", crashEnv, backend, dir, op, step))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reached := false
	sc := bufio.NewScanner(out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "AT "+step {
			reached = true
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Errorf("kill: %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Errorf("the helper exited on its own")
	}
	if !reached {
		t.Fatalf("the helper did not reach %s %s: %s", op, step, strings.Join(lines, "\n"))
	}
}
