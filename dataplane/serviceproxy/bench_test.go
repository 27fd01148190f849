package serviceproxy_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/serviceproxy"
)

// BenchmarkServiceProgramming loads N Services of 10 endpoints each into
// real nftables (in a network namespace of its own) and then hands the
// Proxier an endpoint change every 10 ms.
//
//   - sync-ms: the first full sync (the whole table, one transaction);
//     sync-cpu-ms: the CPU it took (this process and nft), which is what it
//     would take on an idle machine.
//   - p50-ms, p99-ms: from the UpdateEndpointSlice call to the nft commit
//     that contains it (Run batching changes, MinSyncPeriod default).
//
// The endpoints are spread over 100 nodes, this one among them, as pods
// of a cluster would be.
func BenchmarkServiceProgramming(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			dataplanetest.RequireNetworking(b)
			var syncMs, syncCPU, p50, p99 []float64
			for range b.N {
				s, cpu, l50, l99 := benchProgramming(b, n)
				syncMs = append(syncMs, s)
				syncCPU = append(syncCPU, cpu)
				p50 = append(p50, l50)
				p99 = append(p99, l99)
			}
			b.ReportMetric(median(syncMs), "sync-ms")
			b.ReportMetric(median(syncCPU), "sync-cpu-ms")
			b.ReportMetric(median(p50), "p50-ms")
			b.ReportMetric(median(p99), "p99-ms")
		})
	}
}

const benchChanges = 300

func benchProgramming(b *testing.B, n int) (syncMs, syncCPU, p50, p99 float64) {
	node := dataplanetest.NewNetNS(b, "bench")
	var mu sync.Mutex
	type pending struct {
		gen uint64
		at  time.Time
	}
	var waiting []pending
	var latencies []time.Duration
	done := make(chan struct{}, 1)
	cfg := serviceproxy.Config{
		NodeName:     "node-0",
		NodeIPs:      []netip.Addr{netip.MustParseAddr("198.51.100.1")},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/9")},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")},
		NetNS:        node.Path(),
		OnError:      func(err error) { b.Errorf("serviceproxy: %v", err) },
		OnSync: func(res serviceproxy.SyncResult) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			i := 0
			for ; i < len(waiting) && waiting[i].gen <= res.Generation; i++ {
				latencies = append(latencies, now.Sub(waiting[i].at))
			}
			waiting = waiting[i:]
			if len(latencies) == benchChanges {
				select {
				case done <- struct{}{}:
				default:
				}
			}
		},
	}
	p, err := serviceproxy.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := serviceproxy.Cleanup(context.WithoutCancel(b.Context()), cfg); err != nil {
			b.Error(err)
		}
	})
	slicesBySvc := make([]*discoveryv1.EndpointSlice, n)
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		p.UpdateService(benchService(name, i))
		slicesBySvc[i] = benchSlice(name, i, 0)
		if err := p.UpdateEndpointSlice(slicesBySvc[i]); err != nil {
			b.Fatal(err)
		}
	}
	cpuBefore := cpuTime()
	start := time.Now()
	if err := p.Sync(b.Context()); err != nil {
		b.Fatal(err)
	}
	syncMs = float64(time.Since(start).Microseconds()) / 1000
	syncCPU = float64((cpuTime() - cpuBefore).Microseconds()) / 1000

	ctx, cancel := context.WithCancel(b.Context())
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	for c := range benchChanges {
		<-tick.C
		i := (c * 7919) % n
		s := benchSlice(fmt.Sprintf("svc-%d", i), i, c+1)
		at := time.Now()
		if err := p.UpdateEndpointSlice(s); err != nil {
			b.Fatal(err)
		}
		gen := p.Generation()
		mu.Lock()
		waiting = append(waiting, pending{gen, at})
		mu.Unlock()
	}
	tick.Stop()
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("changes not committed within a minute")
	}
	cancel()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return syncMs, syncCPU, ms(latencies[len(latencies)/2]), ms(latencies[len(latencies)*99/100])
}

// cpuTime is the CPU (user and system) this process and its finished
// children (nft) have used: the sync's cost whatever else the machine runs.
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

func benchService(name string, i int) *corev1.Service {
	ip := fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)
	s := service(name, ip)
	s.Spec.Ports = s.Spec.Ports[:1]
	return s
}

// benchSlice gives Service i 10 endpoints; version v moves one of them to a
// new address (a pod replaced).
func benchSlice(name string, i, v int) *discoveryv1.EndpointSlice {
	var list []ep
	for e := range 10 {
		k := i*10 + e
		ip := fmt.Sprintf("10.%d.%d.%d", 128+k/62500, (k/250)%250, k%250+1)
		if v > 0 && e == v%10 {
			ip = fmt.Sprintf("10.250.%d.%d", (v/250)%250, v%250+1)
		}
		list = append(list, ep{ip: ip, node: fmt.Sprintf("node-%d", k%100)})
	}
	s := slice(name, name+"-1", list...)
	s.Ports = s.Ports[:1]
	return s
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
