package nodeagent_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/dataplane/clusterdns"
	"github.com/logplane/logplane/nodeagent"
)

// BenchmarkServiceName measures, for 100 Services each iteration, the time from a Service's
// create returning (client-go, through the API server and the log) to its name resolving
// through the cluster DNS server the node agent feeds (queried over UDP on loopback every
// 200 µs); metric p99-ms.
func BenchmarkServiceName(b *testing.B) {
	srv, err := clusterdns.New(clusterdns.Config{Host: &clusterdns.ResolvConf{}})
	if err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.ServePacket(ctx, pc) }()
	defer func() { cancel(); pc.Close(); <-served }()

	c := newCluster(b, apiservertest.Options{})
	f, err := nodeagent.NewFleet(nodeagent.FleetConfig{Template: nodeagent.Config{Registry: c.api.API.Registry(), Store: c.api.API.Store(), DNS: srv},
		Nodes: 1, Prefix: "sim", VolumeDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := f.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	client := &dns.Client{Timeout: time.Second}
	var lat []time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for i := range 100 {
			name := fmt.Sprintf("s-%d-%d", it, i)
			_, err := c.client.CoreV1().Services("default").Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
			}, metav1.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			m := new(dns.Msg)
			m.SetQuestion(name+".default.svc.cluster.local.", dns.TypeA)
			for {
				r, _, err := client.Exchange(m, pc.LocalAddr().String())
				if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
					break
				}
				if time.Since(start) > 10*time.Second {
					b.Fatalf("%s does not resolve after 10s", name)
				}
				time.Sleep(200 * time.Microsecond)
			}
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}
