package nodeagent_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/nodeagent"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/nodefeed"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/registry"
)

// BenchmarkPodStartup measures pod startup latency end to end on real containerd, CNI and the
// API server with a node agent: from the create request (client-go) to the first status with
// phase Running and Ready, as a watcher sees it, for 50 pods of busybox `sleep` whose image is
// present. one-at-a-time creates each pod once the previous one is Running; paced-5ps creates
// one every 200 ms whatever the others do (a steady load, as Kubernetes' density tests create
// pods); burst creates all 50 at once. Each iteration deletes its pods (grace 0) and waits until
// they are gone. cpu-ms/pod is the CPU time spent from the first create to the last Running, by
// this process (API server, log, agent), containerd, shims, runc and the CNI plugins, per pod: on
// 2 cores a burst of 50 takes at least 25 times that. machine-cpu-ms/pod is the whole machine's
// busy time (/proc/stat) over the same span, per pod, and machine-idle the idle share of it: it
// also counts what the per-process figures miss (the kernel's own threads, processes they do not
// see) and anything else the machine runs, so it is meaningful on an otherwise idle machine.
func BenchmarkPodStartup(b *testing.B) {
	r := newRealCluster(b)
	r.startAgent(b)
	// The image is present: one pod pulls it first.
	r.run("warm", r.env.Busybox, "--command", "--", "sleep", "3600")
	r.waitPod("default", "warm", 60*time.Second, "Running", running)
	for _, mode := range []string{"one-at-a-time", "paced-5ps", "burst"} {
		b.Run(mode, func(b *testing.B) {
			var all []time.Duration
			var cpu dataplanetest.CPU
			var machine, idle time.Duration
			for b.Loop() {
				took, used, m := r.startPods(b, 50, mode)
				machine += m.busy
				idle += m.idle
				all = append(all, took...)
				cpu = cpu.Add(used)
			}
			slices.Sort(all)
			b.ReportMetric(float64(pct(all, 50).Milliseconds()), "p50-ms")
			b.ReportMetric(float64(pct(all, 99).Milliseconds()), "p99-ms")
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(len(all)) }
			b.ReportMetric(per(cpu.Total()), "cpu-ms/pod")
			b.ReportMetric(per(cpu.Self), "logplane-ms/pod")
			b.ReportMetric(per(cpu.Containerd+cpu.Shims+cpu.Init), "containerd+runc-ms/pod")
			b.ReportMetric(per(cpu.Execs), "cni-ms/pod")
			b.ReportMetric(per(machine), "machine-cpu-ms/pod")
			b.ReportMetric(float64(idle)/float64(idle+machine), "machine-idle")
		})
	}
}

// machineCPU is the whole machine's CPU time from /proc/stat, all cores:
// busy (everything but idle and iowait, the kernel's own threads included)
// and idle.
type machineCPU struct{ busy, idle time.Duration }

func (m machineCPU) sub(o machineCPU) machineCPU {
	return machineCPU{busy: m.busy - o.busy, idle: m.idle - o.idle}
}

// readMachineCPU reads the first line of /proc/stat (clock ticks of 10 ms).
func readMachineCPU() machineCPU {
	v, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{} // no /proc: the metrics read 0
	}
	line, _, _ := strings.Cut(string(v), "\n")
	var m machineCPU
	for i, x := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseInt(x, 10, 64) // a malformed field counts 0
		d := time.Duration(n) * 10 * time.Millisecond
		if i == 3 || i == 4 {
			m.idle += d
		} else if i < 8 { // guest time is already counted in user
			m.busy += d
		}
	}
	return m
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)]
}

// startPods creates n pods and returns each one's time from create to Running and Ready, the
// CPU time spent meanwhile by this process (API server, log, agent, client), containerd, the
// shims and runc, and the CNI plugins (dataplanetest.CPU), and the whole machine's.
func (r *realCluster) startPods(b *testing.B, n int, mode string) ([]time.Duration, dataplanetest.CPU, machineCPU) {
	ctx := b.Context()
	cpu0 := r.env.CPU()
	m0 := readMachineCPU()
	pods := r.client.CoreV1().Pods("default")
	w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: "bench=startup"})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	created := map[string]time.Time{}
	took := map[string]time.Duration{}
	runningCh := make(chan string, n)
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || !running(p) {
				continue
			}
			mu.Lock()
			if t0, ok := created[p.Name]; ok {
				if _, seen := took[p.Name]; !seen {
					took[p.Name] = time.Since(t0)
					runningCh <- p.Name
				}
			}
			mu.Unlock()
		}
	}()
	one := func(i int) error {
		name := fmt.Sprintf("startup-%02d", i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": "startup"}},
			Spec: corev1.PodSpec{NodeName: "node-1", TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "c", Image: r.env.Busybox, Command: []string{"sleep", "3600"}}}},
		}
		mu.Lock()
		created[name] = time.Now()
		mu.Unlock()
		_, err := pods.Create(ctx, pod, metav1.CreateOptions{})
		return err
	}
	wait := func(k int) {
		for range k {
			select {
			case <-runningCh:
			case <-time.After(2 * time.Minute):
				b.Fatal("pods not Running after 2 minutes")
			}
		}
	}
	switch mode {
	case "burst":
		if err := parallel(n, n, one); err != nil {
			b.Fatal(err)
		}
		wait(n)
	case "paced-5ps":
		tick := time.NewTicker(200 * time.Millisecond)
		errs := make(chan error, n)
		for i := range n {
			go func() { errs <- one(i) }()
			<-tick.C
		}
		tick.Stop()
		for range n {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		wait(n)
	default:
		for i := range n {
			if err := one(i); err != nil {
				b.Fatal(err)
			}
			wait(1)
		}
	}
	used := r.env.CPU().Sub(cpu0)
	machine := readMachineCPU().sub(m0)
	b.StopTimer()
	zero := int64(0)
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{LabelSelector: "bench=startup"}); err != nil {
		b.Fatal(err)
	}
	// The sandboxes go with the pods; wait for the node to be clean before the next round.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		sbs, err := r.env.Runtime.ListSandboxes(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(sbs) <= 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d sandboxes left", len(sbs))
		}
	}
	b.StartTimer()
	mu.Lock()
	defer mu.Unlock()
	out := make([]time.Duration, 0, len(took))
	for _, d := range took {
		out = append(out, d)
	}
	return out, used, machine
}

// BenchmarkScheduleSim measures the simulated part of BenchmarkSchedule on a real embedded log
// (group commit) with 100 simulated nodes (nodeagent.Fleet, one shared projection):
//   - pending: 10,000 pods are already in the log when the scheduler starts; the clock runs
//     from its start until all are Running (bound, started, status written by their node);
//   - created: the scheduler and nodes run while 64 writers create the 10,000 pods through the
//     registry; the clock runs from the first create until all are Running.
func BenchmarkScheduleSim(b *testing.B) {
	// Components log at info; their lines would split the benchmark's result line.
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	b.Cleanup(func() { slog.SetDefault(prev) })
	for _, mode := range []string{"pending", "created", "pending-commands", "pending-feeds"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				scheduleSim(b, mode != "created", mode == "pending-commands", mode == "pending-feeds")
				b.StartTimer()
			}
		})
	}
}

// scheduleSim runs the benchmark; with commands, the nodes run as `logplane agent --runtime
// sim` does: over a connection of their own with the simulated nodes' credential, their own
// projection, and their writes sent as node commands that the control plane checks
// (NodeRestriction) and appends. With feeds, the control plane also keeps every node's feed
// (reconcilers/nodefeed) as the reconcile role does, and the clock runs until every feed has
// caught up with the log as it was when all pods were Running (s-to-feeds-current).
func scheduleSim(b *testing.B, pending, commands, feeds bool) {
	const nodes, pods, writers = 100, 10000, 64
	c := reconcilerstest.Start(b, reconcilerstest.Options{NoReconcilers: true, NoScheduler: true, Listen: commands})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	tmpl := nodeagent.Config{Registry: c.Registry, Store: c.Store}
	if commands {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Log.ServeNodeCommands(ctx, c.Registry.CheckNodeWrite); err != nil {
				b.Error(err)
			}
		}()
		creds, err := c.Log.Credentials(eventlog.Identity{Role: eventlog.RoleSimulatedNodes})
		if err != nil {
			b.Fatal(err)
		}
		nl, err := eventlog.Open(ctx, eventlog.Config{URL: c.LogURL(), Creds: creds})
		if err != nil {
			b.Fatal(err)
		}
		defer nl.Close()
		store := projections.New(builtin.Catalog(), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = store.Run(ctx, nl) // ends with ctx
		}()
		reg, err := registry.New(registry.Config{Log: nl, Store: store})
		if err != nil {
			b.Fatal(err)
		}
		tmpl = nodeagent.Config{Registry: reg, Store: store}
	}
	f, err := nodeagent.NewFleet(nodeagent.FleetConfig{
		Template:  tmpl,
		Nodes:     nodes,
		VolumeDir: b.TempDir(),
	})
	if err != nil {
		b.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := f.Run(ctx); err != nil {
			b.Error(err)
		}
	}()
	if err := f.Ready(b.Context()); err != nil {
		b.Fatal(err)
	}
	if feeds {
		e := engine.New(c.Store, engine.Options{})
		if err := nodefeed.Setup(nodefeed.Config{Feeds: c.Log})(ctx, e); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Run(ctx) // returns once ctx ends
		}()
	}
	startScheduler := func() {
		e, err := reconcilerstest.SchedulerEngine(c.Registry, c.Store, c.Logger)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Run(ctx) // returns once ctx ends
		}()
	}
	podKind, _ := c.Registry.Catalog().ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
	// Count Running pods from the projection's changes rather than by listing 10,000 pods.
	var mu sync.Mutex
	isRunning := map[string]bool{}
	allRunning := make(chan struct{})
	unsubscribe := c.Store.Subscribe(func(ch projections.Change) {
		o := ch.New
		if o == nil || o.Key.Resource != "pods" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if o.Fields["status.phase"] == "Running" && !isRunning[o.Key.Name] {
			isRunning[o.Key.Name] = true
			if len(isRunning) == pods {
				close(allRunning)
			}
		}
	})
	defer unsubscribe()
	create := func() {
		if err := parallel(pods, writers, func(i int) error {
			_, err := c.Registry.Create(ctx, podKind, benchPod(i), registry.Request{Actor: registry.User("bench")})
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	var start time.Time
	cpu0 := cpuTime()
	seq0 := c.Store.Applied()
	if pending {
		create()
		seq0, cpu0 = c.Store.Applied(), cpuTime()
		b.StartTimer()
		start = time.Now()
		startScheduler()
	} else {
		startScheduler()
		b.StartTimer()
		start = time.Now()
		create()
		b.ReportMetric(time.Since(start).Seconds(), "s-to-all-created")
	}
	progress := time.NewTicker(2 * time.Second)
	defer progress.Stop()
wait:
	for {
		select {
		case <-allRunning:
			break wait
		case <-progress.C:
			if testing.Verbose() {
				mu.Lock()
				n := len(isRunning)
				mu.Unlock()
				bound, _ := c.Store.List(projections.Query{Resource: podKind.GroupResource(), Fields: fields.OneTermNotEqualSelector("spec.nodeName", "")})
				b.Logf("%5.1fs: %d bound, %d running, log at %d", time.Since(start).Seconds(), len(bound), n, c.Store.Applied())
			}
		case <-time.After(5 * time.Minute):
			b.Fatalf("pods not all Running after 5 minutes")
		}
	}
	running := time.Since(start)
	if feeds {
		// Every node's feed holds the log as it was when the last pod ran.
		target := c.Store.Applied()
		for _, a := range f.Agents() {
			for {
				_, pos, err := c.Log.ReadFeed(ctx, a.NodeName())
				if err != nil {
					b.Fatal(err)
				}
				if pos >= target {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-to-feeds-current")
	}
	b.StopTimer()
	b.ReportMetric(running.Seconds(), "s-to-all-running")
	// CPU time of the whole process (log, projection, scheduler, 100 agents) over the run: what
	// the figure above would need on an idle machine, whatever else runs beside the benchmark.
	b.ReportMetric((cpuTime() - cpu0).Seconds(), "cpu-s")
	// Appends to the log per pod over the run (creates, binds, Events, statuses, leases).
	b.ReportMetric(float64(c.Store.Applied()-seq0)/pods, "appends/pod")
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0 // unknown: the metric reads 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchPod(i int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%05d", i), Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example/web:1"}}},
	}
}

// parallel runs fn(i) for i in [0, n) on conc goroutines and returns the first error.
func parallel(n, conc int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
