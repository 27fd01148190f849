package containerd_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

func removeAll(b *testing.B, rt *containerd.Runtime) {
	ctx := context.WithoutCancel(b.Context())
	sbs, err := rt.ListSandboxes(ctx)
	if err != nil {
		b.Fatal(err)
	}
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, sb := range sbs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
}

func reportCPU(b *testing.B, prefix string, c dataplanetest.CPU, pods int) {
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(pods) }
	b.ReportMetric(per(c.Total()), prefix+"cpu-ms/pod")
	for _, m := range []struct {
		name string
		d    time.Duration
	}{{"self", c.Self}, {"cni", c.Execs}, {"containerd", c.Containerd}, {"shim+runc", c.Shims}, {"init", c.Init}} {
		if m.d > 0 {
			b.ReportMetric(per(m.d), prefix+m.name+"-ms/pod")
		}
	}
}

// BenchmarkStartCost measures the CPU time of each step of a pod start on a
// real containerd, by who spends it (dataplanetest.CPU): sandbox (network
// namespace, CNI), create (snapshot, spec, container record), start (shim,
// runc create and start, runc's init), for 20 pods one after the other;
// then a burst of 50 pods started at once, with its p50/p99 and CPU per pod.
func BenchmarkStartCost(b *testing.B) {
	e := dataplanetest.New(b)
	rt := e.Runtime
	ctx := b.Context()
	img, err := rt.EnsureImage(ctx, e.Busybox, runtimeapi.PullIfNotPresent)
	if err != nil {
		b.Fatal(err)
	}
	image := img.Ref
	b.Run("steps", func(b *testing.B) {
		const n = 20
		for b.Loop() {
			c0 := e.CPU()
			var sbs []runtimeapi.Sandbox
			for i := range n {
				sb, err := rt.CreateSandbox(ctx, runtimeapi.SandboxConfig{PodUID: fmt.Sprintf("cost-%d-%d", time.Now().UnixNano(), i), PodName: fmt.Sprintf("cost-%d", i), PodNamespace: "default"})
				if err != nil {
					b.Fatal(err)
				}
				sbs = append(sbs, sb)
			}
			c1 := e.CPU()
			var ids []string
			for i, sb := range sbs {
				id, err := rt.CreateContainer(ctx, sb.ID, runtimeapi.ContainerConfig{Name: "c", Image: image, Command: []string{"sleep", "3600"}, Attempt: i})
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, id)
			}
			c2 := e.CPU()
			for _, id := range ids {
				if err := rt.StartContainer(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
			c3 := e.CPU()
			b.StopTimer()
			removeAll(b, rt)
			b.StartTimer()
			reportCPU(b, "sandbox-", c1.Sub(c0), n)
			reportCPU(b, "create-", c2.Sub(c1), n)
			reportCPU(b, "start-", c3.Sub(c2), n)
			reportCPU(b, "", c3.Sub(c0), n)
		}
	})
	b.Run("burst", func(b *testing.B) {
		const n = 50
		var all []time.Duration
		var cpu dataplanetest.CPU
		var idleFrac float64
		for b.Loop() {
			c0 := e.CPU()
			i0, t0s := idle()
			t0 := time.Now()
			var mu sync.Mutex
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sb, err := rt.CreateSandbox(ctx, runtimeapi.SandboxConfig{PodUID: fmt.Sprintf("burst-%d-%d", t0.UnixNano(), i), PodName: fmt.Sprintf("burst-%d", i), PodNamespace: "default"})
					if err != nil {
						b.Error(err)
						return
					}
					id, err := rt.CreateContainer(ctx, sb.ID, runtimeapi.ContainerConfig{Name: "c", Image: image, Command: []string{"sleep", "3600"}})
					if err != nil {
						b.Error(err)
						return
					}
					if err := rt.StartContainer(ctx, id); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					all = append(all, time.Since(t0))
					mu.Unlock()
				}()
			}
			wg.Wait()
			if b.Failed() {
				b.FailNow()
			}
			cpu = cpu.Add(e.CPU().Sub(c0))
			i1, t1s := idle()
			idleFrac += float64(i1-i0) / float64(t1s-t0s)
			b.StopTimer()
			removeAll(b, rt)
			b.StartTimer()
		}
		slices.Sort(all)
		b.ReportMetric(float64(all[len(all)/2].Milliseconds()), "p50-ms")
		b.ReportMetric(float64(all[(len(all)*99+99)/100-1].Milliseconds()), "p99-ms")
		reportCPU(b, "", cpu, len(all))
		b.ReportMetric(idleFrac/float64(b.N), "machine-idle")
	})
}

func idle() (idle, total int64) {
	v, _ := os.ReadFile("/proc/stat")
	f := strings.Fields(strings.SplitN(string(v), "\n", 2)[0])[1:]
	for i, x := range f {
		n, _ := strconv.ParseInt(x, 10, 64)
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total
}
