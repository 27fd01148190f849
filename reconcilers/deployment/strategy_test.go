package deployment_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

const webDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: %d
  minReadySeconds: %d
  revisionHistoryLimit: %d
  strategy: %s
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: %s
`

func webManifest(replicas, minReady, history int, strategy, image string) string {
	return fmt.Sprintf(webDeployment, replicas, minReady, history, strategy, image)
}

// Recreate: no pod of the new template is created before every old pod has stopped.
func TestDeploymentRecreate(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 2})
	c.MustApply(webManifest(3, 0, 10, "{type: Recreate}", "nginx:1.7.9"))
	rolloutStatus(t, c, "web")
	start := c.Store.Applied()
	c.MustApply(webManifest(3, 0, 10, "{type: Recreate}", "nginx:1.8"))
	rolloutStatus(t, c, "web")
	kPod, _ := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Resource: "pods"})
	oldAlive := map[string]bool{}
	newCreated := 0
	err := c.Registry.Scan(context.Background(), 0, ^uint64(0), func(rec eventlog.Record) error {
		key := eventlog.KeyOf(rec.Event)
		if rec.Err != nil || key.Resource != "pods" || rec.Event.GetLabels()["app"] != "web" {
			return nil
		}
		obj, err := kPod.Decode(rec.Event.GetEncoding(), rec.Event.GetObject())
		if err != nil {
			return err
		}
		p := obj.(*corev1.Pod)
		image := p.Spec.Containers[0].Image
		stopped := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
		switch {
		case image == "nginx:1.7.9" && (rec.Tombstone() || stopped):
			// Gone, or stopped (Kubernetes' Recreate waits for the old pods to stop running:
			// a terminal phase, written before the pod is removed).
			delete(oldAlive, key.Name)
		case image == "nginx:1.7.9":
			oldAlive[key.Name] = true
		case rec.Event.GetReason() == "create":
			newCreated++
			if rec.Seq > start && len(oldAlive) > 0 {
				t.Errorf("pod %s of the new template was created while %d old pods were still there", key.Name, len(oldAlive))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if newCreated != 3 {
		t.Errorf("%d pods of the new template created, want 3", newCreated)
	}
	if im := images(c, "app=web"); im["nginx:1.8"] != 3 || len(im) != 1 {
		t.Errorf("images %v", im)
	}
}

// Scaling in the middle of a rollout spreads the new replicas over the old and the new replica
// sets in proportion to their sizes, as Kubernetes' documentation describes: 10 replicas,
// maxSurge 3, maxUnavailable 2, a rollout stuck on a bad image (old 8, new 5), scaled to 15:
// old 11, new 7.
func TestDeploymentProportionalScaling(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 4})
	strategy := "{type: RollingUpdate, rollingUpdate: {maxSurge: 3, maxUnavailable: 2}}"
	c.MustApply(webManifest(10, 0, 10, strategy, "nginx:1.7.9"))
	rolloutStatus(t, c, "web")
	c.MustApply(webManifest(10, 0, 10, strategy, "nginx:sometag-doesnotexist"))
	sizes := func(want ...int32) {
		t.Helper()
		c.Eventually(30*time.Second, func() (bool, string) {
			rss := replicaSets(t, c, "app=web")
			if len(rss) != len(want) {
				return false, rsSummary(rss)
			}
			for i, rs := range rss {
				if *rs.Spec.Replicas != want[i] {
					return false, rsSummary(rss)
				}
			}
			return true, ""
		})
	}
	sizes(8, 5)
	c.WaitReconciled()
	sizes(8, 5) // and it stays so: the new pods never become available
	c.MustKubectl("scale", "deployment/web", "--replicas=15")
	sizes(11, 7)
	for _, rs := range replicaSets(t, c, "app=web") {
		if rs.Annotations["deployment.kubernetes.io/desired-replicas"] != "15" || rs.Annotations["deployment.kubernetes.io/max-replicas"] != "18" {
			t.Errorf("%s annotations %v", rs.Name, rs.Annotations)
		}
	}
	// Fixing the image completes the rollout at the new size.
	c.MustApply(webManifest(15, 0, 10, strategy, "nginx:1.8"))
	rolloutStatus(t, c, "web")
	if im := images(c, "app=web"); im["nginx:1.8"] != 15 || len(im) != 1 {
		t.Errorf("images %v", im)
	}
}

// minReadySeconds: a pod counts as available once it has been ready that long.
func TestDeploymentMinReadySeconds(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 2})
	c.MustApply(webManifest(2, 2, 10, "{}", "nginx"))
	rolloutStatus(t, c, "web")
	// Find when the pods became ready and when the replica set first counted them available.
	var lastReady, available time.Time
	kPod, _ := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Resource: "pods"})
	kRS, _ := c.Registry.Catalog().ByGroupResource(schema.GroupResource{Group: "apps", Resource: "replicasets"})
	err := c.Registry.Scan(context.Background(), 0, ^uint64(0), func(rec eventlog.Record) error {
		key := eventlog.KeyOf(rec.Event)
		if rec.Err != nil || rec.Tombstone() {
			return nil
		}
		switch {
		case key.Resource == "pods":
			obj, err := kPod.Decode(rec.Event.GetEncoding(), rec.Event.GetObject())
			if err != nil {
				return err
			}
			if p := obj.(*corev1.Pod); podutils.IsPodReady(p) {
				for _, cd := range p.Status.Conditions {
					if cd.Type == corev1.PodReady && cd.LastTransitionTime.After(lastReady) {
						lastReady = cd.LastTransitionTime.Time
					}
				}
			}
		case key.Resource == "replicasets" && available.IsZero():
			obj, err := kRS.Decode(rec.Event.GetEncoding(), rec.Event.GetObject())
			if err != nil {
				return err
			}
			if obj.(*appsv1.ReplicaSet).Status.AvailableReplicas == 2 {
				available = rec.Event.GetTime().AsTime()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if available.IsZero() || lastReady.IsZero() {
		t.Fatalf("ready at %v, available at %v", lastReady, available)
	}
	// Ready times have a resolution of a second.
	if d := available.Sub(lastReady.Truncate(time.Second)); d < 2*time.Second {
		t.Errorf("available %v after the last pod became ready, before minReadySeconds (2s)", d)
	}
	if d := available.Sub(lastReady); d > 4*time.Second {
		t.Errorf("available only %v after the last pod became ready", d)
	}
}

// revisionHistoryLimit keeps that many old replica sets.
func TestDeploymentRevisionHistoryLimit(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 2})
	for i, image := range []string{"nginx:1", "nginx:2", "nginx:3", "nginx:4"} {
		c.MustApply(webManifest(1, 0, 1, "{}", image))
		rolloutStatus(t, c, "web")
		want := min(i+1, 2)
		c.Eventually(10*time.Second, func() (bool, string) {
			rss := replicaSets(t, c, "app=web")
			return len(rss) == want, rsSummary(rss)
		})
	}
	rss := replicaSets(t, c, "app=web")
	if rss[0].Annotations["deployment.kubernetes.io/revision"] != "3" || rss[1].Annotations["deployment.kubernetes.io/revision"] != "4" {
		t.Errorf("kept %s, want revisions 3 and 4", rsSummary(rss))
	}
}
