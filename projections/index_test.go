package projections_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/kinds/kindstest"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

var podsGR = schema.GroupResource{Resource: "pods"}

// applyPods folds n realistic pods into s directly, as Run would, with sequences 1..n.
func applyPods(tb testing.TB, s *projections.Store, n int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range n {
		ev := kindstest.PodEvent(tb, eventv1.ChangeType_CHANGE_TYPE_ADDED, kindstest.RealisticPod(i, rng), eventv1.Encoding_ENCODING_PROTOBUF)
		s.Apply(eventlog.Record{Seq: uint64(i + 1), Event: ev})
	}
}

// TestSelectorsMatchAScan checks that every selector, however the store's indexes serve it,
// lists exactly the objects a scan matching each one would, across updates that move objects
// between index entries and deletions that take them out.
func TestSelectorsMatchAScan(t *testing.T) {
	s := projections.New(builtin.Catalog(), nil)
	applyPods(t, s, 2000)
	rng := rand.New(rand.NewPCG(2, 2))
	seq := uint64(2000)
	all, _ := s.List(projections.Query{Resource: podsGR})
	for i, o := range all {
		obj, err := o.Decode()
		if err != nil {
			t.Fatal(err)
		}
		pod := obj.(*corev1.Pod)
		seq++
		switch i % 5 {
		case 0:
			s.Apply(eventlog.Record{Seq: seq, Event: kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_DELETED, pod, eventv1.Encoding_ENCODING_PROTOBUF)})
		case 1, 2:
			pod.Labels["tier"] = "moved"
			delete(pod.Labels, "release")
			pod.Spec.NodeName = fmt.Sprintf("node-%03d", rng.IntN(5))
			pod.Status.Phase = corev1.PodSucceeded
			s.Apply(eventlog.Record{Seq: seq, Event: kindstest.PodEvent(t, eventv1.ChangeType_CHANGE_TYPE_MODIFIED, pod, eventv1.Encoding_ENCODING_PROTOBUF)})
		}
	}
	all, _ = s.List(projections.Query{Resource: podsGR})
	if len(all) != 1600 {
		t.Fatalf("%d pods live, want 1600", len(all))
	}

	labelSels := []string{
		"", "app=app-3", "app==app-3,tier=moved", "app in (app-1,app-2),tier!=frontend", "tier=moved",
		"release", "!release", "app notin (app-1),release=stable", "app=none", "app in (none,app-9)",
		"tier in (frontend,backend),app=app-4", "pod-template-hash",
	}
	fieldSels := []string{
		"", "spec.nodeName=node-003", "spec.nodeName=node-003,status.phase=Succeeded", "status.phase!=Running",
		"metadata.namespace=team-4", "metadata.name=" + all[17].Key.Name, "metadata.name=" + all[17].Key.Name + ",metadata.namespace=team-0",
		"spec.nodeName=nowhere", "spec.nodeName!=node-001,metadata.namespace=team-1", "spec.restartPolicy=Always,spec.nodeName=node-042",
	}
	for _, ns := range []string{"", "team-3", "team-4"} {
		for _, ls := range labelSels {
			for _, fs := range fieldSels {
				lsel, err := labels.Parse(ls)
				if err != nil {
					t.Fatal(err)
				}
				fsel, err := fields.ParseSelector(fs)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := s.List(projections.Query{Resource: podsGR, Namespace: ns, Labels: lsel, Fields: fsel})
				var want []*projections.Object
				for _, o := range all {
					if (ns == "" || o.Key.Namespace == ns) && lsel.Matches(o.Labels) && fsel.Matches(o.Fields) {
						want = append(want, o)
					}
				}
				if fmt.Sprint(names(got)) != fmt.Sprint(names(want)) {
					t.Fatalf("namespace %q, labels %q, fields %q: listed %d objects, a scan matches %d\n got %v\nwant %v",
						ns, ls, fs, len(got), len(want), names(got), names(want))
				}
			}
		}
	}
}

func names(objs []*projections.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Key.Namespace + "/" + o.Key.Name
	}
	return out
}

// BenchmarkList lists pods of a 10,000-pod store with selectors that match 1,000 of them:
// through the label index, the field index, and one that no index can serve (a scan), to show
// what the indexes save.
func BenchmarkList(b *testing.B) {
	s := projections.New(builtin.Catalog(), nil)
	applyPods(b, s, 10_000)
	cases := []struct{ name, labels, fields string }{
		{"label=index", "app=app-3", ""},
		{"field=index", "", "spec.nodeName=node-007"},
		{"label=scan", "app notin (app-0,app-1,app-2,app-4,app-5,app-6,app-7,app-8,app-9)", ""},
	}
	for _, bc := range cases {
		lsel, _ := labels.Parse(bc.labels)
		fsel, _ := fields.ParseSelector(bc.fields)
		q := projections.Query{Resource: podsGR, Labels: lsel, Fields: fsel}
		b.Run(bc.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				got, _ := s.List(q)
				n = len(got)
			}
			if bc.name != "field=index" && n != 1000 || bc.name == "field=index" && n != 100 {
				b.Fatalf("matched %d", n)
			}
			b.ReportMetric(float64(n), "objects")
		})
	}
}
