package deployment_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// The Kubernetes 201 deployment walkthrough on a node running real containers (containerd, CNI,
// images from a registry on 127.0.0.1): create a Deployment, see its pods run and answer on their
// IPs, change the image and watch the rolling update replace them, delete a pod and see it
// replaced, delete the Deployment and see every container go.
func TestDeploymentOnContainerd(t *testing.T) {
	env := dataplanetest.New(t) // skips without root and containerd, fails under LOGPLANE_REQUIRE_ROOT_TESTS=1
	c := reconcilerstest.Start(t, reconcilerstest.Options{})
	node, err := c.Nodes.AddContainerd(env)
	if err != nil {
		t.Fatal(err)
	}
	manifest := func(image string) string {
		return fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 2
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: hello
        image: %s
        env:
        - {name: HELLO_GREETING, value: %q}
        ports:
        - containerPort: 8080
`, image, image)
	}
	c.MustApply(manifest(env.Hello))
	out, err := c.Kubectl("rollout", "status", "deployment/hello", "--timeout=120s")
	if err != nil || !strings.Contains(out, `deployment "hello" successfully rolled out`) {
		t.Fatalf("rollout status: %v\n%s", err, out)
	}
	answer := func(greeting string) {
		t.Helper()
		c.Eventually(60*time.Second, func() (bool, string) {
			pods := c.LivePods("app=hello")
			if len(pods) != 2 {
				return false, fmt.Sprintf("%d pods", len(pods))
			}
			for _, p := range pods {
				if p.Spec.NodeName != node || p.Status.PodIP == "" {
					return false, fmt.Sprintf("pod %s on %q at %q", p.Name, p.Spec.NodeName, p.Status.PodIP)
				}
				if p.Spec.Containers[0].Image != greeting {
					return false, fmt.Sprintf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
				}
				resp, err := http.Get("http://" + p.Status.PodIP + ":8080/")
				if err != nil {
					return false, err.Error()
				}
				buf := make([]byte, 512)
				n, _ := resp.Body.Read(buf) // a short greeting; a read error shows as a wrong answer
				resp.Body.Close()
				if !strings.Contains(string(buf[:n]), greeting) {
					return false, fmt.Sprintf("pod %s answered %q", p.Name, buf[:n])
				}
			}
			return true, ""
		})
	}
	answer(env.Hello)

	// The same image under another greeting is a new template: a rolling update.
	c.MustApply(strings.Replace(manifest(env.Hello), fmt.Sprintf("value: %q", env.Hello), `value: "v2"`, 1))
	if out, err := c.Kubectl("rollout", "status", "deployment/hello", "--timeout=120s"); err != nil {
		t.Fatalf("rollout status: %v\n%s", err, out)
	}
	c.Eventually(60*time.Second, func() (bool, string) {
		pods := c.LivePods("app=hello")
		v2 := 0
		for _, p := range pods {
			if p.Spec.Containers[0].Env[0].Value == "v2" && p.Status.PodIP != "" {
				if resp, err := http.Get("http://" + p.Status.PodIP + ":8080/"); err == nil {
					buf := make([]byte, 512)
					n, _ := resp.Body.Read(buf) // see above
					resp.Body.Close()
					if strings.Contains(string(buf[:n]), "v2") {
						v2++
					}
				}
			}
		}
		return len(pods) == 2 && v2 == 2, fmt.Sprintf("%d pods, %d answering v2", len(pods), v2)
	})
	if rss := replicaSets(t, c, "app=hello"); len(rss) != 2 || *rss[0].Spec.Replicas != 0 || *rss[1].Spec.Replicas != 2 {
		t.Errorf("replica sets %s", rsSummary(rss))
	}

	victim := c.LivePods("app=hello")[0].Name
	c.MustKubectl("delete", "pod", victim)
	c.Eventually(60*time.Second, func() (bool, string) {
		pods := c.LivePods("app=hello")
		running := 0
		for _, p := range pods {
			if p.Name == victim {
				return false, "the deleted pod is still there"
			}
			if p.Status.Phase == "Running" {
				running++
			}
		}
		return running == 2, fmt.Sprintf("%d running", running)
	})

	c.MustKubectl("delete", "deployment", "hello")
	c.Eventually(60*time.Second, func() (bool, string) {
		out, err := c.Kubectl("get", "rs,pods", "-o", "name")
		if err != nil || out != "" {
			return false, out
		}
		sbs, err := env.Runtime.ListSandboxes(context.Background())
		return err == nil && len(sbs) == 0, fmt.Sprintf("%d sandboxes left: %v", len(sbs), err)
	})
}
