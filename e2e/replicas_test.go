package e2e_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logplane/logplane/reconcilers/reconcilerstest/seeds"
)

// podNginxWithLabel is Kubernetes 201's pod-nginx-with-label.yaml (seed 000) on the hello image.
const podNginxWithLabel = `apiVersion: v1
kind: Pod
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  containers:
  - name: nginx
    image: logplane.local/hello:latest
    ports:
    - containerPort: 8080
`

// TestReplicasWalkthroughs replays the seeds' walkthroughs of labels (000), a
// ReplicationController (001) and a ReplicaSet with its exercises (003) on logplane up with real
// containerd.
func TestReplicasWalkthroughs(t *testing.T) {
	m, _ := upMachine(t)

	t.Run("labels", func(t *testing.T) {
		m := m.with(t)
		if out := m.run(time.Minute, podNginxWithLabel, kubectlPath, "create", "-f", "-"); out.err != nil || out.out != "pod/nginx created\n" {
			t.Fatalf("kubectl create -f pod-nginx-with-label.yaml: %s", out)
		}
		m.k("wait", "--for=condition=Ready", "pod/nginx", "--timeout=60s")
		pods := m.get("pods", "-l", "app=nginx")
		if len(pods.rows) != 1 {
			t.Fatalf("kubectl get pods -l app=nginx:\n%s", pods.text)
		}
		expect(t, pods, pods.row(t, "nginx"), map[string]string{"READY": "1/1", "STATUS": "Running"})
		if r := m.kubectl("get", "pods", "-l", "app=apache"); r.err != nil || r.errOut != "No resources found in default namespace.\n" {
			t.Errorf("kubectl get pods -l app=apache: %s", r)
		}
		if out := m.k("delete", "pod", "-l", "app=nginx"); out != "pod \"nginx\" deleted\n" {
			t.Errorf("kubectl delete pod -l app=nginx printed %q", out)
		}
	})

	t.Run("replication controller", func(t *testing.T) {
		m := m.with(t)
		if r := m.run(time.Minute, seeds.NginxMultiNode("logplane.local/hello:latest", 8080), kubectlPath, "create", "-f", "-"); r.err != nil || r.out != "replicationcontroller/nginx-www created\n" {
			t.Fatalf("kubectl create -f nginx-multi-node.yml: %s", r)
		}
		m.waitFor("rc/nginx-www", "{.status.readyReplicas}", "3")
		pods := m.get("pods")
		if len(pods.rows) != 3 {
			t.Fatalf("want 3 pods:\n%s", pods.text)
		}
		for _, p := range pods.rows {
			if !regexp.MustCompile(`^nginx-www-[a-z0-9]{5}$`).MatchString(p["NAME"]) {
				t.Errorf("pod name %q", p["NAME"])
			}
			expect(t, pods, p, map[string]string{"READY": "1/1", "STATUS": "Running", "RESTARTS": "0"})
		}
		desc := m.k("describe", "replicationcontroller")
		for _, want := range []string{
			`(?m)^Name:\s+nginx-www$`,
			`(?m)^Namespace:\s+default$`,
			`(?m)^Selector:\s+app=nginx$`,
			`(?m)^Labels:\s+app=nginx$`,
			`(?m)^Replicas:\s+3 current / 3 desired$`,
			`(?m)^Pods Status:\s+3 Running / 0 Waiting / 0 Succeeded / 0 Failed$`,
			`(?m)^\s+Image:\s+logplane.local/hello:latest$`,
			`(?m)^\s+Normal\s+SuccessfulCreate\s+.*replication-controller\s+Created pod: nginx-www-[a-z0-9]{5}$`,
		} {
			if !regexp.MustCompile(want).MatchString(desc) {
				t.Errorf("describe replicationcontroller: no line matching %s in:\n%s", want, desc)
			}
		}
		// Attempt to delete one of the three pods: a new one starts.
		victim := pods.rows[0]["NAME"]
		m.k("delete", "pod", victim)
		eventually(t, 30*time.Second, func() error {
			pods := m.get("pods")
			running := 0
			for _, p := range pods.rows {
				if p["NAME"] == victim {
					return fmt.Errorf("%s still listed:\n%s", victim, pods.text)
				}
				if p["STATUS"] == "Running" && p["READY"] == "1/1" {
					running++
				}
			}
			if running != 3 {
				return fmt.Errorf("want 3 pods Running:\n%s", pods.text)
			}
			return nil
		})
		// Delete the replication controller: its pods go with it.
		if out := m.k("delete", "replicationcontroller", "nginx-www"); out != "replicationcontroller \"nginx-www\" deleted\n" {
			t.Errorf("delete printed %q", out)
		}
		m.k("wait", "--for=delete", "pod", "-l", "app=nginx", "--timeout=60s")
		if r := m.kubectl("get", "pods"); r.out != "" || r.errOut != "No resources found in default namespace.\n" {
			t.Errorf("kubectl get pods # nothing: %s", r)
		}
	})

	t.Run("replica set", func(t *testing.T) {
		m := m.with(t)
		if out := m.apply(seeds.ReplicaSetDemo("logplane.local/hello:latest", 3)); out != "replicaset.apps/emailservice-replicaset-demo created\n" {
			t.Fatalf("apply printed %q", out)
		}
		m.waitFor("rs/emailservice-replicaset-demo", "{.status.readyReplicas}", "3")
		rs := m.get("rs")
		expect(t, rs, rs.row(t, "emailservice-replicaset-demo"), map[string]string{"DESIRED": "3", "CURRENT": "3", "READY": "3"})
		names := m.podNames("app=emailservice-demo")
		if len(names) != 3 {
			t.Fatalf("pods of the ReplicaSet: %v", names)
		}

		// "Delete one of the pods owned by the ReplicaSet. What happened?"
		m.k("delete", "pod", names[0])
		m.waitFor("rs/emailservice-replicaset-demo", "{.status.readyReplicas}", "3")
		eventually(t, 30*time.Second, func() error {
			now := m.podNames("app=emailservice-demo")
			if len(now) != 3 || slices.Contains(now, names[0]) {
				return fmt.Errorf("pods after deleting %s: %v", names[0], now)
			}
			return nil
		})

		// "A ReplicaSet can be easily scaled up or down by simply updating the .spec.replicas field."
		if out := m.apply(seeds.ReplicaSetDemo("logplane.local/hello:latest", 4)); out != "replicaset.apps/emailservice-replicaset-demo configured\n" {
			t.Fatalf("apply printed %q", out)
		}
		m.waitFor("rs/emailservice-replicaset-demo", "{.status.readyReplicas}", "4")
		m.apply(seeds.ReplicaSetDemo("logplane.local/hello:latest", 3))
		m.waitFor("rs/emailservice-replicaset-demo", "{.status.replicas}", "3")

		// "Create a Pod (separately to the ReplicaSet) with the same label. What happened? Why?"
		// The ReplicaSet adopts it, and then has one pod too many: it deletes one.
		bare := strings.ReplaceAll(podNginxWithLabel, "app: nginx", "app: emailservice-demo")
		bare = strings.Replace(bare, "name: nginx\n", "name: emailservice-bare\n", 1)
		if out := m.apply(bare); out != "pod/emailservice-bare created\n" {
			t.Fatalf("apply printed %q", out)
		}
		eventually(t, 30*time.Second, func() error {
			out := m.k("get", "pods", "-l", "app=emailservice-demo", "-o",
				`jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].name}{"\n"}{end}`)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 {
				return fmt.Errorf("want the ReplicaSet's 3 pods and no more:\n%s", out)
			}
			for _, l := range lines {
				if !strings.HasSuffix(l, " emailservice-replicaset-demo") {
					return fmt.Errorf("a pod the ReplicaSet does not own:\n%s", out)
				}
			}
			return nil
		})
		events := m.k("describe", "rs", "emailservice-replicaset-demo")
		if !regexp.MustCompile(`(?m)^\s+Normal\s+SuccessfulDelete\s+.*replicaset-controller\s+Deleted pod: `).MatchString(events) {
			t.Errorf("describe rs: no SuccessfulDelete event:\n%s", events)
		}

		// "Try to update the image version in the YAML manifest, and perform kubectl apply. What
		// happened? Why?" The template changes; the running pods do not.
		m.apply(seeds.ReplicaSetDemo("logplane.local/hello:v2", 3))
		if img := m.jsonpath("rs/emailservice-replicaset-demo", "{.spec.template.spec.containers[0].image}"); img != "logplane.local/hello:v2" {
			t.Errorf("ReplicaSet template image %q", img)
		}
		images := m.k("get", "pods", "-l", "app=emailservice-demo", "-o", `jsonpath={range .items[*]}{.spec.containers[0].image}{"\n"}{end}`)
		if strings.Contains(images, "hello:v2") {
			t.Errorf("a ReplicaSet replaced its pods on an image change:\n%s", images)
		}

		// "Delete your ReplicaSet before moving on."
		if out := m.k("delete", "replicaset", "emailservice-replicaset-demo"); out != "replicaset.apps \"emailservice-replicaset-demo\" deleted\n" {
			t.Errorf("delete printed %q", out)
		}
		m.k("wait", "--for=delete", "pod", "-l", "app=emailservice-demo", "--timeout=60s")
	})
}
