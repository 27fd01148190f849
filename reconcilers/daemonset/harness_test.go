package daemonset_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

func TestMain(m *testing.M) {
	reconcilerstest.MaybeRunProcess()
	os.Exit(m.Run())
}

const (
	imageV1 = "registry.k8s.io/fluentd-elasticsearch:1.20"
	imageV2 = "registry.k8s.io/fluentd-elasticsearch:1.21"
)

// daemonSet is a DaemonSet of one container running image, its pods labelled app=name.
func daemonSet(name, image string, opts ...func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	lbls := map[string]string{"app": name}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: image}}},
			},
		},
	}
	for _, o := range opts {
		o(ds)
	}
	return ds
}

func rolling(maxUnavailable, maxSurge int) func(*appsv1.DaemonSet) {
	return func(ds *appsv1.DaemonSet) {
		u, s := intstr.FromInt32(int32(maxUnavailable)), intstr.FromInt32(int32(maxSurge))
		ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &u, MaxSurge: &s}}
	}
}

func create(t *testing.T, c *reconcilerstest.Cluster, ds *appsv1.DaemonSet) {
	t.Helper()
	if _, err := c.Client.AppsV1().DaemonSets(ds.Namespace).Create(t.Context(), ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func getDS(t *testing.T, c *reconcilerstest.Cluster, name string) *appsv1.DaemonSet {
	t.Helper()
	ds, err := c.Client.AppsV1().DaemonSets("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func setImage(t *testing.T, c *reconcilerstest.Cluster, name, image string) {
	t.Helper()
	c.MustKubectl("set", "image", "ds/"+name, "agent="+image)
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// placement maps each node to the images of the set's live (not being deleted) pods bound to it.
func placement(t *testing.T, c *reconcilerstest.Cluster, name string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range c.LivePods("app=" + name) {
		node := p.Spec.NodeName
		if node == "" {
			node = "<unbound>"
		}
		out[node] = append(out[node], p.Spec.Containers[0].Image)
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

// waitPlacement waits until every node of want runs exactly one ready pod of the set, of the
// image want gives, and no other node runs one.
func waitPlacement(t *testing.T, c *reconcilerstest.Cluster, name string, want map[string]string) {
	t.Helper()
	c.Eventually(90*time.Second, func() (bool, string) {
		pods := c.LivePods("app=" + name)
		got := map[string]string{}
		for _, p := range pods {
			if !ready(&p) {
				return false, fmt.Sprintf("pod %s on %q not ready; placement %v", p.Name, p.Spec.NodeName, placement(t, c, name))
			}
			if _, dup := got[p.Spec.NodeName]; dup {
				return false, fmt.Sprintf("two pods on %s: %v", p.Spec.NodeName, placement(t, c, name))
			}
			got[p.Spec.NodeName] = p.Spec.Containers[0].Image
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return false, fmt.Sprintf("placement %v, want %v", placement(t, c, name), want)
		}
		return true, ""
	})
}

func everywhere(image string, nodes ...string) map[string]string {
	m := map[string]string{}
	for _, n := range nodes {
		m[n] = image
	}
	return m
}

// waitStatus waits until the set's status, with observedGeneration, is want.
func waitStatus(t *testing.T, c *reconcilerstest.Cluster, name string, want appsv1.DaemonSetStatus) {
	t.Helper()
	c.Eventually(60*time.Second, func() (bool, string) {
		ds := getDS(t, c, name)
		want.ObservedGeneration = ds.Generation
		want.CollisionCount = ds.Status.CollisionCount
		got := ds.Status
		got.Conditions = nil
		return fmt.Sprintf("%+v", got) == fmt.Sprintf("%+v", want), fmt.Sprintf("status %+v, want %+v", got, want)
	})
}

func fullStatus(n int32) appsv1.DaemonSetStatus {
	return appsv1.DaemonSetStatus{DesiredNumberScheduled: n, CurrentNumberScheduled: n, NumberReady: n, NumberAvailable: n, UpdatedNumberScheduled: n}
}

// podLog records the pods of one set as a watch sees them, to check what a rollout went through.
type podLog struct {
	mu     sync.Mutex
	pods   map[string]*corev1.Pod
	states []map[string]*corev1.Pod // the pods after each change
	stop   func()
	done   chan struct{}
}

func watchPods(t *testing.T, c *reconcilerstest.Cluster, name string) *podLog {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	opts := metav1.ListOptions{LabelSelector: "app=" + name}
	list, err := c.Client.CoreV1().Pods("default").List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.ResourceVersion = list.ResourceVersion
	w, err := c.Client.CoreV1().Pods("default").Watch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	l := &podLog{pods: map[string]*corev1.Pod{}, stop: func() { cancel(); w.Stop() }, done: make(chan struct{})}
	for i := range list.Items {
		l.pods[list.Items[i].Name] = &list.Items[i]
	}
	go func() {
		defer close(l.done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			l.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(l.pods, p.Name)
			} else {
				l.pods[p.Name] = p
			}
			snap := make(map[string]*corev1.Pod, len(l.pods))
			for k, v := range l.pods {
				snap[k] = v
			}
			l.states = append(l.states, snap)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(l.stop)
	return l
}

// end stops the watch and returns the states it saw.
func (l *podLog) end() []map[string]*corev1.Pod {
	l.stop()
	<-l.done
	return l.states
}

// shape counts, in one state, for each node of nodes, the pods not being deleted, and the
// nodes where none of them is ready (unavailable).
func shape(state map[string]*corev1.Pod, nodes []string) (perNode map[string]int, unavailable []string) {
	perNode = map[string]int{}
	readyOn := map[string]bool{}
	for _, p := range state {
		if p.DeletionTimestamp != nil {
			continue
		}
		node := p.Spec.NodeName
		if node == "" && p.Spec.Affinity != nil && p.Spec.Affinity.NodeAffinity != nil {
			// Not bound yet: the node its affinity names.
			node = p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values[0]
		}
		perNode[node]++
		if ready(p) {
			readyOn[node] = true
		}
	}
	for _, n := range nodes {
		if !readyOn[n] {
			unavailable = append(unavailable, n)
		}
	}
	return perNode, unavailable
}

func describeState(state map[string]*corev1.Pod) string {
	var lines []string
	for _, p := range state {
		lines = append(lines, fmt.Sprintf("%s node=%s image=%s ready=%v deleting=%v", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Image, ready(p), p.DeletionTimestamp != nil))
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}
