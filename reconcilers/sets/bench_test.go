package sets_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/registry"
)

// runningPods counts the pods of the store that are Running and not being deleted, as the
// projection applies their changes.
type runningPods struct {
	mu      sync.Mutex
	running map[eventlog.Key]bool
	created map[eventlog.Key]bool
	bound   map[eventlog.Key]bool
	// when the counts of created and bound pods last grew
	lastCreated, lastBound time.Time
	changed                chan struct{}
}

func countRunning(store *projections.Store) (*runningPods, func()) {
	r := &runningPods{running: map[eventlog.Key]bool{}, created: map[eventlog.Key]bool{}, bound: map[eventlog.Key]bool{}, changed: make(chan struct{}, 1)}
	cancel := store.Subscribe(func(c projections.Change) {
		o := c.New
		if o == nil {
			o = c.Old
		}
		if o == nil || o.Key.Resource != "pods" || o.Key.Group != "" {
			return
		}
		r.mu.Lock()
		if c.New != nil && !r.created[o.Key] {
			r.created[o.Key] = true
			r.lastCreated = time.Now()
		}
		if c.New != nil && c.New.Fields["spec.nodeName"] != "" && !r.bound[o.Key] {
			r.bound[o.Key] = true
			r.lastBound = time.Now()
		}
		if c.New != nil && c.New.Fields["status.phase"] == string(corev1.PodRunning) {
			r.running[o.Key] = true
		} else {
			delete(r.running, o.Key)
		}
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	})
	return r, cancel
}

func (r *runningPods) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// waitFor waits until cond holds of the running count, or timeout.
func (r *runningPods) waitFor(timeout time.Duration, cond func(int) bool) (int, bool) {
	deadline := time.After(timeout)
	for {
		n := r.count()
		if cond(n) {
			return n, true
		}
		select {
		case <-r.changed:
		case <-deadline:
			return n, false
		}
	}
}

func scaleTo(ctx context.Context, c *reconcilerstest.Cluster, name string, n int32) error {
	_, err := c.Client.AppsV1().Deployments("default").UpdateScale(ctx, name,
		&autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}, metav1.UpdateOptions{})
	return err
}

// startReconcilers starts n reconcile processes and waits until they share the partitions.
func startReconcilers(b testing.TB, c *reconcilerstest.Cluster, n int, opts reconcilerstest.ProcessOptions) []*reconcilerstest.Process {
	var ps []*reconcilerstest.Process
	opts.Creds = c.ReconcilerCredentials(b)
	for i := range n {
		ps = append(ps, reconcilerstest.StartProcess(b, c.LogURL(), fmt.Sprintf("r%d", i+1), opts))
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		total := 0
		var each []int
		for _, p := range ps {
			o := p.Stats().Owned
			if o < 64/n-2 {
				return false, fmt.Sprint(each)
			}
			total += o
			each = append(each, o)
		}
		return total == 64, fmt.Sprint(each)
	})
	return ps
}

// BenchmarkDeploymentScale scales one Deployment from 0 to 10,000 replicas on 100 simulated
// nodes (logplane's node agent on the sim runtime) and reports the seconds until 10,000 pods
// are Running, with the reconcilers (workloads and scheduler) in 1 and in 3 reconcile
// processes beside the API server's. Scale it down with -replicas for a quick run.
func BenchmarkDeploymentScale(b *testing.B) {
	for _, procs := range []int{1, 3} {
		b.Run(fmt.Sprintf("processes=%d", procs), func(b *testing.B) {
			for range b.N {
				benchScale(b, procs, *benchNodes, int32(*benchReplicas))
			}
		})
	}
}

var (
	benchNodes    = flag.Int("bench-nodes", 100, "simulated nodes of BenchmarkDeploymentScale")
	benchReplicas = flag.Int("bench-replicas", 10000, "replicas BenchmarkDeploymentScale scales to")
)

func benchScale(b *testing.B, procs, nodes int, replicas int32) {
	b.StopTimer()
	c := reconcilerstest.Start(b, reconcilerstest.Options{Nodes: nodes, Listen: true, NoReconcilers: true, NoScheduler: true,
		NodeOptions: reconcilerstest.NodeOptions{RenewInterval: 10 * time.Second, MaxPods: 110, Quiet: true}})
	ps := startReconcilers(b, c, procs, reconcilerstest.ProcessOptions{})
	ctx := context.Background()
	d := demoDeployment(0)
	d.Name = "scale"
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		l, err := c.Client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 1, "no replica set yet"
	})
	running, cancel := countRunning(c.Store)
	defer cancel()
	cpu0 := cpuOf(b, ps)
	b.StartTimer()
	start := time.Now()
	if err := scaleTo(ctx, c, "scale", replicas); err != nil {
		b.Fatal(err)
	}
	n, ok := running.waitFor(10*time.Minute, func(n int) bool { return n >= int(replicas) })
	took := time.Since(start)
	b.StopTimer()
	if !ok {
		b.Fatalf("%d of %d pods running after %v", n, replicas, took)
	}
	if testing.Verbose() {
		logBreakdown(b, c)
	}
	cpu1 := cpuOf(b, ps)
	b.ReportMetric((cpu1[0] - cpu0[0]).Seconds(), "cpu-s-main")
	b.ReportMetric((cpu1[1] - cpu0[1]).Seconds(), "cpu-s-reconcilers")
	b.ReportMetric(took.Seconds(), "s-to-running")
	running.mu.Lock()
	b.ReportMetric(running.lastCreated.Sub(start).Seconds(), "s-to-created")
	b.ReportMetric(running.lastBound.Sub(start).Seconds(), "s-to-bound")
	running.mu.Unlock()
	b.ReportMetric(float64(replicas)/took.Seconds(), "pods/s")
}

// cpuOf returns the CPU time used so far by this process (API server, log, nodes) and by the
// reconcile processes together.
func cpuOf(b testing.TB, ps []*reconcilerstest.Process) [2]time.Duration {
	self, err := reconcilerstest.ProcessCPU(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	var rec time.Duration
	for _, p := range ps {
		d, err := p.CPU()
		if err != nil {
			b.Fatal(err)
		}
		rec += d
	}
	return [2]time.Duration{self, rec}
}

// BenchmarkRollout changes the image of a Deployment of 1,000 replicas (RollingUpdate, 25%
// surge and unavailability) on 100 simulated nodes and reports the seconds until the rollout
// is complete (every replica updated and available), reconcilers in one reconcile process.
func BenchmarkRollout(b *testing.B) {
	const replicas = 1000
	for range b.N {
		b.StopTimer()
		c := reconcilerstest.Start(b, reconcilerstest.Options{Nodes: 100, Listen: true, NoReconcilers: true, NoScheduler: true,
			NodeOptions: reconcilerstest.NodeOptions{RenewInterval: 10 * time.Second, MaxPods: 110, Quiet: true}})
		ps := startReconcilers(b, c, 1, reconcilerstest.ProcessOptions{})
		ctx := context.Background()
		d := demoDeployment(0)
		d.Name = "rollout"
		n := int32(replicas)
		d.Spec.Replicas = &n
		created := time.Now()
		if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		complete := func(generation int64) func() (bool, string) {
			return func() (bool, string) {
				cur, err := c.Client.AppsV1().Deployments("default").Get(ctx, "rollout", metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				st := cur.Status
				return cur.Generation >= generation && st.ObservedGeneration >= cur.Generation && st.UpdatedReplicas == replicas &&
					st.Replicas == replicas && st.AvailableReplicas == replicas, fmt.Sprintf("%+v", st)
			}
		}
		pollUntil(b, 5*time.Minute, 20*time.Millisecond, complete(1))
		// The baseline of the same run: the same deployment created from nothing.
		b.ReportMetric(time.Since(created).Seconds(), "s-to-create")
		cpu0 := cpuOf(b, ps)
		b.StartTimer()
		start := time.Now()
		patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:1.8"}]}}}}`)
		if _, err := c.Client.AppsV1().Deployments("default").Patch(ctx, "rollout", "application/strategic-merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		pollUntil(b, 5*time.Minute, 20*time.Millisecond, complete(2))
		took := time.Since(start)
		b.StopTimer()
		cpu1 := cpuOf(b, ps)
		b.ReportMetric(took.Seconds(), "s-to-complete")
		b.ReportMetric((cpu1[0] - cpu0[0]).Seconds(), "cpu-s-main")
		b.ReportMetric((cpu1[1] - cpu0[1]).Seconds(), "cpu-s-reconcilers")
	}
}

// pollUntil polls cond every interval until it holds.
func pollUntil(b testing.TB, timeout, interval time.Duration, cond func() (bool, string)) {
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(interval)
	}
}

// BenchmarkNodeFailure stops the agent of one of 10 simulated nodes running 100 pods of a
// Deployment and reports the seconds from the node's last lease renewal until the pods it ran
// are Running elsewhere, and how far that is beyond the grace period plus the pods'
// tolerationSeconds (the target is within 10 s).
func BenchmarkNodeFailure(b *testing.B) {
	const (
		grace      = 4 * time.Second
		toleration = 3
		replicas   = 100
	)
	for range b.N {
		b.StopTimer()
		c := reconcilerstest.Start(b, reconcilerstest.Options{Nodes: 10, Listen: true, NoReconcilers: true, NoScheduler: true,
			NodeOptions: reconcilerstest.NodeOptions{RenewInterval: 500 * time.Millisecond}})
		startReconcilers(b, c, 1, reconcilerstest.ProcessOptions{NodeGrace: grace})
		ctx := context.Background()
		d := demoDeployment(0)
		d.Name = "survivor"
		n := int32(replicas)
		d.Spec.Replicas = &n
		secs := int64(toleration)
		d.Spec.Template.Spec.Tolerations = []corev1.Toleration{
			{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs},
			{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs},
		}
		running, cancel := countRunning(c.Store) // before the pods can exist
		if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, ok := running.waitFor(2*time.Minute, func(n int) bool { return n == replicas }); !ok {
			b.Fatalf("the pods never all ran (%d)", running.count())
		}
		victim := c.Nodes.Names()[0]
		onVictim := 0
		l, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + victim})
		if err != nil {
			b.Fatal(err)
		}
		onVictim = len(l.Items)
		if onVictim == 0 {
			b.Fatal("no pod on the victim")
		}
		b.StartTimer()
		c.Nodes.Stop(victim)
		last := c.Nodes.LastRenewal(victim)
		// Running elsewhere: replicas Running pods, none on the victim (the victim's stay
		// Running in the store until it comes back, so count the others).
		pollUntil(b, 2*time.Minute, 20*time.Millisecond, func() (bool, string) {
			l, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Running"})
			if err != nil {
				return false, err.Error()
			}
			elsewhere := 0
			for _, p := range l.Items {
				if p.Spec.NodeName != victim && p.DeletionTimestamp == nil {
					elsewhere++
				}
			}
			return elsewhere == replicas, fmt.Sprintf("%d running elsewhere", elsewhere)
		})
		took := time.Since(last)
		b.StopTimer()
		cancel()
		b.ReportMetric(took.Seconds(), "s-from-heartbeat")
		b.ReportMetric((took - grace - toleration*time.Second).Seconds(), "s-beyond-grace+toleration")
		b.ReportMetric(float64(onVictim), "pods-moved")
	}
}

// BenchmarkWorkSharing measures how reconcile processes share work: keys ConfigMaps are created
// at once, and one reconciler (reconcilerstest.DelayReconciler) takes each, waits delay
// (standing for a call to a remote system), then writes an annotation through the registry. It
// reports keys/s until every key is done, for 1 and for 3 reconcile processes (4 workers each).
// With a delay the work is waiting, which 3 processes do three times as much of at once; with
// none it is this machine's CPU, which more processes cannot add to.
func BenchmarkWorkSharing(b *testing.B) {
	cases := []struct {
		delay time.Duration
		keys  int
	}{{20 * time.Millisecond, 1200}, {0, 3000}}
	for _, cs := range cases {
		for _, procs := range []int{1, 3} {
			b.Run(fmt.Sprintf("delay=%v/processes=%d", cs.delay, procs), func(b *testing.B) {
				for range b.N {
					benchSharing(b, procs, cs.delay, cs.keys)
				}
			})
		}
	}
}

func benchSharing(b *testing.B, procs int, delay time.Duration, keys int) {
	b.StopTimer()
	c := reconcilerstest.Start(b, reconcilerstest.Options{Listen: true, NoReconcilers: true, NoScheduler: true})
	startReconcilers(b, c, procs, reconcilerstest.ProcessOptions{Role: "delay", Delay: delay, Workers: 4})
	var mu sync.Mutex
	done := map[eventlog.Key]bool{}
	all := make(chan struct{})
	cancel := c.Store.Subscribe(func(ch projections.Change) {
		if ch.New == nil || ch.New.Key.Resource != "configmaps" || ch.New.Event.GetActor().GetName() != "delay" {
			return
		}
		mu.Lock()
		done[ch.New.Key] = true
		if len(done) == keys {
			close(all)
		}
		mu.Unlock()
	})
	defer cancel()
	cms, _ := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Resource: "configmaps"})
	ctx := context.Background()
	b.StartTimer()
	start := time.Now()
	if err := parallel(keys, 32, func(i int) error {
		_, err := c.Registry.Create(ctx, cms, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Namespace: "default"}}, registry.Request{})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		n := len(done)
		mu.Unlock()
		b.Fatalf("%d of %d keys done", n, keys)
	}
	took := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(keys)/took.Seconds(), "keys/s")
}
