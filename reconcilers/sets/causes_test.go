package sets_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/apiserver/logplaneapi"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// link is one event of a cause chain.
type link struct {
	seq      uint64
	actor    string // kind/name
	resource string
	name     string
	reason   string
}

func (l link) String() string {
	return fmt.Sprintf("%d %s %s %s/%s", l.seq, l.actor, l.reason, l.resource, l.name)
}

// chain follows the causes from the event at seq back to one with no cause.
func chain(t *testing.T, c *reconcilerstest.Cluster, seq uint64) []link {
	t.Helper()
	var out []link
	for seq != 0 && len(out) < 64 {
		var rec eventlog.Record
		err := c.Log.Replay(context.Background(), eventlog.Filter{}, seq-1, seq, func(r eventlog.Record) error { rec = r; return nil })
		if err != nil || rec.Event == nil {
			t.Fatalf("reading the event at %d: %v", seq, err)
		}
		ev := rec.Event
		kind := strings.ToLower(strings.TrimPrefix(ev.GetActor().GetKind().String(), "ACTOR_KIND_"))
		out = append(out, link{seq: rec.Seq, actor: kind + "/" + ev.GetActor().GetName(), resource: ev.GetRef().GetResource(),
			name: ev.GetRef().GetName(), reason: ev.GetReason()})
		if ev.GetCause() >= seq {
			t.Fatalf("event %d names a later cause %d", seq, ev.GetCause())
		}
		seq = ev.GetCause()
	}
	return out
}

// expect checks that the chain holds these steps in order (other events may come between, such
// as earlier status writes of the same node).
func expect(t *testing.T, got []link, want []func(link) bool, names []string) {
	t.Helper()
	i := 0
	for _, l := range got {
		if i < len(want) && want[i](l) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("the cause chain lacks %q (after %v):\n%v", names[i], names[:i], got)
	}
}

func is(actor, resource, reason string) func(link) bool {
	return func(l link) bool {
		return strings.HasPrefix(l.actor, actor) && l.resource == resource && (reason == "" || l.reason == reason)
	}
}

// Every write records the event it acted on, so that from a running pod the log leads back to
// the user's command: the node started it because the scheduler bound it, because the replica
// set created it, because the deployment sized the replica set, because the user created (then
// scaled) the deployment. The pod's history, as lpctl history shows it, carries the causes.
func TestCauseChain(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 2})
	c.MustKubectl("create", "deployment", "web", "--image=nginx", "--replicas=1")
	running := func(n int) []corev1.Pod {
		t.Helper()
		var out []corev1.Pod
		c.Eventually(30*time.Second, func() (bool, string) {
			l, err := c.Client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, err.Error()
			}
			out = out[:0]
			for _, p := range l.Items {
				if p.Status.Phase == corev1.PodRunning {
					out = append(out, p)
				}
			}
			return len(out) == n, fmt.Sprintf("%d running", len(out))
		})
		return out
	}
	first := running(1)[0]
	steps := []func(link) bool{
		is("node/", "pods", "status"),
		is("reconciler/scheduler", "pods", "bind"),
		is("reconciler/replicaset", "pods", "create"),
		is("reconciler/deployment", "replicasets", "create"),
		is("user/", "deployments", "create"),
	}
	names := []string{"node started the pod", "scheduler bound it", "replicaset created it", "deployment created the replica set", "user created the deployment"}
	got := chain(t, c, runningSeq(t, c, first.Name))
	expect(t, got, steps, names)
	if last := got[len(got)-1]; !strings.HasPrefix(last.actor, "user/") {
		t.Errorf("the chain ends at %v, not at the user's command", last)
	}

	// Scale: the new pod's chain ends at the user's scale.
	c.MustKubectl("scale", "deployment/web", "--replicas=2")
	var second corev1.Pod
	for _, p := range running(2) {
		if p.Name != first.Name {
			second = p
		}
	}
	got = chain(t, c, runningSeq(t, c, second.Name))
	expect(t, got, []func(link) bool{
		is("node/", "pods", "status"),
		is("reconciler/scheduler", "pods", "bind"),
		is("reconciler/replicaset", "pods", "create"),
		is("reconciler/deployment", "replicasets", "spec"),
		is("user/", "deployments", "scale"),
	}, []string{"node started the pod", "scheduler bound it", "replicaset created it", "deployment scaled the replica set", "user scaled the deployment"})
}

// runningSeq reads the pod's history through the API server's history endpoint (what lpctl
// history shows) and returns the resourceVersion of the revision that made it Running, checking
// that each revision after the first names a cause.
func runningSeq(t *testing.T, c *reconcilerstest.Cluster, pod string) uint64 {
	t.Helper()
	raw, err := c.Client.CoreV1().RESTClient().Get().AbsPath(logplaneapi.HistoryPath("/api/v1/namespaces/default/pods/" + pod)).DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var h logplaneapi.History
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	for _, rev := range h.Items {
		if rev.Cause == "" {
			t.Errorf("revision %s (%s by %s/%s) of pod %s names no cause", rev.ResourceVersion, rev.Reason, rev.Actor.Kind, rev.Actor.Name, pod)
		}
		var p corev1.Pod
		if err := json.Unmarshal(rev.Object, &p); err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodRunning {
			var seq uint64
			fmt.Sscan(rev.ResourceVersion, &seq)
			return seq
		}
	}
	t.Fatalf("pod %s never ran in its history", pod)
	return 0
}
