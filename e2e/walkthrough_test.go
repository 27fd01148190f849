package e2e_test

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logplane/logplane/reconcilers/reconcilerstest/seeds"
)

// podWithHTTPHealthcheck is Kubernetes 201's pod-with-http-healthcheck.yaml (seed 000) on the
// hello image: /healthz on 8080, checked every second after one (the walkthrough waits 30).
const podWithHTTPHealthcheck = `apiVersion: v1
kind: Pod
metadata:
  name: pod-with-http-healthcheck
spec:
  containers:
  - name: nginx
    image: logplane.local/hello:latest
    # defines the health checking
    livenessProbe:
      # an http probe
      httpGet:
        path: /healthz
        port: 8080
      # length of time to wait for a pod to initialize
      # after pod startup, before applying health checking
      initialDelaySeconds: 1
      periodSeconds: 1
      timeoutSeconds: 1
    ports:
    - containerPort: 8080
`

// TestDeploymentWalkthrough replays the seeds' Deployment walkthroughs on logplane up with real
// containerd: create, rollout status, scale, update the image with apply and with set image,
// a bad image that gets the rollout stuck, rollout undo and history, a deleted pod replaced,
// logs and exec into a Deployment's pod, a liveness probe restarting a container; and the causal
// chain of a Deployment's pod in lpctl history.
func TestDeploymentWalkthrough(t *testing.T) {
	m, _ := upMachine(t)
	const deploy = "deployment/emailservice-deployment-demo"

	// kubectl apply -f k8s/deployment-demo.yaml; kubectl rollout status ...
	if out := m.apply(seeds.DeploymentDemo("logplane.local/hello:latest")); out != "deployment.apps/emailservice-deployment-demo created\n" {
		t.Fatalf("apply printed %q", out)
	}
	rolledOut(t, m.k("rollout", "status", deploy, "--timeout=90s"), "emailservice-deployment-demo")
	deps := m.get("deployments")
	expect(t, deps, deps.row(t, "emailservice-deployment-demo"), map[string]string{"READY": "3/3", "UP-TO-DATE": "3", "AVAILABLE": "3"})
	rs := m.get("rs")
	if len(rs.rows) != 1 || !strings.HasPrefix(rs.rows[0]["NAME"], "emailservice-deployment-demo-") {
		t.Fatalf("kubectl get rs:\n%s", rs.text)
	}
	firstRS := rs.rows[0]["NAME"]
	expect(t, rs, rs.rows[0], map[string]string{"DESIRED": "3", "CURRENT": "3", "READY": "3"})
	pods := m.get("pods", "-l", "app=emailservice-demo", "-o", "wide")
	if len(pods.rows) != 3 {
		t.Fatalf("want 3 pods:\n%s", pods.text)
	}
	for _, p := range pods.rows {
		expect(t, pods, p, map[string]string{"READY": "1/1", "STATUS": "Running", "RESTARTS": "0", "NODE": m.node})
		if !strings.HasPrefix(p["NAME"], firstRS+"-") {
			t.Errorf("pod %s is not named after its ReplicaSet %s", p["NAME"], firstRS)
		}
		if ip, err := netip.ParseAddr(p["IP"]); err != nil || !netip.MustParsePrefix(m.podCIDR).Contains(ip) {
			t.Errorf("pod %s IP %q not in %s", p["NAME"], p["IP"], m.podCIDR)
		}
	}

	t.Run("scale", func(t *testing.T) {
		m := m.with(t)
		if out := m.k("scale", deploy, "--replicas=5"); out != "deployment.apps/emailservice-deployment-demo scaled\n" {
			t.Fatalf("scale printed %q", out)
		}
		rolledOut(t, m.k("rollout", "status", deploy, "--timeout=60s"), "emailservice-deployment-demo")
		deps := m.get("deployments")
		expect(t, deps, deps.row(t, "emailservice-deployment-demo"), map[string]string{"READY": "5/5", "UP-TO-DATE": "5", "AVAILABLE": "5"})
		m.k("scale", deploy, "--replicas=3")
		m.waitFor("deployment/emailservice-deployment-demo", "{.status.replicas}", "3")
		// The two pods scaled away terminate gracefully, then are gone.
		eventually(t, 30*time.Second, func() error {
			if pods := m.get("pods", "-l", "app=emailservice-demo"); len(pods.rows) != 3 {
				return fmt.Errorf("want 3 pods after scaling down:\n%s", pods.text)
			}
			return nil
		})
	})

	t.Run("update the image with apply", func(t *testing.T) {
		m := m.with(t)
		// Kubernetes 201: change the image in the manifest and apply it; watch new pods replace the old.
		if out := m.apply(seeds.DeploymentDemo("logplane.local/hello:v2")); out != "deployment.apps/emailservice-deployment-demo configured\n" {
			t.Fatalf("apply printed %q", out)
		}
		status := m.k("rollout", "status", deploy, "--timeout=90s")
		rolledOut(t, status, "emailservice-deployment-demo")
		if !strings.Contains(status, `Waiting for deployment "emailservice-deployment-demo" rollout to finish: `) {
			t.Errorf("rollout status did not watch the rollout:\n%s", status)
		}
		rs := m.get("rs")
		expect(t, rs, rs.row(t, firstRS), map[string]string{"DESIRED": "0", "CURRENT": "0", "READY": "0"})
		var newRS string
		for _, r := range rs.rows {
			if r["NAME"] != firstRS {
				newRS = r["NAME"]
				expect(t, rs, r, map[string]string{"DESIRED": "3", "CURRENT": "3", "READY": "3"})
			}
		}
		if len(rs.rows) != 2 {
			t.Fatalf("want the old and the new ReplicaSet:\n%s", rs.text)
		}
		// lpctl history of a pod of the new ReplicaSet: the chain from the user's change to the
		// Deployment, through the ReplicaSet, to the pod created, bound and started.
		pod := m.podNames("pod-template-hash=" + strings.TrimPrefix(newRS, "emailservice-deployment-demo-"))[0]
		hist := m.lpctl("history", "pod/"+pod)
		t.Logf("lpctl history pod/%s:\n%s", pod, hist)
		chain := regexp.MustCompile(`(?m)^\d+ +\S+ +(\S+) +(\S+) +\S+\n    (.*)$`).FindAllStringSubmatch(hist, -1)
		var steps []string
		for _, c := range chain {
			steps = append(steps, c[1]+" "+c[2]+": "+c[3])
		}
		want := []*regexp.Regexp{
			regexp.MustCompile(`^user/admin (spec|update|patch): changed deployments.apps/default/emailservice-deployment-demo$`),
			regexp.MustCompile(`^reconciler/deployment \S+: (created|changed) replicasets.apps/default/` + newRS + `$`),
			regexp.MustCompile(`^reconciler/replicaset create: created$`),
			regexp.MustCompile(`^reconciler/scheduler bind: `),
			regexp.MustCompile(`^node/` + m.node + ` status: `),
		}
		i := 0
		for _, s := range steps {
			if i < len(want) && want[i].MatchString(s) {
				i++
			}
		}
		if i < len(want) {
			t.Errorf("lpctl history pod/%s: no step matching %s after the earlier ones in %q", pod, want[i], steps)
		}
		if !strings.Contains(hist, `    + spec.nodeName: "`+m.node+`"`) {
			t.Errorf("lpctl history pod/%s does not show the binding to %s", pod, m.node)
		}
		desc := m.k("describe", deploy)
		for _, want := range []string{
			`(?m)^Annotations:\s+deployment.kubernetes.io/revision: 2$`,
			`(?m)^Replicas:\s+3 desired \| 3 updated \| 3 total \| 3 available \| 0 unavailable$`,
			`(?m)^StrategyType:\s+RollingUpdate$`,
			`(?m)^RollingUpdateStrategy:\s+25% max unavailable, 25% max surge$`,
			`(?m)^\s+Image:\s+logplane.local/hello:v2$`,
			`(?m)^\s+Available\s+True\s+MinimumReplicasAvailable$`,
			`(?m)^\s+Progressing\s+True\s+NewReplicaSetAvailable$`,
			`(?m)^OldReplicaSets:\s+` + firstRS + ` \(0/0 replicas created\)$`,
			`(?m)^NewReplicaSet:\s+` + newRS + ` \(3/3 replicas created\)$`,
			`(?m)^\s+Normal\s+ScalingReplicaSet\s+.*\s+deployment-controller\s+Scaled up replica set ` + newRS + ` to 1$`,
			`(?m)^\s+Normal\s+ScalingReplicaSet\s+.*\s+deployment-controller\s+Scaled down replica set ` + firstRS + ` to 0 from 1$`,
		} {
			if !regexp.MustCompile(want).MatchString(desc) {
				t.Errorf("describe %s: no line matching %s in:\n%s", deploy, want, desc)
			}
		}
	})

	t.Run("set image and rollout undo", func(t *testing.T) {
		m := m.with(t)
		// The tutorial's exercise: an image with a typo gets the rollout stuck; undo it.
		out := m.k("set", "image", deploy, "server=logplane.local/hello:v0.7.1")
		if out != "deployment.apps/emailservice-deployment-demo image updated\n" {
			t.Fatalf("set image printed %q", out)
		}
		stuck := m.kubectl("rollout", "status", deploy, "--timeout=5s")
		if stuck.err == nil || !strings.Contains(stuck.errOut, "error: timed out waiting for the condition") ||
			!strings.Contains(stuck.out, `Waiting for deployment "emailservice-deployment-demo" rollout to finish: 1 out of 3 new replicas have been updated...`) {
			t.Errorf("rollout status of a stuck rollout: %s", stuck)
		}
		var bad string
		eventually(t, 30*time.Second, func() error {
			pods := m.get("pods", "-l", "app=emailservice-demo")
			running, failing := 0, 0
			for _, p := range pods.rows {
				switch p["STATUS"] {
				case "Running":
					running++
				case "ErrImagePull", "ImagePullBackOff":
					failing++
					bad = p["NAME"]
				}
			}
			if running != 3 || failing != 1 {
				return fmt.Errorf("want 3 pods Running and 1 failing to pull its image:\n%s", pods.text)
			}
			return nil
		})
		desc := m.k("describe", "pod", bad)
		if !strings.Contains(desc, `Failed to pull image "logplane.local/hello:v0.7.1"`) {
			t.Errorf("describe of the stuck pod:\n%s", desc)
		}
		hist := m.k("rollout", "history", deploy)
		if !regexp.MustCompile(`(?m)^REVISION\s+CHANGE-CAUSE\n1\s+<none>\n2\s+<none>\n3\s+<none>\n`).MatchString(hist) {
			t.Errorf("rollout history:\n%s", hist)
		}
		if out := m.k("rollout", "undo", deploy); out != "deployment.apps/emailservice-deployment-demo rolled back\n" {
			t.Fatalf("rollout undo printed %q", out)
		}
		rolledOut(t, m.k("rollout", "status", deploy, "--timeout=60s"), "emailservice-deployment-demo")
		if img := m.jsonpath(deploy, "{.spec.template.spec.containers[0].image}"); img != "logplane.local/hello:v2" {
			t.Errorf("image after undo: %q", img)
		}
		m.waitGone("pod/" + bad)

		// kubectl set image, watched by rollout status, to the first revision's image; then back
		// to revision 4 (v2) with --to-revision.
		m.k("set", "image", deploy, "server=logplane.local/hello:latest")
		status := m.k("rollout", "status", deploy, "--timeout=90s")
		rolledOut(t, status, "emailservice-deployment-demo")
		if !strings.Contains(status, "Waiting for deployment") {
			t.Errorf("rollout status did not watch the rollout:\n%s", status)
		}
		rs := m.get("rs")
		expect(t, rs, rs.row(t, firstRS), map[string]string{"DESIRED": "3", "CURRENT": "3", "READY": "3"})
		hist = m.k("rollout", "history", deploy)
		if !regexp.MustCompile(`(?m)^REVISION\s+CHANGE-CAUSE\n3\s+<none>\n4\s+<none>\n5\s+<none>\n`).MatchString(hist) {
			t.Errorf("rollout history after undo and set image (revisions 1 and 2 are now 5 and 4):\n%s", hist)
		}
		if out := m.k("rollout", "undo", deploy, "--to-revision=4"); out != "deployment.apps/emailservice-deployment-demo rolled back\n" {
			t.Fatalf("rollout undo --to-revision printed %q", out)
		}
		rolledOut(t, m.k("rollout", "status", deploy, "--timeout=90s"), "emailservice-deployment-demo")
		if img := m.jsonpath(deploy, "{.spec.template.spec.containers[0].image}"); img != "logplane.local/hello:v2" {
			t.Errorf("image after undo --to-revision=4: %q", img)
		}
	})

	t.Run("a deleted pod is replaced", func(t *testing.T) {
		m := m.with(t)
		before := m.podNames("app=emailservice-demo")
		victim := before[0]
		if out := m.k("delete", "pod", victim); out != fmt.Sprintf("pod %q deleted\n", victim) {
			t.Fatalf("delete printed %q", out)
		}
		rolledOut(t, m.k("rollout", "status", deploy, "--timeout=60s"), "emailservice-deployment-demo")
		m.k("wait", "--for=condition=Ready", "pod", "-l", "app=emailservice-demo", "--timeout=60s")
		after := m.podNames("app=emailservice-demo")
		if len(after) != 3 || slices.Contains(after, victim) {
			t.Fatalf("pods before %v, after deleting %s: %v", before, victim, after)
		}
	})

	t.Run("logs and exec", func(t *testing.T) {
		m := m.with(t)
		pods := m.get("pods", "-l", "app=emailservice-demo", "-o", "wide")
		a, b := pods.rows[0], pods.rows[1]
		// exec into one pod of the Deployment and reach another on its pod IP.
		out := m.k("exec", a["NAME"], "--", "wget", "-qO-", "http://"+b["IP"]+":8080/")
		if out != "Hello from "+b["NAME"]+"\n" {
			t.Errorf("wget from %s to %s: %q", a["NAME"], b["NAME"], out)
		}
		if out := m.k("exec", deploy, "--", "hostname"); !strings.HasPrefix(out, "emailservice-deployment-demo-") {
			t.Errorf("exec deploy/... -- hostname: %q", out)
		}
		// The container's output reaches its log file a moment after the reply.
		request := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(a["IP"]) + `:\d+ GET /$`)
		eventually(t, 10*time.Second, func() error {
			logs := m.k("logs", b["NAME"])
			if !strings.Contains(logs, "hello listening on :8080 as "+b["NAME"]+"\n") || !request.MatchString(logs) {
				return fmt.Errorf("kubectl logs %s does not show the request from %s:\n%s", b["NAME"], a["IP"], logs)
			}
			return nil
		})
		if logs := m.k("logs", deploy, "--tail=1"); strings.Count(logs, "\n") != 1 {
			t.Errorf("kubectl logs %s --tail=1:\n%s", deploy, logs)
		}
	})

	t.Run("liveness probe restarts the container", func(t *testing.T) {
		m := m.with(t)
		m.apply(podWithHTTPHealthcheck)
		m.k("wait", "--for=condition=Ready", "pod/pod-with-http-healthcheck", "--timeout=60s")
		ip := m.jsonpath("pod/pod-with-http-healthcheck", "{.status.podIP}")
		httpPost(t, "http://"+ip+":8080/fail")
		m.waitFor("pod/pod-with-http-healthcheck", "{.status.containerStatuses[0].restartCount}", "1")
		m.k("wait", "--for=condition=Ready", "pod/pod-with-http-healthcheck", "--timeout=60s")
		pods := m.get("pods", "pod-with-http-healthcheck", "-o", "wide")
		row := pods.row(t, "pod-with-http-healthcheck")
		expect(t, pods, row, map[string]string{"READY": "1/1", "STATUS": "Running", "IP": ip})
		if !regexp.MustCompile(`^1 \(\d+s ago\)$`).MatchString(row["RESTARTS"]) {
			t.Errorf("RESTARTS %q, want 1 (…s ago)", row["RESTARTS"])
		}
		desc := m.k("describe", "pod", "pod-with-http-healthcheck")
		for _, want := range []string{
			`(?m)^\s+Warning\s+Unhealthy\s+.*kubelet\s+Liveness probe failed: HTTP probe failed with statuscode: 500$`,
			`(?m)^\s+Normal\s+Killing\s+.*kubelet\s+Container nginx failed liveness probe, will be restarted$`,
			`(?m)^\s+Last State:\s+Terminated$`,
			`(?m)^\s+Restart Count:\s+1$`,
		} {
			if !regexp.MustCompile(want).MatchString(desc) {
				t.Errorf("describe pod: no line matching %s in:\n%s", want, desc)
			}
		}
		m.k("delete", "pod", "pod-with-http-healthcheck")
	})

	if out := m.k("delete", deploy); out != "deployment.apps \"emailservice-deployment-demo\" deleted\n" {
		t.Errorf("delete printed %q", out)
	}
	// The garbage collector removes the ReplicaSets and their pods.
	m.k("wait", "--for=delete", "pod", "-l", "app=emailservice-demo", "--timeout=60s")
	if r := m.kubectl("get", "rs"); r.err != nil || r.out != "" || r.errOut != "No resources found in default namespace.\n" {
		t.Errorf("kubectl get rs after deleting the Deployment: %s", r)
	}
}

// rolledOut checks the last line of kubectl rollout status.
func rolledOut(t *testing.T, out, name string) {
	t.Helper()
	if !strings.HasSuffix(out, fmt.Sprintf("deployment %q successfully rolled out\n", name)) {
		t.Fatalf("rollout status:\n%s", out)
	}
}

// with returns the machine for a subtest: the same cluster, failing that subtest.
func (m *machine) with(t *testing.T) *machine {
	c := *m // shares the processes; only the test differs
	c.t = t
	return &c
}

// waitFor waits until a field of an object (kubectl's jsonpath) has a value.
func (m *machine) waitFor(object, path, value string) {
	m.t.Helper()
	m.k("wait", object, "--for=jsonpath="+path+"="+value, "--timeout=90s")
}

// waitGone waits until an object is deleted.
func (m *machine) waitGone(object string) {
	m.t.Helper()
	m.k("wait", "--for=delete", object, "--timeout=60s")
}
