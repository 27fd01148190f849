package apiserver_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// BenchmarkSecretCreate creates Secrets through the API from 32 clients, with the envelope
// encryption logplane runs with (a data key per Secret, made ahead in batches) and without, in
// the same run: the target is creates/s with encryption ≥ 0.9× without. A third run makes each
// data key when its Secret is created (one key made ahead at a time), which is what a data key
// per Secret would cost without making them ahead.
func BenchmarkSecretCreate(b *testing.B) {
	const clients = 32
	for _, bc := range []struct {
		name  string
		enc   bool
		ahead int
	}{{"encryption=on", true, 0}, {"encryption=off", false, 0}, {"encryption=on,keys-ahead=1", true, 1}} {
		b.Run(bc.name, func(b *testing.B) {
			s := apiservertest.Start(b, apiservertest.Options{Encryption: bc.enc, KeysAhead: bc.ahead})
			cs := benchClient(b, s.Config)
			ctx := b.Context()
			var next atomic.Int64
			lat := make([][]time.Duration, clients)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sec-%d", i), Labels: map[string]string{"app": "bench"}},
							Data: map[string][]byte{"username": []byte("admin"), "password": []byte(fmt.Sprintf("s3cr3t-%08d-some-more-bytes", i))}}
						t0 := time.Now()
						if _, err := cs.CoreV1().Secrets("default").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
							b.Error(err)
							return
						}
						lat[c] = append(lat[c], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "creates/s")
			b.ReportMetric(p99(slices.Concat(lat...)), "p99-ms")
		})
	}
}
