package netpolicy_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/netpolicy"
)

// BenchmarkNetworkPolicy loads 1,000 NetworkPolicies over 1,000 pods (10
// namespaces) into real nftables, in a network namespace of its own, then
// changes one policy every 10 ms (another port) with Run batching.
//
//   - sync-ms: the first full sync (the whole table, one transaction);
//     sync-cpu-ms: the CPU it took (this process and nft).
//   - p50-ms, p99-ms: from the UpdatePolicy call to the commit that holds
//     it (the policy enforced).
//   - pod-p99-ms: the same for a pod relabelled (every 10 ms), which
//     moves set elements only.
//   - change-cpu-ms, pod-change-cpu-ms: the CPU (this process and nft)
//     per change in each phase, what a change costs whatever the load.
//
// Run: go test -run '^$' -bench BenchmarkNetworkPolicy -benchtime 1x -count 3 ./dataplane/netpolicy/
func BenchmarkNetworkPolicy(b *testing.B) {
	dataplanetest.RequireNetworking(b)
	var syncMs, syncCPU, p50, p99, podP99, changeCPU, podCPU []float64
	for range b.N {
		r := benchPolicies(b, 1000, 1000)
		syncMs = append(syncMs, r.syncMs)
		syncCPU = append(syncCPU, r.syncCPU)
		p50 = append(p50, r.p50)
		p99 = append(p99, r.p99)
		podP99 = append(podP99, r.podP99)
		changeCPU = append(changeCPU, r.changeCPU)
		podCPU = append(podCPU, r.podCPU)
	}
	b.ReportMetric(median(syncMs), "sync-ms")
	b.ReportMetric(median(syncCPU), "sync-cpu-ms")
	b.ReportMetric(median(p50), "p50-ms")
	b.ReportMetric(median(p99), "p99-ms")
	b.ReportMetric(median(podP99), "pod-p99-ms")
	b.ReportMetric(median(changeCPU), "change-cpu-ms")
	b.ReportMetric(median(podCPU), "pod-change-cpu-ms")
}

type benchResult struct {
	syncMs, syncCPU, p50, p99, podP99, changeCPU, podCPU float64
}

const benchChanges = 200

func benchPolicies(b *testing.B, nPolicies, nPods int) benchResult {
	node := dataplanetest.NewNetNS(b, "bench")
	var mu sync.Mutex
	type pending struct {
		gen uint64
		at  time.Time
	}
	var waiting []pending
	var latencies []time.Duration
	cfg := netpolicy.Config{
		NetNS:   node.Path(),
		OnError: func(err error) { b.Errorf("netpolicy: %v", err) },
		OnSync: func(res netpolicy.SyncResult) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			i := 0
			for ; i < len(waiting) && waiting[i].gen <= res.Generation; i++ {
				latencies = append(latencies, now.Sub(waiting[i].at))
			}
			waiting = waiting[i:]
		},
	}
	e, err := netpolicy.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := netpolicy.Cleanup(context.WithoutCancel(b.Context()), cfg); err != nil {
			b.Error(err)
		}
	})
	for i := range 10 {
		e.UpdateNamespace(namespace(fmt.Sprintf("ns-%d", i), map[string]string{"team": fmt.Sprintf("t%d", i%3)}))
	}
	for k := range nPods {
		e.UpdatePod(benchPod(k, 0))
	}
	for j := range nPolicies {
		if err := e.UpdatePolicy(benchPolicy(j, 0)); err != nil {
			b.Fatal(err)
		}
	}
	cpuBefore := cpuTime()
	start := time.Now()
	if err := e.Sync(b.Context()); err != nil {
		b.Fatal(err)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r := benchResult{syncMs: ms(time.Since(start)), syncCPU: ms(cpuTime() - cpuBefore)}

	ctx, cancel := context.WithCancel(b.Context())
	runDone := make(chan error, 1)
	go func() { runDone <- e.Run(ctx) }()
	measure := func(change func(c int)) ([]time.Duration, float64) {
		cpu := cpuTime()
		mu.Lock()
		latencies = nil
		mu.Unlock()
		tick := time.NewTicker(10 * time.Millisecond)
		for c := range benchChanges {
			<-tick.C
			at := time.Now()
			change(c)
			gen := e.Generation()
			mu.Lock()
			waiting = append(waiting, pending{gen, at})
			mu.Unlock()
		}
		tick.Stop()
		if err := e.WaitSynced(ctx); err != nil {
			b.Fatal(err)
		}
		perChange := ms(cpuTime()-cpu) / benchChanges
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(latencies)
		slices.Sort(out)
		return out, perChange
	}
	pol, polCPU := measure(func(c int) {
		if err := e.UpdatePolicy(benchPolicy((c*7919)%nPolicies, c+1)); err != nil {
			b.Fatal(err)
		}
	})
	pods, podCPU := measure(func(c int) { e.UpdatePod(benchPod((c*7919)%nPods, c+1)) })
	cancel()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	if len(pol) != benchChanges || len(pods) != benchChanges {
		b.Fatalf("%d and %d changes measured, want %d", len(pol), len(pods), benchChanges)
	}
	r.p50, r.p99, r.podP99 = ms(pol[len(pol)/2]), ms(pol[len(pol)*99/100]), ms(pods[len(pods)*99/100])
	r.changeCPU, r.podCPU = polCPU, podCPU
	return r
}

// benchPod is pod k of 1,000 (100 in each of 10 namespaces); version v
// gives it another tier.
func benchPod(k, v int) *corev1.Pod {
	ip := fmt.Sprintf("10.128.%d.%d", k/250, k%250+1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", k%10), Name: fmt.Sprintf("pod-%d", k), Labels: map[string]string{
			"app":  fmt.Sprintf("a%d", k%20),
			"tier": fmt.Sprintf("t%d", (k+v)%5),
		}},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// benchPolicy is policy j: it selects one app of its namespace, lets in
// one tier of its namespace and of a team's namespaces on a port and the
// named port http; every other policy also limits egress to an ipBlock
// with an except and a port range. Version v changes the port.
func benchPolicy(j, v int) *networkingv1.NetworkPolicy {
	np := policy(fmt.Sprintf("ns-%d", j%10), fmt.Sprintf("pol-%d", j), map[string]string{"app": fmt.Sprintf("a%d", j%20)}, ingress)
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{
			podPeer(map[string]string{"tier": fmt.Sprintf("t%d", j%5)}),
			nsPeer(map[string]string{"team": fmt.Sprintf("t%d", j%3)}, map[string]string{"tier": fmt.Sprintf("t%d", (j+1)%5)}),
		},
		Ports: []networkingv1.NetworkPolicyPort{tcpPort(8000 + v%1000), namedPort("http")},
	}}
	if j%2 == 1 {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, egress)
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{blockPeer("10.0.0.0/8", fmt.Sprintf("10.%d.0.0/16", 1+j%100))},
			Ports: []networkingv1.NetworkPolicyPort{portRange(9000, 9100)},
		}}
	}
	return np
}

// cpuTime is the CPU (user and system) this process and its finished
// children (nft) have used.
func cpuTime() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			panic(err) // only with a bad argument
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
