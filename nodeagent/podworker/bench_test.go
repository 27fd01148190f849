package podworker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/nodeagent/podworker"
)

// runningSink records when each pod is first reported Running, and when it
// is gone.
type runningSink struct {
	mu         sync.Mutex
	running    map[types.UID]time.Time
	terminated map[types.UID]bool
	cond       *sync.Cond
}

func newRunningSink() *runningSink {
	s := &runningSink{running: map[types.UID]time.Time{}, terminated: map[types.UID]bool{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *runningSink) PodStatus(pod *corev1.Pod, st corev1.PodStatus) {
	if st.Phase != corev1.PodRunning {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.running[pod.UID]; !ok {
		s.running[pod.UID] = now
		s.cond.Broadcast()
	}
}

func (s *runningSink) PodTerminated(pod *corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.terminated[pod.UID] = true
	s.cond.Broadcast()
}

func (s *runningSink) Event(corev1.ObjectReference, string, string, string) {}

func (s *runningSink) waitAll(pods []*corev1.Pod, done func(*corev1.Pod) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		all := true
		for _, p := range pods {
			all = all && done(p)
		}
		if all {
			return
		}
		s.cond.Wait()
	}
}

// BenchmarkPodStart measures pod startup on a real containerd with the image
// already present: 50 pods are given to the pod worker, one after the other
// as each becomes Running (one-at-a-time: the latency of one pod start on a
// node) or all at once (all-at-once: a burst), and each pod's time from Sync
// to its first Running status is recorded. It reports the 50th and 99th
// percentile over all pods of all iterations.
func BenchmarkPodStart(b *testing.B) {
	b.Run("one-at-a-time", func(b *testing.B) { benchPodStart(b, 1) })
	b.Run("all-at-once", func(b *testing.B) { benchPodStart(b, 50) })
}

func benchPodStart(b *testing.B, concurrency int) {
	const pods = 50
	e := dataplanetest.New(b)
	ctx := b.Context()
	if _, err := e.Runtime.EnsureImage(ctx, e.Busybox, runtimeapi.PullIfNotPresent); err != nil {
		b.Fatal(err)
	}
	sink := newRunningSink()
	m, err := podworker.New(podworker.Config{
		NodeName: "n1", NodeIP: "127.0.0.1", Runtime: e.Runtime, Status: sink, Events: sink,
		VolumeDir: filepath.Join(e.Dir, "volumes"),
	})
	if err != nil {
		b.Fatal(err)
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- m.Start(mctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		batch := make([]*corev1.Pod, pods)
		synced := make(map[types.UID]time.Time, pods)
		for j := range batch {
			p := newPod(fmt.Sprintf("bench-%d-%d", i, j), corev1.Container{
				Name: "c", Image: e.Busybox, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "3600"},
			})
			zero := int64(0)
			p.Spec.TerminationGracePeriodSeconds = &zero
			batch[j] = p
		}
		for _, p := range batch {
			synced[p.UID] = time.Now()
			m.Sync(p)
			if concurrency == 1 {
				sink.waitAll([]*corev1.Pod{p}, func(p *corev1.Pod) bool { _, ok := sink.running[p.UID]; return ok })
			}
		}
		sink.waitAll(batch, func(p *corev1.Pod) bool { _, ok := sink.running[p.UID]; return ok })
		b.StopTimer()
		for _, p := range batch {
			lat = append(lat, sink.running[p.UID].Sub(synced[p.UID]))
			m.Sync(deleted(p))
		}
		sink.waitAll(batch, func(p *corev1.Pod) bool { return sink.terminated[p.UID] })
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(q float64) float64 {
		i := int(q*float64(len(lat))+0.5) - 1
		i = max(0, min(i, len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(pods), "pods/op")
}
