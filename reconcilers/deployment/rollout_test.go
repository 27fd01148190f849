package deployment_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/reconcilerstest/seeds"
)

const imagePrefix = "gcr.io/google-samples/microservices-demo/emailservice:"

func waitImages(t *testing.T, c *reconcilerstest.Cluster, want map[string]int) {
	t.Helper()
	c.Eventually(60*time.Second, func() (bool, string) {
		im := images(c, "app=emailservice-demo")
		if len(im) != len(want) {
			return false, fmt.Sprint(im)
		}
		for k, v := range want {
			if im[k] != v {
				return false, fmt.Sprint(im)
			}
		}
		return true, ""
	})
}

// A bad image: the rollout gets stuck, `kubectl rollout status` reports the exceeded progress
// deadline (Progressing=False, ProgressDeadlineExceeded); `kubectl rollout undo` rolls back, and
// `--to-revision` goes to any revision `kubectl rollout history` lists, with its template.
func TestDeploymentBadImageUndoAndHistory(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 3})
	c.MustApply(seeds.DeploymentDemo(emailservice + "v0.7.0"))
	rolloutStatus(t, c, "emailservice-deployment-demo")
	c.MustKubectl("set", "image", "deployment/emailservice-deployment-demo", "server="+imagePrefix+"v0.8.0")
	c.MustKubectl("annotate", "deployment/emailservice-deployment-demo", "kubernetes.io/change-cause=v0.8.0 please")
	rolloutStatus(t, c, "emailservice-deployment-demo")
	waitImages(t, c, map[string]int{imagePrefix + "v0.8.0": 3})

	// The tutorial's exercise: a typo in the image. With a short deadline the rollout gives up.
	c.MustKubectl("patch", "deployment/emailservice-deployment-demo", "-p", `{"spec":{"progressDeadlineSeconds":3}}`)
	c.MustKubectl("set", "image", "deployment/emailservice-deployment-demo", "server="+imagePrefix+"v0.7.1-doesnotexist")
	c.MustKubectl("annotate", "deployment/emailservice-deployment-demo", "--overwrite", "kubernetes.io/change-cause=typo")
	out, err := c.Kubectl("rollout", "status", "deployment/emailservice-deployment-demo", "--timeout=60s")
	if err == nil || !strings.Contains(err.Error(), `deployment "emailservice-deployment-demo" exceeded its progress deadline`) {
		t.Fatalf("rollout status of a bad image: %q, %v", out, err)
	}
	d := deployment(t, c, "emailservice-deployment-demo")
	p := condition(d, appsv1.DeploymentProgressing)
	if p == nil || p.Status != "False" || p.Reason != "ProgressDeadlineExceeded" || !strings.HasSuffix(p.Message, "has timed out progressing.") {
		t.Errorf("progressing condition %+v", p)
	}
	// maxUnavailable 25% of 3 is 0: the old pods all still run, one new pod fails to pull.
	waitImages(t, c, map[string]int{imagePrefix + "v0.8.0": 3, imagePrefix + "v0.7.1-doesnotexist": 1})
	desc := c.MustKubectl("describe", "deployment", "emailservice-deployment-demo")
	if !regexp.MustCompile(`Progressing\s+False\s+ProgressDeadlineExceeded`).MatchString(desc) {
		t.Errorf("describe shows no exceeded deadline:\n%s", desc)
	}

	hist := c.MustKubectl("rollout", "history", "deployment/emailservice-deployment-demo")
	if !regexp.MustCompile(`(?s)1\s+<none>\s+2\s+v0.8.0 please\s+3\s+typo`).MatchString(hist) {
		t.Errorf("rollout history:\n%s", hist)
	}
	rev2 := c.MustKubectl("rollout", "history", "deployment/emailservice-deployment-demo", "--revision=2")
	if !strings.Contains(rev2, imagePrefix+"v0.8.0") || !strings.Contains(rev2, "pod-template-hash=") {
		t.Errorf("rollout history --revision=2:\n%s", rev2)
	}

	// Undo: back to revision 2's template, which becomes revision 4.
	out = c.MustKubectl("rollout", "undo", "deployment/emailservice-deployment-demo")
	if !strings.Contains(out, "rolled back") {
		t.Errorf("rollout undo said %q", out)
	}
	rolloutStatus(t, c, "emailservice-deployment-demo")
	waitImages(t, c, map[string]int{imagePrefix + "v0.8.0": 3})
	hist = c.MustKubectl("rollout", "history", "deployment/emailservice-deployment-demo")
	if !regexp.MustCompile(`(?s)1\s+<none>\s+3\s+typo\s+4\s+v0.8.0 please`).MatchString(hist) {
		t.Errorf("rollout history after undo:\n%s", hist)
	}
	var back *appsv1.ReplicaSet
	for _, rs := range replicaSets(t, c, "app=emailservice-demo") {
		if rs.Annotations["deployment.kubernetes.io/revision"] == "4" {
			back = &rs
		}
	}
	if back == nil || back.Annotations["deployment.kubernetes.io/revision-history"] != "2" {
		t.Errorf("the rolled back replica set: %+v", back)
	}
	d = deployment(t, c, "emailservice-deployment-demo")
	if d.Annotations["deployment.kubernetes.io/revision"] != "4" || d.Annotations["kubernetes.io/change-cause"] != "v0.8.0 please" {
		t.Errorf("deployment annotations after undo: %v", d.Annotations)
	}
	if p := condition(d, appsv1.DeploymentProgressing); p == nil || p.Reason != "NewReplicaSetAvailable" {
		t.Errorf("progressing condition after undo: %+v", p)
	}

	// Undo to revision 1: the first image.
	c.MustKubectl("rollout", "undo", "deployment/emailservice-deployment-demo", "--to-revision=1")
	rolloutStatus(t, c, "emailservice-deployment-demo")
	waitImages(t, c, map[string]int{imagePrefix + "v0.7.0": 3})
	if _, err := c.Kubectl("rollout", "undo", "deployment/emailservice-deployment-demo", "--to-revision=42"); err == nil || !strings.Contains(err.Error(), "unable to find specified revision 42 in history") {
		t.Errorf("undo to a revision that never was: %v", err)
	}
}

// Pause holds template changes back (no new replica set, Progressing Unknown/DeploymentPaused),
// resume rolls them out at once; restart rolls out the same template again; scale, and
// create deployment, work as on Kubernetes.
func TestDeploymentPauseResumeRestartScale(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 3})
	out := c.MustKubectl("create", "deployment", "emailservice-deployment-demo", "--image="+imagePrefix+"v0.7.0", "--replicas=2")
	if !strings.Contains(out, "deployment.apps/emailservice-deployment-demo created") {
		t.Errorf("create deployment said %q", out)
	}
	// kubectl create deployment labels with app=<name>.
	c.Eventually(30*time.Second, func() (bool, string) {
		n := len(c.LivePods("app=emailservice-deployment-demo"))
		return n == 2, fmt.Sprintf("%d pods", n)
	})
	rolloutStatus(t, c, "emailservice-deployment-demo")

	c.MustKubectl("rollout", "pause", "deployment/emailservice-deployment-demo")
	c.MustKubectl("set", "image", "deployment/emailservice-deployment-demo", "emailservice="+imagePrefix+"v0.8.0")
	c.Eventually(10*time.Second, func() (bool, string) {
		p := condition(deployment(t, c, "emailservice-deployment-demo"), appsv1.DeploymentProgressing)
		return p != nil && p.Reason == "DeploymentPaused" && p.Status == "Unknown", fmt.Sprintf("%+v", p)
	})
	c.WaitReconciled()
	if rss := replicaSets(t, c, "app=emailservice-deployment-demo"); len(rss) != 1 {
		t.Fatalf("a paused deployment rolled out: %s", rsSummary(rss))
	}
	// Scaling a paused deployment scales its replica set.
	c.MustKubectl("scale", "deployment/emailservice-deployment-demo", "--replicas=4")
	c.Eventually(30*time.Second, func() (bool, string) {
		n := len(c.LivePods("app=emailservice-deployment-demo"))
		return n == 4, fmt.Sprintf("%d pods", n)
	})
	c.MustKubectl("rollout", "resume", "deployment/emailservice-deployment-demo")
	rolloutStatus(t, c, "emailservice-deployment-demo")
	c.Eventually(30*time.Second, func() (bool, string) {
		im := images(c, "app=emailservice-deployment-demo")
		return len(im) == 1 && im[imagePrefix+"v0.8.0"] == 4, fmt.Sprint(im)
	})

	c.MustKubectl("rollout", "restart", "deployment/emailservice-deployment-demo")
	rolloutStatus(t, c, "emailservice-deployment-demo")
	rss := replicaSets(t, c, "app=emailservice-deployment-demo")
	if len(rss) != 3 || *rss[2].Spec.Replicas != 4 || rss[2].Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Errorf("after restart: %s", rsSummary(rss))
	}
	c.MustKubectl("scale", "deployment/emailservice-deployment-demo", "--current-replicas=4", "--replicas=1")
	c.Eventually(30*time.Second, func() (bool, string) {
		n := len(c.LivePods("app=emailservice-deployment-demo"))
		return n == 1, fmt.Sprintf("%d pods", n)
	})
	out = c.MustKubectl("get", "deployment", "emailservice-deployment-demo", "--no-headers")
	if f := strings.Fields(out); len(f) < 4 || f[1] != "1/1" {
		t.Errorf("get deployment: %q", out)
	}
}
