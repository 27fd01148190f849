package printers_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/printers"
)

// BenchmarkPodTable measures a Table of 10,000 running pods, as `kubectl get pods -A` asks for
// it, against deep-copying the same pods (a floor every list pays when it hands objects out).
func BenchmarkPodTable(b *testing.B) {
	k := kindOf(&testing.T{}, "", "Pod")
	objs := make([]runtime.Object, 10000)
	for i := range objs {
		p := runningPod(fmt.Sprintf("web-%d", i), time.Duration(i)*time.Second, int32(i%3), "node-1")
		p.Status.PodIPs = []corev1.PodIP{{IP: "10.244.0.1"}}
		objs[i] = p
	}
	var copyNs float64
	b.Run("deepcopy", func(b *testing.B) {
		for b.Loop() {
			for _, o := range objs {
				_ = o.DeepCopyObject()
			}
		}
		copyNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("table", func(b *testing.B) {
		p := printers.Printer{Now: func() time.Time { return now }}
		for b.Loop() {
			if _, err := p.Table(k, objs); err != nil {
				b.Fatal(err)
			}
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(ns/1e6, "ms/10k-pods")
		if copyNs > 0 {
			b.ReportMetric(ns/copyNs, "x-deepcopy")
		}
	})
}
