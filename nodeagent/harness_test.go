package nodeagent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	intstrutil "k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

const kubectlBin = apiservertest.KubectlBin

// cluster is an API server with a client, for agents to join.
type cluster struct {
	t      testing.TB
	api    *apiservertest.Server
	client kubernetes.Interface
}

func newCluster(t testing.TB, opts apiservertest.Options) *cluster {
	t.Helper()
	s := apiservertest.Start(t, opts)
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, api: s, client: cs}
}

// kubectl runs the real kubectl against the cluster.
func (c *cluster) kubectl(stdin string, args ...string) (string, error) {
	c.t.Helper()
	apiservertest.NeedKubectl(c.t)
	return c.api.Kubectl(c.t, stdin, args...)
}

// must runs kubectl, failing the test if it fails or its output lacks any of want.
func (c *cluster) must(stdin string, want []string, args ...string) string {
	c.t.Helper()
	out, err := c.kubectl(stdin, args...)
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			c.t.Fatalf("kubectl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// eventually runs kubectl until its output has every one of want.
func (c *cluster) eventually(d time.Duration, want []string, args ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, err := c.kubectl("", args...)
		ok := err == nil
		for _, w := range want {
			ok = ok && strings.Contains(out, w)
		}
		if ok {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("kubectl %s: after %s, output lacks one of %q (err %v):\n%s", strings.Join(args, " "), d, want, err, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitPod polls the pod until cond holds.
func (c *cluster) waitPod(ns, name string, d time.Duration, what string, cond func(p *corev1.Pod) bool) *corev1.Pod {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var last *corev1.Pod
	for {
		p, err := c.client.CoreV1().Pods(ns).Get(c.t.Context(), name, metav1.GetOptions{})
		if err == nil {
			last = p
			if cond(p) {
				return p
			}
		} else if !apierrors.IsNotFound(err) {
			c.t.Fatalf("get pod %s/%s: %v", ns, name, err)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pod %s/%s: not %s after %s; last: %s", ns, name, what, d, describe(last))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitGone polls until the pod does not exist.
func (c *cluster) waitGone(ns, name string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		p, err := c.client.CoreV1().Pods(ns).Get(c.t.Context(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pod %s/%s still there after %s: %v %s", ns, name, d, err, describe(p))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func describe(p *corev1.Pod) string {
	if p == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s node=%s ip=%s deleting=%v", p.Status.Phase, p.Spec.NodeName, p.Status.PodIP, p.DeletionTimestamp != nil)
	for _, cs := range p.Status.ContainerStatuses {
		fmt.Fprintf(&b, " [%s restarts=%d ready=%v", cs.Name, cs.RestartCount, cs.Ready)
		switch {
		case cs.State.Waiting != nil:
			fmt.Fprintf(&b, " waiting %s: %s", cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Running != nil:
			fmt.Fprintf(&b, " running")
		case cs.State.Terminated != nil:
			fmt.Fprintf(&b, " terminated %s (%d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		}
		b.WriteString("]")
	}
	return b.String()
}

func running(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// events returns the reasons of the Events about a pod, in order.
func (c *cluster) events(ns, name string) []string {
	c.t.Helper()
	evs, err := c.client.CoreV1().Events(ns).List(c.t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, e := range evs.Items {
		out = append(out, e.Reason)
	}
	return out
}

// waitEvent waits until an Event with reason is recorded about the pod.
func (c *cluster) waitEvent(ns, name, reason string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		evs := c.events(ns, name)
		for _, r := range evs {
			if r == reason {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pod %s/%s: no %s event after %s; events: %v", ns, name, reason, d, evs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func podOn(name, node, image string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "main", Image: image}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func intstr(port int) intstrutil.IntOrString { return intstrutil.FromInt32(int32(port)) }

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }
