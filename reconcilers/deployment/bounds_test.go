package deployment_test

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/registry"
)

// checkRollingBounds replays the log after seq and checks that the sizes of the replica sets
// matching selector never summed above maxTotal, and reports the fewest ready pods seen once the
// rollout started (for the caller to check against the unavailability budget).
func checkRollingBounds(t *testing.T, c *reconcilerstest.Cluster, after uint64, selector string, maxTotal int32) (minReady int) {
	t.Helper()
	sel, err := labels.Parse(selector)
	if err != nil {
		t.Fatal(err)
	}
	kRS, _ := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Group: "apps", Resource: "replicasets"})
	kPod, _ := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Resource: "pods"})
	sizes := map[string]int32{}
	ready := map[string]bool{}
	// Start from the state at seq.
	objs, _, err := c.Registry.List(context.Background(), kRS, registryQuery(sel), readAt(after))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			t.Fatal(err)
		}
		sizes[o.Key.Name] = *obj.(*appsv1.ReplicaSet).Spec.Replicas
	}
	pods, _, err := c.Registry.List(context.Background(), kPod, registryQuery(sel), readAt(after))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range pods {
		obj, err := o.Decode()
		if err != nil {
			t.Fatal(err)
		}
		p := obj.(*corev1.Pod)
		ready[o.Key.Name] = p.DeletionTimestamp == nil && podutils.IsPodReady(p)
	}
	minReady = countTrue(ready)
	err = c.Registry.Scan(context.Background(), after, ^uint64(0), func(rec eventlog.Record) error {
		if rec.Err != nil || !sel.Matches(labels.Set(rec.Event.GetLabels())) {
			return nil
		}
		key := eventlog.KeyOf(rec.Event)
		switch {
		case key.Group == "apps" && key.Resource == "replicasets":
			if rec.Tombstone() {
				delete(sizes, key.Name)
				return nil
			}
			obj, err := kRS.Decode(rec.Event.GetEncoding(), rec.Event.GetObject())
			if err != nil {
				return err
			}
			sizes[key.Name] = *obj.(*appsv1.ReplicaSet).Spec.Replicas
			total := int32(0)
			for _, n := range sizes {
				total += n
			}
			if total > maxTotal {
				t.Errorf("at %d the replica sets summed %d replicas (%v), above %d", rec.Seq, total, sizes, maxTotal)
			}
		case key.Group == "" && key.Resource == "pods":
			if rec.Tombstone() {
				delete(ready, key.Name)
			} else {
				obj, err := kPod.Decode(rec.Event.GetEncoding(), rec.Event.GetObject())
				if err != nil {
					return err
				}
				p := obj.(*corev1.Pod)
				ready[key.Name] = p.DeletionTimestamp == nil && podutils.IsPodReady(p)
			}
			minReady = min(minReady, countTrue(ready))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return minReady
}

func countTrue(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

func registryQuery(sel labels.Selector) registry.Query {
	return registry.Query{Namespace: "default", Labels: sel}
}

func readAt(seq uint64) registry.ReadOptions { return registry.ReadOptions{At: seq} }
