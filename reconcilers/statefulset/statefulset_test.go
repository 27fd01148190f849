package statefulset_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/statefulset"
)

const ns = "default"

func manifest(name string, replicas int, policy, strategy, image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  clusterIP: None
  selector: {app: %[1]s}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: %[1]s}
spec:
  serviceName: %[1]s
  replicas: %[2]d
  podManagementPolicy: %[3]s
  updateStrategy: {type: %[4]s}
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers: [{name: c, image: "%[5]s"}]
`, name, replicas, policy, strategy, image)
}

// kubelet plays the node for unscheduled pods: the test says which pods become Running and
// Ready, or lets every pod become so (auto).
type kubelet struct {
	t    *testing.T
	c    *reconcilerstest.Cluster
	mu   sync.Mutex
	auto bool
	work chan string
	// events, in log order: "+name" for a pod created, "-name" for a pod gone
	events []string
}

func newKubelet(t *testing.T, c *reconcilerstest.Cluster, auto bool) *kubelet {
	k := &kubelet{t: t, c: c, auto: auto, work: make(chan string, 10000)}
	cancel := c.Store.Subscribe(func(ch projections.Change) {
		o := ch.New
		if o == nil {
			o = ch.Old
		}
		if o == nil || o.Key.Resource != "pods" || o.Key.Group != "" || o.Key.Namespace != ns {
			return
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		switch {
		case ch.Old == nil && ch.New != nil:
			k.events = append(k.events, "+"+o.Key.Name)
			if k.auto {
				k.work <- o.Key.Name
			}
		case ch.New == nil:
			k.events = append(k.events, "-"+o.Key.Name)
		}
	})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case name := <-k.work:
				k.makeReady(ctx, name)
			}
		}
	}()
	t.Cleanup(func() { stop(); <-done; cancel() })
	return k
}

func (k *kubelet) setAuto(auto bool) {
	k.mu.Lock()
	k.auto = auto
	k.mu.Unlock()
}

func (k *kubelet) ready(name string) { k.work <- name }

func (k *kubelet) makeReady(ctx context.Context, name string) {
	pods := k.c.Client.CoreV1().Pods(ns)
	p, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp != nil {
		return
	}
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		k.t.Logf("kubelet: %s: %v", name, err)
		k.work <- name // a conflict with the reconciler's write: again
	}
}

func (k *kubelet) log() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.events)
}

func start(t *testing.T) *reconcilerstest.Cluster {
	return reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true})
}

func podNames(c *reconcilerstest.Cluster, set string) []string {
	var out []string
	for _, p := range c.Pods(ns, "app="+set) {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

func getSet(t *testing.T, c *reconcilerstest.Cluster, name string) *appsv1.StatefulSet {
	s, err := c.Client.AppsV1().StatefulSets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitPods(t *testing.T, c *reconcilerstest.Cluster, set string, want ...string) {
	t.Helper()
	c.Eventually(60*time.Second, func() (bool, string) {
		got := podNames(c, set)
		return slices.Equal(got, want), fmt.Sprint(got)
	})
}

// images maps each live pod of the set to its image.
func images(c *reconcilerstest.Cluster, set string) map[string]string {
	out := map[string]string{}
	for _, p := range c.Pods(ns, "app="+set) {
		if p.DeletionTimestamp == nil {
			out[p.Name] = p.Spec.Containers[0].Image
		}
	}
	return out
}

func waitImages(t *testing.T, c *reconcilerstest.Cluster, set string, want map[string]string) {
	t.Helper()
	c.Eventually(60*time.Second, func() (bool, string) {
		got := images(c, set)
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprint(got)
	})
}

func waitStatus(t *testing.T, c *reconcilerstest.Cluster, name string, cond func(s *appsv1.StatefulSet) bool) *appsv1.StatefulSet {
	t.Helper()
	var s *appsv1.StatefulSet
	c.Eventually(60*time.Second, func() (bool, string) {
		s = getSet(t, c, name)
		return cond(s), fmt.Sprintf("%+v", s.Status)
	})
	return s
}

// OrderedReady: a pod is created only once the one before it is Running and Ready; the pods
// carry their identity; scaling down removes the highest ordinal first.
func TestOrderedReadyCreatesInOrderAndScalesDownInReverse(t *testing.T) {
	c := start(t)
	k := newKubelet(t, c, false)
	c.MustApply(manifest("web", 3, "OrderedReady", "RollingUpdate", "nginx:1"))

	c.WaitReconciled()
	waitPods(t, c, "web", "web-0")
	p := c.Pods(ns, "app=web")[0]
	if p.Spec.Hostname != "web-0" || p.Spec.Subdomain != "web" || p.Labels[appsv1.StatefulSetPodNameLabel] != "web-0" ||
		p.Labels[appsv1.PodIndexLabel] != "0" || !strings.HasPrefix(p.Labels[appsv1.StatefulSetRevisionLabel], "web-") {
		t.Fatalf("identity of web-0: hostname %q subdomain %q labels %v", p.Spec.Hostname, p.Spec.Subdomain, p.Labels)
	}
	if ref := metav1.GetControllerOf(&p); ref == nil || ref.Kind != "StatefulSet" || ref.Name != "web" {
		t.Fatalf("controller of web-0: %v", ref)
	}
	k.ready("web-0")
	waitPods(t, c, "web", "web-0", "web-1")
	c.WaitReconciled()
	if got := podNames(c, "web"); len(got) != 2 {
		t.Fatalf("web-2 was created before web-1 was ready: %v", got)
	}
	k.ready("web-1")
	waitPods(t, c, "web", "web-0", "web-1", "web-2")
	k.ready("web-2")
	s := waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool {
		return s.Status.ReadyReplicas == 3 && s.Status.AvailableReplicas == 3
	})
	if s.Status.Replicas != 3 || s.Status.CurrentReplicas != 3 || s.Status.UpdatedReplicas != 3 ||
		s.Status.CurrentRevision == "" || s.Status.CurrentRevision != s.Status.UpdateRevision || s.Status.ObservedGeneration != s.Generation {
		t.Fatalf("status %+v", s.Status)
	}

	c.MustKubectl("scale", "sts/web", "--replicas=1")
	waitPods(t, c, "web", "web-0")
	var gone []string
	for _, e := range k.log() {
		if strings.HasPrefix(e, "-") {
			gone = append(gone, e[1:])
		}
	}
	if !slices.Equal(gone, []string{"web-2", "web-1"}) {
		t.Fatalf("scale down removed %v, want web-2 then web-1", gone)
	}
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.Replicas == 1 && s.Status.ReadyReplicas == 1 })
}

// Parallel: every missing pod is created at once, none waiting for another to be Ready.
func TestParallelCreatesAllPods(t *testing.T) {
	c := start(t)
	newKubelet(t, c, false)
	c.MustApply(manifest("db", 5, "Parallel", "RollingUpdate", "nginx:1"))
	waitPods(t, c, "db", "db-0", "db-1", "db-2", "db-3", "db-4")
	s := waitStatus(t, c, "db", func(s *appsv1.StatefulSet) bool { return s.Status.Replicas == 5 })
	if s.Status.ReadyReplicas != 0 {
		t.Fatalf("status %+v", s.Status)
	}
	// Scale down in parallel too: no pod need be ready.
	c.MustKubectl("scale", "sts/db", "--replicas=2")
	waitPods(t, c, "db", "db-0", "db-1")
}

// RollingUpdate with a partition updates only the ordinals at or above it, from the highest
// down; lowering the partition finishes the rollout; `kubectl rollout status`, `history` and
// `undo` work on the set's ControllerRevisions.
func TestRollingUpdatePartitionHistoryAndUndo(t *testing.T) {
	c := start(t)
	newKubelet(t, c, true)
	c.MustApply(manifest("web", 3, "OrderedReady", "RollingUpdate", "nginx:1"))
	if out, err := c.Kubectl("rollout", "status", "sts/web", "--timeout=60s"); err != nil {
		t.Fatalf("rollout status: %v\n%s", err, out)
	}
	first := getSet(t, c, "web").Status.CurrentRevision
	c.Eventually(30*time.Second, func() (bool, string) {
		out := c.MustKubectl("describe", "sts/web")
		return strings.Contains(out, "3 Running / 0 Waiting / 0 Succeeded / 0 Failed") &&
			strings.Contains(out, "create Pod web-2 in StatefulSet web successful"), out
	})

	c.MustKubectl("patch", "sts/web", "-p", `{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}`)
	c.MustKubectl("set", "image", "sts/web", "c=nginx:2")
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:1", "web-1": "nginx:1", "web-2": "nginx:2"})
	out, err := c.Kubectl("rollout", "status", "sts/web", "--timeout=60s")
	if err != nil || !strings.Contains(out, "partitioned roll out complete: 1 new pods have been updated") {
		t.Fatalf("rollout status with a partition: %v\n%s", err, out)
	}
	s := getSet(t, c, "web")
	if s.Status.UpdatedReplicas != 1 || s.Status.CurrentReplicas != 2 || s.Status.CurrentRevision != first || s.Status.UpdateRevision == first {
		t.Fatalf("status with a partition %+v", s.Status)
	}
	second := s.Status.UpdateRevision

	c.MustKubectl("patch", "sts/web", "-p", `{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}`)
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:2", "web-1": "nginx:2", "web-2": "nginx:2"})
	s = waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool {
		return s.Status.CurrentRevision == second && s.Status.UpdatedReplicas == 3 && s.Status.ReadyReplicas == 3
	})
	if s.Status.CurrentReplicas != 3 {
		t.Fatalf("status after the rollout %+v", s.Status)
	}

	out = c.MustKubectl("rollout", "history", "sts/web")
	if !regexp.MustCompile(`(?m)^1\s+<none>\n2\s+<none>`).MatchString(out) {
		t.Fatalf("rollout history:\n%s", out)
	}
	if out := c.MustKubectl("rollout", "history", "sts/web", "--revision=1"); !strings.Contains(out, "nginx:1") {
		t.Fatalf("rollout history --revision=1:\n%s", out)
	}
	if out := c.MustKubectl("rollout", "undo", "sts/web"); !strings.Contains(out, "rolled back") {
		t.Fatalf("rollout undo: %s", out)
	}
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:1", "web-1": "nginx:1", "web-2": "nginx:1"})
	s = waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool {
		return s.Status.CurrentRevision == first && s.Status.UpdateRevision == first && s.Status.ReadyReplicas == 3
	})
	// The rollback renumbers the first revision rather than making a new one.
	revs, err := c.Client.AppsV1().ControllerRevisions(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, r := range revs.Items {
		got[r.Name] = r.Revision
	}
	if len(got) != 2 || got[first] != 3 || got[second] != 2 {
		t.Fatalf("revisions after undo: %v (first %s, second %s)", got, first, second)
	}
	if out := c.MustKubectl("rollout", "history", "sts/web"); !regexp.MustCompile(`(?m)^2\s+<none>\n3\s+<none>`).MatchString(out) {
		t.Fatalf("rollout history after undo:\n%s", out)
	}
	c.MustKubectl("rollout", "undo", "sts/web", "--to-revision=2")
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:2", "web-1": "nginx:2", "web-2": "nginx:2"})
	// rollout restart: a new revision (the template's restartedAt annotation) replaces every pod.
	c.MustKubectl("rollout", "restart", "sts/web")
	c.Eventually(60*time.Second, func() (bool, string) {
		n := 0
		for _, p := range c.Pods(ns, "app=web") {
			if p.Annotations["kubectl.kubernetes.io/restartedAt"] != "" && p.DeletionTimestamp == nil {
				n++
			}
		}
		return n == 3, fmt.Sprintf("%d pods restarted", n)
	})
	if out, err := c.Kubectl("rollout", "status", "sts/web", "--timeout=60s"); err != nil {
		t.Fatalf("rollout status after restart: %v\n%s", err, out)
	}
}

// OnDelete: a template change replaces no pod until the user deletes one.
func TestOnDelete(t *testing.T) {
	c := start(t)
	newKubelet(t, c, true)
	c.MustApply(manifest("web", 2, "OrderedReady", "OnDelete", "nginx:1"))
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.ReadyReplicas == 2 })
	c.MustKubectl("set", "image", "sts/web", "c=nginx:2")
	s := waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.ObservedGeneration == s.Generation })
	c.WaitReconciled()
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:1", "web-1": "nginx:1"})
	if s.Status.UpdatedReplicas != 0 || s.Status.CurrentReplicas != 2 || s.Status.CurrentRevision == s.Status.UpdateRevision {
		t.Fatalf("status %+v", s.Status)
	}
	c.MustKubectl("delete", "pod", "web-1")
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:1", "web-1": "nginx:2"})
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.UpdatedReplicas == 1 && s.Status.ReadyReplicas == 2 })
}

// runReconciler runs the StatefulSet reconciler alone on its own engine until stop is called,
// as a `logplane reconcile` process would, and returns stop, which waits for it to end.
func runReconciler(t *testing.T, c *reconcilerstest.Cluster) (stop func()) {
	e := engine.New(c.Store, engine.Options{Logger: c.Logger, Registry: c.Registry, Host: "test"})
	if _, err := statefulset.New(e, statefulset.Config{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// A reconciler stopped in the middle of a rollout (its process context cancelled) and started
// again finishes it: every ordinal is replaced exactly once, and no pod is created twice.
func TestRestartMidRollout(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true, NoReconcilers: true})
	k := newKubelet(t, c, true)
	stop := runReconciler(t, c)
	c.MustApply(manifest("web", 4, "OrderedReady", "RollingUpdate", "nginx:1"))
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.ReadyReplicas == 4 })

	// The updated web-3 does not become ready: the rollout stops there, and so does the reconciler.
	k.setAuto(false)
	c.MustKubectl("set", "image", "sts/web", "c=nginx:2")
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:1", "web-1": "nginx:1", "web-2": "nginx:1", "web-3": "nginx:2"})
	stop()

	k.setAuto(true)
	k.ready("web-3")
	runReconciler(t, c)
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:2", "web-1": "nginx:2", "web-2": "nginx:2", "web-3": "nginx:2"})
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool {
		return s.Status.ReadyReplicas == 4 && s.Status.UpdatedReplicas == 4 && s.Status.CurrentRevision == s.Status.UpdateRevision
	})
	created, deleted := map[string]int{}, map[string]int{}
	for _, e := range k.log() {
		if e[0] == '+' {
			created[e[1:]]++
		} else {
			deleted[e[1:]]++
		}
	}
	for i := range 4 {
		name := fmt.Sprintf("web-%d", i)
		if created[name] != 2 || deleted[name] != 1 {
			t.Errorf("%s created %d times and deleted %d times, want 2 and 1 (log %v)", name, created[name], deleted[name], k.log())
		}
	}
}

// volumeClaimTemplates give each ordinal its claim, <template>-<set>-<ordinal>, created before
// its pod; with WhenScaled=Delete and WhenDeleted=Delete the claims carry the owners the garbage
// collector follows: the claim of a scaled-down ordinal goes with its pod, the others with the set.
func TestVolumeClaimTemplatesAndRetention(t *testing.T) {
	c := start(t)
	newKubelet(t, c, true)
	c.MustApply(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: data}
spec:
  serviceName: data
  replicas: 2
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Delete}
  selector: {matchLabels: {app: data}}
  template:
    metadata: {labels: {app: data}}
    spec:
      containers: [{name: c, image: nginx, volumeMounts: [{name: vol, mountPath: /data}]}]
  volumeClaimTemplates:
  - metadata: {name: vol}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`)
	ctx := context.Background()
	claims := c.Client.CoreV1().PersistentVolumeClaims(ns)
	set := waitStatus(t, c, "data", func(s *appsv1.StatefulSet) bool { return s.Status.ReadyReplicas == 2 })
	for i := range 2 {
		name := fmt.Sprintf("vol-data-%d", i)
		pvc, err := claims.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("claim %s: %v", name, err)
		}
		if pvc.Labels["app"] != "data" || len(pvc.OwnerReferences) != 1 || pvc.OwnerReferences[0].UID != set.UID {
			t.Fatalf("claim %s: labels %v owners %+v", name, pvc.Labels, pvc.OwnerReferences)
		}
		pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, fmt.Sprintf("data-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v := pod.Spec.Volumes[0]; v.Name != "vol" || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != name {
			t.Fatalf("pod volume %+v", v)
		}
	}
	c.MustKubectl("scale", "sts/data", "--replicas=1")
	c.Eventually(60*time.Second, func() (bool, string) {
		_, err := claims.Get(ctx, "vol-data-1", metav1.GetOptions{})
		return err != nil, "the claim of the scaled-down ordinal is still there"
	})
	if _, err := claims.Get(ctx, "vol-data-0", metav1.GetOptions{}); err != nil {
		t.Fatalf("the claim of the ordinal kept: %v", err)
	}
	c.MustKubectl("delete", "sts/data")
	c.Eventually(60*time.Second, func() (bool, string) {
		_, err := claims.Get(ctx, "vol-data-0", metav1.GetOptions{})
		return err != nil, "the claim outlives its set"
	})
}

// minReadySeconds: with OrderedReady the next pod waits until the one before has been Ready for
// minReadySeconds; availableReplicas counts the pods that have.
func TestMinReadySeconds(t *testing.T) {
	c := start(t)
	newKubelet(t, c, true)
	c.MustApply(strings.Replace(manifest("web", 2, "OrderedReady", "RollingUpdate", "nginx:1"), "  replicas: 2\n", "  replicas: 2\n  minReadySeconds: 2\n", 1))
	s := waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.AvailableReplicas == 2 })
	if s.Status.ReadyReplicas != 2 {
		t.Fatalf("status %+v", s.Status)
	}
	var ready0 time.Time
	var created1 time.Time
	for _, p := range c.Pods(ns, "app=web") {
		switch p.Name {
		case "web-0":
			ready0 = p.Status.Conditions[0].LastTransitionTime.Time
		case "web-1":
			created1 = p.CreationTimestamp.Time
		}
	}
	// Timestamps have whole seconds: created1 is at least ready0 + 2 s, less the truncation.
	if created1.Sub(ready0) < time.Second {
		t.Fatalf("web-1 created %v after web-0 became ready, want at least minReadySeconds", created1.Sub(ready0))
	}
}

// maxUnavailable: a rolling update replaces up to maxUnavailable pods at once, from the highest
// ordinal down, and goes on only as they become available.
func TestRollingUpdateMaxUnavailable(t *testing.T) {
	c := start(t)
	k := newKubelet(t, c, true)
	c.MustApply(strings.Replace(manifest("web", 4, "Parallel", "RollingUpdate", "nginx:1"),
		"  updateStrategy: {type: RollingUpdate}\n", "  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 2}}\n", 1))
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.ReadyReplicas == 4 })
	k.setAuto(false)
	c.MustKubectl("set", "image", "sts/web", "c=nginx:2")
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:1", "web-1": "nginx:1", "web-2": "nginx:2", "web-3": "nginx:2"})
	c.WaitReconciled()
	if got := images(c, "web"); got["web-0"] != "nginx:1" || got["web-1"] != "nginx:1" {
		t.Fatalf("more than maxUnavailable pods replaced before any was ready: %v", got)
	}
	k.setAuto(true)
	k.ready("web-2")
	k.ready("web-3")
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:2", "web-1": "nginx:2", "web-2": "nginx:2", "web-3": "nginx:2"})
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool {
		return s.Status.ReadyReplicas == 4 && s.Status.UpdatedReplicas == 4 && s.Status.CurrentRevision == s.Status.UpdateRevision
	})
}

func TestMain(m *testing.M) {
	reconcilerstest.MaybeRunProcess()
	os.Exit(m.Run())
}

// Two reconcile processes share the work; the one reconciling the set is killed with SIGKILL in
// the middle of a rollout. The other takes its partitions over and finishes the rollout: every
// ordinal is replaced exactly once, no pod is created twice.
func TestKillReconcileProcessMidRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two reconcile processes")
	}
	c := reconcilerstest.Start(t, reconcilerstest.Options{Listen: true, NoReconcilers: true, NoScheduler: true})
	procs := []*reconcilerstest.Process{
		reconcilerstest.StartProcess(t, c.LogURL(), "r1", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(t)}),
		reconcilerstest.StartProcess(t, c.LogURL(), "r2", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(t)}),
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		a, b := procs[0].Stats().Owned, procs[1].Stats().Owned
		return a+b == 64 && a > 0 && b > 0, fmt.Sprint(a, b)
	})
	k := newKubelet(t, c, true)
	c.MustApply(manifest("web", 4, "OrderedReady", "RollingUpdate", "nginx:1"))
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.ReadyReplicas == 4 })

	k.setAuto(false)
	c.MustKubectl("set", "image", "sts/web", "c=nginx:2")
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:1", "web-1": "nginx:1", "web-2": "nginx:1", "web-3": "nginx:2"})
	var victim *reconcilerstest.Process
	c.Eventually(10*time.Second, func() (bool, string) {
		for _, p := range procs {
			if p.Stats().Keys[statefulset.Name] > 0 {
				victim = p
				return true, ""
			}
		}
		return false, "no process has reported reconciling the set"
	})
	victim.Kill()

	k.setAuto(true)
	k.ready("web-3")
	waitImages(t, c, "web", map[string]string{"web-0": "nginx:2", "web-1": "nginx:2", "web-2": "nginx:2", "web-3": "nginx:2"})
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool {
		return s.Status.ReadyReplicas == 4 && s.Status.UpdatedReplicas == 4 && s.Status.CurrentRevision == s.Status.UpdateRevision
	})
	created, deleted := map[string]int{}, map[string]int{}
	for _, e := range k.log() {
		if e[0] == '+' {
			created[e[1:]]++
		} else {
			deleted[e[1:]]++
		}
	}
	for i := range 4 {
		name := fmt.Sprintf("web-%d", i)
		if created[name] != 2 || deleted[name] != 1 {
			t.Errorf("%s created %d times and deleted %d times, want 2 and 1 (log %v)", name, created[name], deleted[name], k.log())
		}
	}
}

// A pod that failed (evicted, say) is deleted and made again under the same name.
func TestFailedPodIsReplaced(t *testing.T) {
	c := start(t)
	newKubelet(t, c, true)
	c.MustApply(manifest("web", 2, "OrderedReady", "RollingUpdate", "nginx:1"))
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.ReadyReplicas == 2 })
	ctx := context.Background()
	pods := c.Client.CoreV1().Pods(ns)
	p, err := pods.Get(ctx, "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := p.UID
	p.Status.Phase = corev1.PodFailed
	p.Status.Reason = "Evicted"
	p.Status.Conditions = nil
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Eventually(60*time.Second, func() (bool, string) {
		p, err := pods.Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.UID != old && p.Status.Phase == corev1.PodRunning, fmt.Sprintf("web-0 %s %s", p.UID, p.Status.Phase)
	})
	waitStatus(t, c, "web", func(s *appsv1.StatefulSet) bool { return s.Status.ReadyReplicas == 2 })
}
