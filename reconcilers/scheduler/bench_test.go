package scheduler_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/scheduler"
	"github.com/logplane/logplane/reconcilers/scheduler/placement"
	"github.com/logplane/logplane/registry"
)

const (
	benchNodes = 100
	benchPods  = 10000
	benchConc  = 64
)

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

func benchPod(i int) *corev1.Pod {
	yes := true
	return pendingPod(fmt.Sprintf("web-%05d", i), "10m", func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs-web", Controller: &yes}}
	})
}

// seed writes the default namespace, benchNodes Ready nodes and benchPods pending pods into the
// log through a registry and projection of its own, which it stops before returning.
func seed(b *testing.B, l *eventlog.Log) {
	b.Helper()
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	store := projections.New(catalog, nil)
	go store.Run(ctx, l)
	reg, err := registry.New(registry.Config{Log: l, Store: store, Catalog: catalog})
	if err != nil {
		b.Fatal(err)
	}
	create := func(obj runtime.Object, resource string) error {
		_, err := reg.Create(ctx, kindOf(resource), obj, user)
		return err
	}
	if err := create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, "namespaces"); err != nil {
		b.Fatal(err)
	}
	if err := parallel(benchNodes, benchConc, func(i int) error {
		return create(readyNode(fmt.Sprintf("node-%03d", i), "32", "128Gi", 110), "nodes")
	}); err != nil {
		b.Fatal(err)
	}
	if err := parallel(benchPods, benchConc, func(i int) error { return create(benchPod(i), "pods") }); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSchedule binds 10,000 pending pods to 100 Ready nodes, end to end through a real
// embedded log with its default durability (group commit) and a projection: the scheduler
// starts once the pods are in the log, and the clock stops when it has bound them all. Each
// binding is a compare-and-set append of the pod, and each is followed by a Scheduled event.
//
// The baseline in the same run, raw-appends, is the log alone doing the same number of
// compare-and-set appends of bound pods with as many writers: what a scheduler that took no time
// to decide, assume or read could reach.
func BenchmarkSchedule(b *testing.B) {
	b.Run("scheduler", func(b *testing.B) {
		var binds, startup, events float64
		for b.Loop() {
			b.StopTimer()
			l := eventlogtest.Open(b, eventlogtest.Durable)
			seed(b, l)
			b.StartTimer()
			start := time.Now()
			c := newCluster(b, l, func(cfg *scheduler.Config, _ *engine.Options) { cfg.Workers = benchConc })
			var first time.Duration
			for deadline := start.Add(5 * time.Minute); ; time.Sleep(2 * time.Millisecond) {
				s := c.sched.Stats()
				if first == 0 && s.Bound > 0 {
					first = time.Since(start)
				}
				if s.Bound >= benchPods {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("not all bound: %+v", s)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			bound := countBound(b, c.store)
			if bound != benchPods {
				b.Fatalf("%d pods bound, want %d", bound, benchPods)
			}
			eventually(b, 5*time.Minute, func() (bool, string) {
				n := countEvents(c.store)
				return n >= benchPods, fmt.Sprintf("%d Scheduled events", n)
			})
			eventsDone := time.Since(start)
			startup += first.Seconds()
			binds += benchPods / elapsed.Seconds()
			events += eventsDone.Seconds()
			c.stop()
			b.StartTimer()
		}
		n := float64(b.N)
		b.ReportMetric(binds/n, "binds/s")
		b.ReportMetric(startup/n, "s-to-first-bind")
		b.ReportMetric(events/n, "s-to-all-events")
	})
	b.Run("raw-appends", func(b *testing.B) {
		var rate float64
		for b.Loop() {
			b.StopTimer()
			l := eventlogtest.Open(b, eventlogtest.Durable)
			seed(b, l)
			ctx := b.Context()
			type bindAppend struct {
				ev     *eventv1.ObjectChanged
				expect uint64
			}
			evs := make([]bindAppend, benchPods)
			pods := kindOf("pods")
			for i := range benchPods {
				rec, err := l.Get(ctx, eventlog.Key{Resource: "pods", Namespace: "default", Name: benchPod(i).Name})
				if err != nil {
					b.Fatal(err)
				}
				obj, err := pods.Decode(rec.Event.GetEncoding(), rec.Event.GetObject())
				if err != nil {
					b.Fatal(err)
				}
				bound := obj.(*corev1.Pod)
				bound.Spec.NodeName = fmt.Sprintf("node-%03d", i%benchNodes)
				data, err := kinds.Encode(bound, rec.Event.GetEncoding())
				if err != nil {
					b.Fatal(err)
				}
				ev := proto.Clone(rec.Event).(*eventv1.ObjectChanged)
				ev.Type, ev.Reason, ev.Cause, ev.Object, ev.Fields = eventv1.ChangeType_CHANGE_TYPE_MODIFIED, "bind", rec.Seq, data, pods.Fields(bound)
				evs[i] = bindAppend{ev: ev, expect: rec.Seq}
			}
			b.StartTimer()
			start := time.Now()
			if err := parallel(benchPods, benchConc, func(i int) error {
				_, err := l.Append(ctx, evs[i].ev, evs[i].expect)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			rate += benchPods / time.Since(start).Seconds()
		}
		b.ReportMetric(rate/float64(b.N), "appends/s")
	})
}

func countBound(b *testing.B, store *projections.Store) int {
	objs, _ := store.List(projections.Query{Resource: schema.GroupResource{Resource: "pods"}})
	n := 0
	for _, o := range objs {
		if o.Fields["spec.nodeName"] != "" {
			n++
		}
	}
	return n
}

func countEvents(store *projections.Store) int {
	objs, _ := store.List(projections.Query{Resource: schema.GroupResource{Resource: "events"}})
	return len(objs)
}

// BenchmarkPlace is the decision alone: one pod placed among 100 nodes holding 50 pods each.
func BenchmarkPlace(b *testing.B) {
	nodes := make([]*placement.Node, benchNodes)
	for i := range nodes {
		nodes[i] = placement.NewNode(fmt.Sprintf("node-%03d", i), readyNode(fmt.Sprintf("node-%03d", i), "32", "128Gi", 110))
		for j := range 50 {
			nodes[i].Add(placement.NewPod(benchPod(i*50 + j)))
		}
	}
	p := placement.NewPod(benchPod(benchPods))
	for b.Loop() {
		if d := placement.Place(nodes, nil, p); d.Node == "" {
			b.Fatal(d.Err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "places/s")
}

// BenchmarkPlaceConstraints is BenchmarkPlace with what inter-pod affinity and topology
// spreading cost: the 100 nodes are in 3 zones (the default spreading then counts by zone
// too), and the pod, or a few of the pods placed, have constraints.
func BenchmarkPlaceConstraints(b *testing.B) {
	zoned := func(i int) func(*corev1.Node) {
		return func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = fmt.Sprintf("zone-%c", 'a'+i%3) }
	}
	web := metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	antiTerm := func(app string) corev1.PodAffinityTerm {
		return corev1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}, TopologyKey: corev1.LabelHostname}
	}
	withAnti := func(app string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{antiTerm(app)}}}
		}
	}
	cases := []struct {
		name string
		// placed changes the j-th pod placed on node i (nil: as BenchmarkPlace's).
		placed func(i, j int, p *corev1.Pod)
		pod    func(p *corev1.Pod)
	}{
		{name: "none"},
		{
			name: "placed-anti-affinity", // 3 pods of another app that repel each other
			placed: func(i, j int, p *corev1.Pod) {
				if j == 0 && i%33 == 0 {
					p.Labels = map[string]string{"app": "cache"}
					withAnti("cache")(p)
				}
			},
		},
		{
			name: "required-anti-affinity", // the pod repels the pods of app=cache, on 10 nodes
			placed: func(i, j int, p *corev1.Pod) {
				if j == 0 && i%10 == 0 {
					p.Labels = map[string]string{"app": "cache"}
				}
			},
			pod: withAnti("cache"),
		},
		{
			name: "required-affinity", // the pod wants to be next to app=cache, on 10 nodes
			placed: func(i, j int, p *corev1.Pod) {
				if j == 0 && i%10 == 0 {
					p.Labels = map[string]string{"app": "cache"}
				}
			},
			pod: func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{antiTerm("cache")}}}
			},
		},
		{
			name: "preferred-anti-affinity",
			pod: func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
					PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 100, PodAffinityTerm: antiTerm("web")}}}}
			},
		},
		{
			name: "spread-zone-DoNotSchedule",
			pod: func(p *corev1.Pod) {
				p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone,
					WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &web}}
			},
		},
		{
			name: "spread-hostname-ScheduleAnyway",
			pod: func(p *corev1.Pod) {
				p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelHostname,
					WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: &web}}
			},
		},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			nodes := make([]*placement.Node, benchNodes)
			for i := range nodes {
				name := fmt.Sprintf("node-%03d", i)
				nodes[i] = placement.NewNode(name, readyNode(name, "32", "128Gi", 110, zoned(i)))
				for j := range 50 {
					p := benchPod(i*50 + j)
					if tc.placed != nil {
						tc.placed(i, j, p)
					}
					nodes[i].Add(placement.NewPod(p))
				}
			}
			pod := benchPod(benchPods)
			if tc.pod != nil {
				tc.pod(pod)
			}
			p := placement.NewPod(pod)
			for b.Loop() {
				if d := placement.Place(nodes, nil, p); d.Node == "" {
					b.Fatal(d.Err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "places/s")
		})
	}
}
