package scheduler_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// kubectl runs the real kubectl against s and returns its output; it fails the test if kubectl
// fails.
func kubectl(t *testing.T, s *apiservertest.Server, stdin string, args ...string) string {
	t.Helper()
	out, err := s.Kubectl(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// kubectlUntil runs kubectl until its output matches re, and returns that output.
func kubectlUntil(t *testing.T, s *apiservertest.Server, re string, args ...string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var out string
	eventually(t, 20*time.Second, func() (bool, string) {
		out = kubectl(t, s, "", args...)
		return rx.MatchString(out), "kubectl " + strings.Join(args, " ") + " never matched " + re + ":\n" + out
	})
	return out
}

// podColumns shows each pod's node (the printers of the server-side tables are not all there
// yet; -o wide would show the same in its NODE column).
const podColumns = "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName"

const nodeManifest = `apiVersion: v1
kind: Node
metadata:
  name: node-1
  labels:
    kubernetes.io/hostname: node-1
`

const nodeStatus = `{"status":{"capacity":{"cpu":"2","memory":"4Gi","pods":"110"},"allocatable":{"cpu":"2","memory":"4Gi","pods":"110"},
"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}]}}`

// What a user sees with the real kubectl: a pod scheduled to the only node, with the Scheduled
// event in kubectl describe; after kubectl cordon, a new pod Pending with FailedScheduling as
// Kubernetes words it; after kubectl uncordon, that pod scheduled. The scheduler runs on its own
// projection of the API server's log, as `logplane reconcile` does in its own process.
func TestKubectlScheduling(t *testing.T) {
	apiservertest.NeedKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	newCluster(t, s.Log)

	kubectl(t, s, nodeManifest, "apply", "-f", "-")
	kubectl(t, s, "", "patch", "node", "node-1", "--subresource=status", "--type=merge", "-p", nodeStatus)
	kubectl(t, s, "", "run", "nginx", "--image=nginx", "--restart=Never")
	kubectlUntil(t, s, `(?m)^nginx\s+node-1$`, "get", "pods", "-o", podColumns)
	kubectlUntil(t, s, `(?m)^\s+Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned default/nginx to node-1$`, "describe", "pod", "nginx")

	kubectl(t, s, "", "cordon", "node-1")
	kubectlUntil(t, s, `^true$`, "get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}")
	kubectl(t, s, "", "run", "web", "--image=nginx", "--restart=Never")
	out := kubectlUntil(t, s, `FailedScheduling`, "describe", "pod", "web")
	want := `0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.`
	if !regexp.MustCompile(`(?m)^\s+Warning\s+FailedScheduling\s+\S+\s+default-scheduler\s+` + regexp.QuoteMeta(want) + `$`).MatchString(out) {
		t.Fatalf("describe pod web lacks the FailedScheduling event %q:\n%s", want, out)
	}
	if !regexp.MustCompile(`(?m)^Node:\s+<none>$`).MatchString(out) || !regexp.MustCompile(`(?m)^\s+PodScheduled\s+False\s*$`).MatchString(out) {
		t.Fatalf("describe pod web: want Node <none> and PodScheduled False:\n%s", out)
	}
	kubectlUntil(t, s, `(?m)^web\s+<none>$`, "get", "pods", "-o", podColumns)

	kubectl(t, s, "", "uncordon", "node-1")
	kubectlUntil(t, s, `(?m)^web\s+node-1$`, "get", "pods", "-o", podColumns)
	out = kubectlUntil(t, s, `Successfully assigned default/web to node-1`, "get", "events", "--field-selector", "involvedObject.name=web",
		"-o", "custom-columns=TYPE:.type,REASON:.reason,FROM:.source.component,MESSAGE:.message")
	for _, re := range []string{
		`(?m)^Warning\s+FailedScheduling\s+default-scheduler\s+` + regexp.QuoteMeta(want) + `$`,
		`(?m)^Normal\s+Scheduled\s+default-scheduler\s+Successfully assigned default/web to node-1$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("kubectl get events lacks %s:\n%s", re, out)
		}
	}
}
