package deployment_test

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/reconcilerstest/seeds"
)

// emailservice is the image of the workloads tutorial's demo Deployment and ReplicaSet.
const emailservice = "gcr.io/google-samples/microservices-demo/emailservice:"

func replicaSets(t *testing.T, c *reconcilerstest.Cluster, selector string) []appsv1.ReplicaSet {
	t.Helper()
	l, err := c.Client.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(l.Items, func(i, j int) bool {
		return l.Items[i].Annotations["deployment.kubernetes.io/revision"] < l.Items[j].Annotations["deployment.kubernetes.io/revision"]
	})
	return l.Items
}

func deployment(t *testing.T, c *reconcilerstest.Cluster, name string) *appsv1.Deployment {
	t.Helper()
	d, err := c.Client.AppsV1().Deployments("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func rolloutStatus(t *testing.T, c *reconcilerstest.Cluster, name string) {
	t.Helper()
	out, err := c.Kubectl("rollout", "status", "deployment/"+name, "--timeout=60s")
	if err != nil {
		t.Fatalf("rollout status: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("deployment %q successfully rolled out", name); !strings.Contains(out, want) {
		t.Fatalf("rollout status said %q, want %q", out, want)
	}
}

// The workloads tutorial's Deployment walkthrough with the real kubectl: create, rollout status,
// get rs, update the image with apply and watch the rolling update within 25% surge and
// unavailability, describe with the revision annotation, conditions and ScalingReplicaSet
// events, rollout history.
func TestDeploymentRollingUpdate(t *testing.T) {
	c := reconcilerstest.Start(t, reconcilerstest.Options{Nodes: 3})
	c.MustApply(seeds.DeploymentDemo(emailservice + "v0.7.0"))
	rolloutStatus(t, c, "emailservice-deployment-demo")
	rss := replicaSets(t, c, "app=emailservice-demo")
	if len(rss) != 1 {
		t.Fatalf("%d replica sets, want 1", len(rss))
	}
	first := rss[0]
	hash := first.Labels["pod-template-hash"]
	if first.Name != "emailservice-deployment-demo-"+hash || hash == "" {
		t.Errorf("replica set %s, hash %q", first.Name, hash)
	}
	out := c.MustKubectl("get", "rs", "--no-headers")
	if f := strings.Fields(out); len(f) < 4 || f[0] != first.Name || f[1] != "3" || f[2] != "3" || f[3] != "3" {
		t.Errorf("kubectl get rs: %q", out)
	}
	out = c.MustKubectl("get", "deployment", "--no-headers")
	if f := strings.Fields(out); len(f) < 4 || f[1] != "3/3" || f[2] != "3" || f[3] != "3" {
		t.Errorf("kubectl get deployment: %q", out)
	}
	for _, p := range c.LivePods("app=emailservice-demo") {
		if p.Labels["pod-template-hash"] != hash || !strings.HasPrefix(p.Name, first.Name+"-") {
			t.Errorf("pod %s labels %v", p.Name, p.Labels)
		}
	}
	startSeq := c.Store.Applied()

	c.MustApply(seeds.DeploymentDemo(emailservice + "v0.8.0"))
	rolloutStatus(t, c, "emailservice-deployment-demo")
	c.Eventually(30*time.Second, func() (bool, string) {
		im := images(c, "app=emailservice-demo")
		return len(im) == 1 && im["gcr.io/google-samples/microservices-demo/emailservice:v0.8.0"] == 3, fmt.Sprint(im)
	})
	rss = replicaSets(t, c, "app=emailservice-demo")
	if len(rss) != 2 || *rss[0].Spec.Replicas != 0 || *rss[1].Spec.Replicas != 3 {
		t.Fatalf("replica sets after the update: %v", rsSummary(rss))
	}
	oldRS, newRS := rss[0], rss[1]
	if oldRS.Name != first.Name || newRS.Annotations["deployment.kubernetes.io/revision"] != "2" ||
		newRS.Annotations["deployment.kubernetes.io/desired-replicas"] != "3" || newRS.Annotations["deployment.kubernetes.io/max-replicas"] != "4" {
		t.Errorf("replica sets %v, new annotations %v", rsSummary(rss), newRS.Annotations)
	}
	// 25% of 3 is a surge of 1 (rounded up) and no unavailability (rounded down): the replica
	// sets never summed above 4 replicas, and 3 pods stayed ready throughout.
	if minReady := checkRollingBounds(t, c, startSeq, "app=emailservice-demo", 4); minReady < 3 {
		t.Errorf("only %d pods were ready at some point of the rollout, want at least 3", minReady)
	}

	desc := c.MustKubectl("describe", "deployments", "emailservice-deployment-demo")
	for _, want := range []string{
		"Annotations:            deployment.kubernetes.io/revision: 2",
		"Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable",
		"StrategyType:           RollingUpdate",
		"RollingUpdateStrategy:  25% max unavailable, 25% max surge",
		"Image:         gcr.io/google-samples/microservices-demo/emailservice:v0.8.0",
		"Available      True    MinimumReplicasAvailable",
		"Progressing    True    NewReplicaSetAvailable",
		fmt.Sprintf("OldReplicaSets:  %s (0/0 replicas created)", oldRS.Name),
		fmt.Sprintf("NewReplicaSet:   %s (3/3 replicas created)", newRS.Name),
		fmt.Sprintf("Scaled up replica set %s to 3", oldRS.Name),
		fmt.Sprintf("Scaled up replica set %s to 1", newRS.Name),
		fmt.Sprintf("Scaled down replica set %s to 2 from 3", oldRS.Name),
		fmt.Sprintf("Scaled up replica set %s to 3 from 2", newRS.Name),
		fmt.Sprintf("Scaled down replica set %s to 0 from 1", oldRS.Name),
		"deployment-controller",
	} {
		if !strings.Contains(desc, want) {
			t.Errorf("kubectl describe deployment lacks %q:\n%s", want, desc)
		}
	}
	hist := c.MustKubectl("rollout", "history", "deployment/emailservice-deployment-demo")
	if !regexp.MustCompile(`(?s)REVISION\s+CHANGE-CAUSE\s+1\s+<none>\s+2\s+<none>`).MatchString(hist) {
		t.Errorf("rollout history:\n%s", hist)
	}
	d := deployment(t, c, "emailservice-deployment-demo")
	st := d.Status
	if st.ObservedGeneration != d.Generation || st.Replicas != 3 || st.UpdatedReplicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.UnavailableReplicas != 0 {
		t.Errorf("status %+v", st)
	}
	if p := condition(d, appsv1.DeploymentProgressing); p == nil || p.Message != fmt.Sprintf("ReplicaSet %q has successfully progressed.", newRS.Name) {
		t.Errorf("progressing condition %+v", p)
	}
	if a := condition(d, appsv1.DeploymentAvailable); a == nil || a.Message != "Deployment has minimum availability." {
		t.Errorf("available condition %+v", a)
	}
}

// images counts the live pods matching selector by image.
func images(c *reconcilerstest.Cluster, selector string) map[string]int {
	out := map[string]int{}
	for _, p := range c.LivePods(selector) {
		out[p.Spec.Containers[0].Image]++
	}
	return out
}

func condition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func rsSummary(rss []appsv1.ReplicaSet) string {
	var parts []string
	for _, rs := range rss {
		parts = append(parts, fmt.Sprintf("%s(rev %s, %d/%d)", rs.Name, rs.Annotations["deployment.kubernetes.io/revision"], *rs.Spec.Replicas, rs.Status.Replicas))
	}
	return strings.Join(parts, " ")
}
