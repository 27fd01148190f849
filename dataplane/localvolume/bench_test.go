package localvolume_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/logplane/logplane/dataplane/localvolume"
)

// benchBase is a base directory for a backend's benchmark, skipping the
// backends this machine lacks.
func benchBase(b *testing.B, backend localvolume.Backend) string {
	b.Helper()
	if backend != localvolume.Dir {
		requireLoop(b)
	}
	base := baseDir(b)
	if backend == localvolume.Quota {
		base = quotaFS(b, base)
	}
	return base
}

var benchBackends = []localvolume.Backend{localvolume.Quota, localvolume.Loop, localvolume.Dir}

// BenchmarkCreateDelete creates a 1 GiB volume (ready to mount: Path) and
// deletes it, one after the other: create-ms and delete-ms are the means.
//
//	go test -run '^$' -bench BenchmarkCreateDelete -benchtime 50x ./dataplane/localvolume/
func BenchmarkCreateDelete(b *testing.B) {
	for _, backend := range benchBackends {
		b.Run("backend="+string(backend), func(b *testing.B) {
			m := newManager(b, localvolume.Config{Dir: benchBase(b, backend), Backend: backend})
			ctx := b.Context()
			var create, del time.Duration
			for i := range b.N {
				name := fmt.Sprintf("pvc-%d", i)
				t0 := time.Now()
				if _, err := m.Create(ctx, name, 1<<30); err != nil {
					b.Fatal(err)
				}
				if _, err := m.Path(ctx, name); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := m.Delete(ctx, name); err != nil {
					b.Fatal(err)
				}
				create += t1.Sub(t0)
				del += time.Since(t1)
			}
			b.ReportMetric(float64(create.Microseconds())/1000/float64(b.N), "create-ms")
			b.ReportMetric(float64(del.Microseconds())/1000/float64(b.N), "delete-ms")
		})
	}
}

// BenchmarkVolumes holds n 1 GiB volumes at once (n=100; run it with
// -benchtime 1x) and reports what each costs: create p50/p99, the disk the
// base directory takes per volume (disk-KiB), the kernel memory per volume
// (kmem-KiB: Slab, KernelStack and PageTables from /proc/meminfo, noisy),
// a start of a new Manager with every volume mounted (restart-ms) and after
// a reboot (all unmounted: reattach-ms), a 1 GiB expansion (expand-ms,
// offline where CAP_SYS_RESOURCE is missing), and delete-ms.
func BenchmarkVolumes(b *testing.B) {
	const n = 100
	for _, backend := range benchBackends {
		b.Run("backend="+string(backend), func(b *testing.B) {
			base := benchBase(b, backend)
			cfg := localvolume.Config{Dir: base, Backend: backend}
			ctx := b.Context()
			for range b.N {
				m := newManager(b, cfg)
				kmem0 := kernelMemKiB(b)
				var creates []time.Duration
				for i := range n {
					t0 := time.Now()
					name := fmt.Sprintf("pvc-%d", i)
					if _, err := m.Create(ctx, name, 1<<30); err != nil {
						b.Fatal(err)
					}
					if _, err := m.Path(ctx, name); err != nil {
						b.Fatal(err)
					}
					creates = append(creates, time.Since(t0))
				}
				kmem := kernelMemKiB(b) - kmem0
				disk := diskKiB(b, base)
				m.Close()

				t0 := time.Now()
				m = newManager(b, cfg)
				restart := time.Since(t0)
				m.Close()
				for _, mp := range mountsUnder(b, base) {
					if strings.HasPrefix(mp, filepath.Join(base, "volumes")+"/") {
						if err := unix.Unmount(mp, 0); err != nil {
							b.Fatal(err)
						}
					}
				}
				t0 = time.Now()
				m = newManager(b, cfg)
				reattach := time.Since(t0)

				t0 = time.Now()
				for i := range 10 {
					if _, err := m.Expand(ctx, fmt.Sprintf("pvc-%d", i), 2<<30); err != nil {
						b.Fatal(err)
					}
				}
				expand := time.Since(t0) / 10

				t0 = time.Now()
				for i := range n {
					if err := m.Delete(ctx, fmt.Sprintf("pvc-%d", i)); err != nil {
						b.Fatal(err)
					}
				}
				del := time.Since(t0) / n
				m.Close()

				slices.Sort(creates)
				b.ReportMetric(ms(creates[n/2]), "create-p50-ms")
				b.ReportMetric(ms(creates[n*99/100]), "create-p99-ms")
				b.ReportMetric(float64(disk)/n, "disk-KiB/vol")
				b.ReportMetric(float64(kmem)/n, "kmem-KiB/vol")
				b.ReportMetric(ms(restart), "restart-ms")
				b.ReportMetric(ms(reattach)/n, "reattach-ms/vol")
				b.ReportMetric(ms(expand), "expand-ms")
				b.ReportMetric(ms(del), "delete-ms")
			}
		})
	}
}

// BenchmarkWrite writes into a volume: 256 MiB in 1 MiB writes then fsync
// (MB/s), and 2,000 files of 4 KiB then syncfs (files/s).
func BenchmarkWrite(b *testing.B) {
	for _, backend := range benchBackends {
		b.Run("backend="+string(backend), func(b *testing.B) {
			m := newManager(b, localvolume.Config{Dir: benchBase(b, backend), Backend: backend})
			ctx := b.Context()
			if _, err := m.Create(ctx, "pvc-w", 1<<30); err != nil {
				b.Fatal(err)
			}
			p, err := m.Path(ctx, "pvc-w")
			if err != nil {
				b.Fatal(err)
			}
			var seq, small time.Duration
			const files = 2000
			for i := range b.N {
				t0 := time.Now()
				if n, err := fill(filepath.Join(p, "seq"), 256<<20); err != nil {
					b.Fatalf("%d bytes: %v", n, err)
				}
				seq += time.Since(t0)
				dir := filepath.Join(p, fmt.Sprint("small", i))
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 4096)
				t0 = time.Now()
				for j := range files {
					if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(j)), buf, 0o644); err != nil {
						b.Fatal(err)
					}
				}
				if err := syncfs(dir); err != nil {
					b.Fatal(err)
				}
				small += time.Since(t0)
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(256*b.N)/seq.Seconds(), "MB/s")
			b.ReportMetric(float64(files*b.N)/small.Seconds(), "files/s")
		})
	}
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// diskKiB is what the files under dir take on disk (du -sk).
func diskKiB(b *testing.B, dir string) int64 {
	b.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		total += st.Blocks / 2
		if d.IsDir() && p != dir {
			if ok, _ := isMount(p); ok {
				return filepath.SkipDir // the volume's own filesystem: counted in its file
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}

func isMount(p string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false, err
	}
	if err := unix.Lstat(filepath.Dir(p), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}

// kernelMemKiB sums the kernel's own memory in /proc/meminfo.
func kernelMemKiB(b *testing.B) int64 {
	b.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && slices.Contains([]string{"Slab:", "KernelStack:", "PageTables:"}, fields[0]) {
			v, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += v
		}
	}
	return total
}
