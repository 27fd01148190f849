package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// BenchmarkAPIRestart measures what issue 3 asks of a restart: with 100,000 objects in the log
// and a snapshot of them, the time from starting the API server role (open the log, restore the
// projection, catch up with the tail, serve) to the first answered request, as `logplane
// apiserver` does it. Metric restart-ms (median of b.N restarts) and objects.
func BenchmarkAPIRestart(b *testing.B) {
	// Components log at info; their lines would split the benchmark's result line.
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	b.Cleanup(func() { slog.SetDefault(prev) })
	const objects = 100_000
	dir := b.TempDir()
	fillConfigMaps(b, dir, objects)

	// One run of the role to take the snapshot a restarted server starts from.
	lf := logFlags{dataDir: dir, durability: eventlog.GroupCommit.String(), replicas: 1}
	pf := processFlags{}
	p, err := openProcess(b.Context(), &lf, &pf)
	if err != nil {
		b.Fatal(err)
	}
	if err := catchUp(b.Context(), p.log, p.store); err != nil {
		b.Fatal(err)
	}
	if _, err := p.store.Snapshot(b.Context(), p.log); err != nil {
		b.Fatal(err)
	}
	p.log.Close()

	var took []time.Duration
	b.ResetTimer()
	for range b.N {
		took = append(took, restartOnce(b, &lf))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "restart-ms")
	b.ReportMetric(objects, "objects")
}

// restartOnce starts the API server role on dir and returns how long until a get of the newest
// object answered.
func restartOnce(b *testing.B, lf *logFlags) time.Duration {
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	start := time.Now()
	p, err := openProcess(ctx, lf, &processFlags{})
	if err != nil {
		b.Fatal(err)
	}
	af := apiFlags{listen: "127.0.0.1:0"}
	serve, err := startAPIServer(p, lf, &af)
	if err != nil {
		b.Fatal(err)
	}
	p.g.Go(serve)
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(lf.dataDir, "kubeconfig"))
	if err != nil {
		b.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	var took time.Duration
	for {
		cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, fmt.Sprintf("cm-%06d", 99_999), metav1.GetOptions{})
		if err == nil && cm.Data["i"] == "99999" {
			took = time.Since(start)
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("no answer a minute after the restart: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := p.wait(); err != nil {
		b.Fatal(err)
	}
	return took
}

// fillConfigMaps appends n ConfigMaps of about 1 KB to the log in dir, from 64 writers.
func fillConfigMaps(b *testing.B, dir string, n int) {
	l, err := eventlog.Open(b.Context(), eventlog.Config{DataDir: filepath.Join(dir, "log"), Durability: eventlog.Lazy})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	k, _ := builtin.Catalog().ByKind(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"})
	body := strings.Repeat("x", 900)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				cm := &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%06d", i), Namespace: "default", UID: types.UID(fmt.Sprintf("u-%06d", i)),
						Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%10)}, CreationTimestamp: metav1.Now()},
					Data: map[string]string{"i": fmt.Sprint(i), "body": body},
				}
				data, err := kinds.Encode(cm, eventv1.Encoding_ENCODING_PROTOBUF)
				if err != nil {
					b.Error(err)
					return
				}
				ev := &eventv1.ObjectChanged{
					Type: eventv1.ChangeType_CHANGE_TYPE_ADDED, Reason: "create", Encoding: eventv1.Encoding_ENCODING_PROTOBUF, Object: data,
					Actor:  &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Name: "bench"},
					Ref:    &eventv1.ObjectRef{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: "default", Name: cm.Name, Uid: string(cm.UID)},
					Labels: cm.Labels, Fields: k.Fields(cm),
				}
				if _, err := l.Create(b.Context(), ev); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
