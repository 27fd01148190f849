package clusterdns_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/dataplane/clusterdns"
)

// Benchmark shape: benchServices Services with a cluster IP and as many headless ones with
// benchEndpoints endpoints each, in namespace default; benchWorkers concurrent lookups.
const (
	benchServices  = 100
	benchEndpoints = 3
	benchWorkers   = 8
)

// BenchmarkDNS compares logplane's cluster DNS server with CoreDNS (v1.15.0, built from
// ops/bench/coredns, its kubernetes plugin reading the same objects from a logplane API
// server) in one run, each in a process of its own, with one load generator: benchWorkers
// goroutines, each a pod's stub resolver (search default.svc.cluster.local svc.cluster.local
// cluster.local, ndots:5) on its own UDP socket, resolving names as a pod's program would:
// "svc-N" (a Service), "db-N" (a headless Service), and "example.com" (an external name
// reached through the search path, answered by a fake upstream on 127.0.0.1). qps counts
// lookups (a lookup is every query the resolver needs for one name), p99-ms their
// 99th-percentile latency, queries/lookup what the search path cost.
//
//	go test ./dataplane/clusterdns -run '^$' -bench BenchmarkDNS -benchtime 60000x
//	ops/bench/run.sh dns    (seven rounds, one process each, with a benchstat summary)
func BenchmarkDNS(b *testing.B) {
	up := startUpstream(b, "example.com. 300 IN A 192.0.2.1")
	api := apiservertest.Start(b, apiservertest.Options{})
	writeCluster(b, api)
	// Both servers run in processes of their own, so that neither shares a Go runtime with
	// the load generator, and both read the same objects from the API server.

	lpAddr := startLogplaneDNS(b, api, up.Addr)
	coreAddr := startCoreDNS(b, api, up.Addr)
	b.Logf("CoreDNS answers on %s", coreAddr)

	names := map[string]func(i int) string{
		"service":  func(i int) string { return fmt.Sprintf("svc-%d", i%benchServices) },
		"headless": func(i int) string { return fmt.Sprintf("db-%d", i%benchServices) },
		"external": func(int) string { return "example.com" },
	}
	servers := []struct{ name, addr string }{{"logplane", lpAddr}, {"coredns", coreAddr}}
	// Warm both up alike before anything is measured: a process that has just started (its
	// runtime, its caches, CoreDNS's informers) would otherwise slow whichever runs first.
	for _, server := range servers {
		for _, kind := range []string{"service", "headless", "external"} {
			c, err := dns.Dial("udp", server.addr)
			if err != nil {
				b.Fatal(err)
			}
			for i := range 2000 {
				if _, _, err := resolve(c, names[kind](i), []string{"default.svc.cluster.local.", "svc.cluster.local.", "cluster.local."}); err != nil {
					b.Fatalf("%s: %v", server.name, err)
				}
			}
			c.Close()
		}
	}
	// Each name is measured on both servers back to back (which goes first alternates), so
	// that a change in the machine's load falls on both alike.
	for i, kind := range []string{"service", "headless", "external"} {
		pair := servers
		if i%2 == 1 {
			pair = []struct{ name, addr string }{servers[1], servers[0]}
		}
		for _, server := range pair {
			b.Run("server="+server.name+"/name="+kind, func(b *testing.B) {
				load(b, server.addr, names[kind])
			})
		}
	}
}

// writeCluster creates the Services and EndpointSlices in the API server (no EndpointSlice
// reconciler writes them yet, so the benchmark does).
func writeCluster(b *testing.B, api *apiservertest.Server) {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(api.Config)
	if err != nil {
		b.Fatal(err)
	}
	ns := "default"
	for i := range benchServices {
		for _, headless := range []bool{false, true} {
			name := fmt.Sprintf("svc-%d", i)
			s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
					Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
			if headless {
				s.Name = fmt.Sprintf("db-%d", i)
				s.Spec.ClusterIP = corev1.ClusterIPNone
			}
			if _, err := cs.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				b.Fatal(err)
			}
			es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: s.Name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: s.Name}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}}}
			for j := range benchEndpoints {
				e := discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.%d.%d", i/50, (i%50)*5+j+1)},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
				if headless {
					e.Hostname = ptr.To(fmt.Sprintf("%s-%d", s.Name, j))
				}
				es.Endpoints = append(es.Endpoints, e)
			}
			if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				b.Fatal(err)
			}
		}
	}
}

// startCoreDNS builds CoreDNS from ops/bench/coredns (its own module, pinned there) and runs
// it on 127.0.0.1 with kubeadm's Corefile, less the plugins that only watch it (health,
// ready, prometheus, loop, reload): kubernetes (reading the API server through its
// kubeconfig, pods insecure, ttl 30), forward to the fake upstream, cache 30.
func startCoreDNS(b *testing.B, api *apiservertest.Server, upstream string) string {
	dir := b.TempDir()
	bin := filepath.Join(dir, "coredns")
	src, err := filepath.Abs("../../ops/bench/coredns")
	if err != nil {
		b.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building CoreDNS in %s: %v\n%s", src, err, out)
	}
	port := freeUDPPort(b)
	corefile := fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s logplane
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . %s
    cache 30
    loadbalance
}
`, port, api.Kubeconfig, upstream)
	if err := os.WriteFile(filepath.Join(dir, "Corefile"), []byte(corefile), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-conf", filepath.Join(dir, "Corefile"))
	logf, err := os.Create(filepath.Join(dir, "coredns.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		_ = cmd.Process.Kill() // our own child, by its handle; Wait reports how it ended
		<-exited
		logf.Close()
		// What CoreDNS had to say about logplane's API (list/watch errors would be here).
		if log, err := os.ReadFile(logf.Name()); err == nil {
			for _, l := range strings.Split(string(log), "\n") {
				if strings.Contains(l, "[ERROR]") || strings.Contains(l, "[WARNING]") {
					b.Logf("CoreDNS: %s", l)
				}
			}
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Ready when it answers a Service of the API server and a headless one.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for _, n := range []string{"svc-0.default.svc.cluster.local.", "db-0.default.svc.cluster.local."} {
			m := new(dns.Msg)
			m.SetQuestion(n, dns.TypeA)
			r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, addr)
			ok = ok && err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0
		}
		if ok {
			return addr
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logf.Name()) // for the failure message only
			b.Fatalf("CoreDNS exited: %v\n%s", waitErr, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name()) // for the failure message only
			b.Fatalf("CoreDNS does not answer the API server's Services:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeUDPPort(b *testing.B) int {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// load resolves b.N names against the server at addr with benchWorkers stub resolvers and
// reports qps and p99-ms.
func load(b *testing.B, addr string, name func(int) string) {
	search := []string{"default.svc.cluster.local.", "svc.cluster.local.", "cluster.local."}
	var next atomic.Int64
	var queries, timeouts atomic.Int64
	lat := make([][]time.Duration, benchWorkers)
	conns := make([]*dns.Conn, benchWorkers)
	for w := range conns {
		c, err := dns.Dial("udp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns[w] = c
		defer c.Close()
	}
	// One lookup each before the clock starts, so that both servers have every name cached
	// or indexed alike.
	for i := range benchServices {
		if _, _, err := resolve(conns[0], name(i), search); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for w := range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls := make([]time.Duration, 0, b.N/benchWorkers+1)
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					break
				}
				t0 := time.Now()
				q, to, err := resolve(conns[w], name(i), search)
				if err != nil {
					failed.Store(err)
					return
				}
				ls = append(ls, time.Since(t0))
				queries.Add(int64(q))
				timeouts.Add(int64(to))
			}
			lat[w] = ls
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "qps")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(queries.Load())/float64(b.N), "queries/lookup")
	if t := timeouts.Load(); t > 0 {
		b.ReportMetric(float64(t), "timeouts")
	}
}

// resolve looks a name up as glibc's stub resolver does with ndots:5: a name with fewer
// dots than that is tried with each search domain in turn, then as it is, until an answer
// is not NXDOMAIN. It returns the queries it sent and how many timed out (and were sent
// again).
func resolve(c *dns.Conn, name string, search []string) (queries, timeouts int, err error) {
	candidates := []string{}
	if strings.Count(name, ".") < 5 {
		for _, s := range search {
			candidates = append(candidates, name+"."+s)
		}
	}
	candidates = append(candidates, name+".")
	for _, n := range candidates {
		m := new(dns.Msg)
		m.SetQuestion(n, dns.TypeA)
		var r *dns.Msg
		for attempt := 0; ; attempt++ {
			queries++
			if err := c.SetDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
				return queries, timeouts, err
			}
			if err := c.WriteMsg(m); err != nil {
				return queries, timeouts, err
			}
			for {
				r, err = c.ReadMsg()
				if err != nil || r.Id == m.Id {
					break
				}
				// A late answer to an earlier attempt: read on.
			}
			if err == nil {
				break
			}
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() || attempt >= 3 {
				return queries, timeouts, fmt.Errorf("%s: %w", n, err)
			}
			timeouts++
		}
		if r.Rcode != dns.RcodeNameError {
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				return queries, timeouts, fmt.Errorf("%s: %s with %d answers", n, dns.RcodeToString[r.Rcode], len(r.Answer))
			}
			return queries, timeouts, nil
		}
	}
	return queries, timeouts, fmt.Errorf("%s: NXDOMAIN", name)
}

// serveEnv names the variables that make this test binary the benchmark's logplane DNS
// server process (TestServeForBenchmark).
const (
	serveEnvKubeconfig = "LOGPLANE_CLUSTERDNS_BENCH_KUBECONFIG"
	serveEnvUpstream   = "LOGPLANE_CLUSTERDNS_BENCH_UPSTREAM"
	serveEnvAddrFile   = "LOGPLANE_CLUSTERDNS_BENCH_ADDR_FILE"
)

// startLogplaneDNS runs this test binary again as the benchmark's logplane DNS server: it
// lists the namespaces, Services and EndpointSlices from the API server, feeds them to a
// Server, and serves UDP on 127.0.0.1 until it is killed.
func startLogplaneDNS(b *testing.B, api *apiservertest.Server, upstream string) string {
	addrFile := filepath.Join(b.TempDir(), "addr")
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeForBenchmark$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), serveEnvKubeconfig+"="+api.Kubeconfig, serveEnvUpstream+"="+upstream, serveEnvAddrFile+"="+addrFile)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		_ = cmd.Process.Kill() // our own child, by its handle; Wait reports how it ended
		<-exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if data, err := os.ReadFile(addrFile); err == nil && strings.HasSuffix(string(data), "\n") {
			return strings.TrimSpace(string(data))
		}
		select {
		case <-exited:
			b.Fatalf("the logplane DNS process exited: %v\n%s", waitErr, out)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("the logplane DNS process does not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeForBenchmark is the logplane DNS server process of BenchmarkDNS; run alone, it
// skips.
func TestServeForBenchmark(t *testing.T) {
	kubeconfig := os.Getenv(serveEnvKubeconfig)
	if kubeconfig == "" {
		t.Skip("only BenchmarkDNS runs this, as its server process")
	}
	ctx := context.Background()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := clusterdns.New(clusterdns.Config{Host: &clusterdns.ResolvConf{Nameservers: []string{os.Getenv(serveEnvUpstream)}}})
	if err != nil {
		t.Fatal(err)
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nss.Items {
		s.UpsertNamespace(n.Name)
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range svcs.Items {
		s.UpsertService(&svcs.Items[i])
	}
	eps, err := cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range eps.Items {
		s.UpsertEndpointSlice(&eps.Items[i])
	}
	// The load generator's queries come from 127.0.0.1: that is the pod asking.
	s.UpsertPod(podAt("default", "client", "127.0.0.1"))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv(serveEnvAddrFile), []byte(pc.LocalAddr().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.ServePacket(ctx, pc); err != nil { // until the benchmark kills this process
		t.Fatal(err)
	}
}
