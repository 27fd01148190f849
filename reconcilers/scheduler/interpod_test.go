package scheduler_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// deploymentManifest is a Deployment of replicas pods labelled app=name whose pod spec ends
// with extra (indented for the pod spec).
func deploymentManifest(name string, replicas int, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: %[2]d
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      containers:
      - name: %[1]s
        image: nginx
%[3]s`, name, replicas, extra)
}

// podsByNode waits until the live pods with label app=name are n bound and pending pending,
// and returns the bound ones' count by node and the names of the pending ones.
func podsByNode(t *testing.T, c *reconcilerstest.Cluster, app string, bound, pending int) (map[string]int, []string) {
	t.Helper()
	var per map[string]int
	var waiting []string
	c.Eventually(30*time.Second, func() (bool, string) {
		per, waiting = map[string]int{}, nil
		n := 0
		for _, p := range c.LivePods("app=" + app) {
			if p.Spec.NodeName == "" {
				waiting = append(waiting, p.Name)
				continue
			}
			per[p.Spec.NodeName]++
			n++
		}
		return n == bound && len(waiting) == pending, fmt.Sprintf("app=%s: bound %v, pending %v; want %d bound, %d pending", app, per, waiting, bound, pending)
	})
	return per, waiting
}

// failedScheduling waits for the FailedScheduling event of pod that kubectl describe shows and
// returns its message.
func failedScheduling(t *testing.T, c *reconcilerstest.Cluster, pod string) string {
	t.Helper()
	rx := regexp.MustCompile(`(?m)^\s+Warning\s+FailedScheduling\s+\S+\s+default-scheduler\s+(.*)$`)
	var msg string
	c.Eventually(30*time.Second, func() (bool, string) {
		out, err := c.Kubectl("describe", "pod", pod)
		if err != nil {
			return false, err.Error()
		}
		m := rx.FindStringSubmatch(out)
		if m == nil {
			return false, "no FailedScheduling event in kubectl describe pod " + pod + ":\n" + out
		}
		msg = m[1]
		return true, ""
	})
	return msg
}

// Through the real API server, with the real kubectl, on simulated nodes: a Deployment whose
// pods may not share a node (required anti-affinity on the hostname) gets one pod per node and
// the surplus Pending with Kubernetes' FailedScheduling message; a Deployment spread over zones
// (DoNotSchedule) stays within its skew, and the pod that would break it waits with the
// message Kubernetes gives.
func TestInterPodConstraintsThroughTheAPI(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 3})

	c.MustApply(deploymentManifest("web", 4, `      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels:
                app: web
            topologyKey: kubernetes.io/hostname
`))
	per, waiting := podsByNode(t, c, "web", 3, 1)
	for node, n := range per {
		if n != 1 {
			t.Errorf("%s holds %d pods of web, want 1 (all: %v)", node, n, per)
		}
	}
	want := "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. " +
		"preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
	if got := failedScheduling(t, c, waiting[0]); got != want {
		t.Errorf("FailedScheduling of %s:\n got %q\nwant %q", waiting[0], got, want)
	}
	out := c.MustKubectl("get", "pod", waiting[0], "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}")
	if out != want {
		t.Errorf("PodScheduled message %q, want %q", out, want)
	}

	// Zones: node-1 and node-2 in zone a, node-3 in zone b.
	for node, zone := range map[string]string{"node-1": "a", "node-2": "a", "node-3": "b"} {
		c.MustKubectl("label", "node", node, corev1.LabelTopologyZone+"="+zone)
	}
	spread := `      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: topology.kubernetes.io/zone
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels:
            app: api
`
	c.MustApply(deploymentManifest("api", 6, spread))
	per, _ = podsByNode(t, c, "api", 6, 0)
	if a, b := per["node-1"]+per["node-2"], per["node-3"]; a != 3 || b != 3 {
		t.Errorf("zone a holds %d pods of api and zone b %d (%v), want 3 and 3", a, b, per)
	}

	// With zone b cordoned, a seventh pod may go to zone a (4 against 3), an eighth may not.
	c.MustKubectl("cordon", "node-3")
	c.MustApply(deploymentManifest("api", 8, spread))
	per, waiting = podsByNode(t, c, "api", 7, 1)
	if a, b := per["node-1"]+per["node-2"], per["node-3"]; a != 4 || b != 3 {
		t.Errorf("zone a holds %d pods of api and zone b %d (%v), want 4 and 3", a, b, per)
	}
	want = "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match pod topology spread constraints. " +
		"preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
	if got := failedScheduling(t, c, waiting[0]); got != want {
		t.Errorf("FailedScheduling of %s:\n got %q\nwant %q", waiting[0], got, want)
	}

	// Uncordoned, zone b takes it.
	c.MustKubectl("uncordon", "node-3")
	per, _ = podsByNode(t, c, "api", 8, 0)
	if a, b := per["node-1"]+per["node-2"], per["node-3"]; a != 4 || b != 4 {
		t.Errorf("zone a holds %d pods of api and zone b %d (%v), want 4 and 4", a, b, per)
	}
}

// A pod whose required affinity selects pods in other namespaces by their namespace's labels
// (namespaceSelector) goes next to them; the scheduler learns the namespaces' labels from the
// log.
func TestAffinityNamespaceSelectorThroughTheAPI(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 3})
	c.MustApply(`apiVersion: v1
kind: Namespace
metadata:
  name: cache
  labels:
    team: storage
`)
	c.MustApply(`apiVersion: v1
kind: Pod
metadata:
  name: memcached
  namespace: cache
  labels:
    app: memcached
spec:
  containers:
  - name: memcached
    image: memcached
`)
	var cacheNode string
	c.Eventually(30*time.Second, func() (bool, string) {
		p, err := c.Client.CoreV1().Pods("cache").Get(context.Background(), "memcached", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		cacheNode = p.Spec.NodeName
		return cacheNode != "", "memcached not bound"
	})
	c.MustApply(deploymentManifest("front", 3, `      affinity:
        podAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels:
                app: memcached
            namespaceSelector:
              matchLabels:
                team: storage
            topologyKey: kubernetes.io/hostname
`))
	per, _ := podsByNode(t, c, "front", 3, 0)
	if per[cacheNode] != 3 {
		t.Errorf("front pods on %v, want all 3 on %s next to memcached", per, cacheNode)
	}

	// Without the namespace's label, nothing selects memcached: a new pod fits nowhere.
	c.MustKubectl("label", "namespace", "cache", "team-")
	c.MustApply(deploymentManifest("front", 4, `      affinity:
        podAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels:
                app: memcached
            namespaceSelector:
              matchLabels:
                team: storage
            topologyKey: kubernetes.io/hostname
`))
	_, waiting := podsByNode(t, c, "front", 3, 1)
	// Nothing matches the term any more, and the pod does not match it itself (it is not
	// memcached), so it waits.
	want := "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. " +
		"preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
	if got := failedScheduling(t, c, waiting[0]); got != want {
		t.Errorf("FailedScheduling of %s:\n got %q\nwant %q", waiting[0], got, want)
	}
}
