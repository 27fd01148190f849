package e2e_test

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// k8sForBeginnersDeploy2 is the chapter's k8s-for-beginners-deploy2.yaml with the demo image.
const k8sForBeginnersDeploy2 = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: k8s-for-beginners
spec:
  replicas: 1
  selector:
    matchLabels:
      tier: frontend
  template:
    metadata:
      labels:
        tier: frontend
    spec:
      containers:
      - name: k8s-for-beginners
        image: logplane.local/hello:latest
`

// nodeGrace is how long the node lifecycle reconciler waits for a lease renewal before the node is
// NotReady: Kubernetes' 40 s shortened, still above the agent's renewal interval (10 s).
const nodeGrace = "12s"

// TestPodLifeCycleChapter replays exercise 2.05 of the pod life cycle chapter (seed 004), "How
// Kubernetes Manages a Pod's Life Cycle", with the roles as separate processes: the API server
// (with the log), the controller manager (logplane reconcile --reconcilers workloads,...), the
// scheduler (logplane reconcile --reconcilers scheduler) and the kubelet (logplane agent). It
// stops them all, then brings them back one by one, and checks at each step what kubectl shows,
// as the chapter does. Then the agent catches up on changes made while it was down, and the API
// server (which embeds NATS) restarts under the others, which reconnect.
func TestPodLifeCycleChapter(t *testing.T) {
	m := newMachine(t)
	m.loadImages()
	controllerManager := func() *proc {
		return m.reconcile("controller-manager", "--reconcilers", "workloads,serviceaccounts", "--node-monitor-grace-period", nodeGrace)
	}
	scheduler := func() *proc {
		return m.reconcile("scheduler", "--reconcilers", "scheduler", "--metrics-listen", "127.0.0.1:0")
	}
	api := m.apiserver()
	m.waitAPI()
	cm, sched, kubelet := controllerManager(), scheduler(), m.agent()
	m.waitNodeReady()
	// The controller manager publishes the cluster CA in every namespace, new ones included.
	m.waitRootCA("default")
	m.k("create", "namespace", "chapter")
	m.waitRootCA("chapter")
	// Step 1 deletes what earlier exercises made (a Deployment and a Service); here there is none.

	// Step 4: stop the kubelet.
	kubelet.stop(t)
	// Step 5: after a while, kubectl get node shows the node NotReady.
	eventually(t, 40*time.Second, func() error {
		nodes := m.get("node")
		if s := nodes.row(t, m.node)["STATUS"]; s != "NotReady" {
			return fmt.Errorf("node STATUS %q, want NotReady:\n%s", s, nodes.text)
		}
		return nil
	})
	nodes := m.get("node")
	expect(t, nodes, nodes.row(t, m.node), map[string]string{"STATUS": "NotReady", "ROLES": "<none>", "VERSION": "v1.34.0-logplane"})

	// Step 6: stop kube-scheduler, kube-controller-manager and kube-apiserver.
	sched.stop(t)
	cm.stop(t)
	api.stop(t)

	// Step 8: with no API server, kubectl apply fails (kubectl 1.32 says so while it fetches the
	// OpenAPI schema to validate the manifest), and so does every other command.
	r := m.run(time.Minute, k8sForBeginnersDeploy2, kubectlPath, "apply", "-f", "-")
	if dial := "dial tcp " + m.apiAddr + ": connect: connection refused"; r.err == nil || !strings.Contains(r.errOut, dial) {
		t.Fatalf("kubectl apply with the API server down: want %q, got %s", dial, r)
	}
	r = m.kubectl("get", "node")
	refused := fmt.Sprintf("The connection to the server %s was refused - did you specify the right host or port?\n", m.apiAddr)
	if r.err == nil || !strings.HasSuffix(r.errOut, refused) {
		t.Fatalf("kubectl get node with the API server down: want %q, got %s", refused, r)
	}

	// Steps 9-10: start the API server again; kubectl answers, the node is still NotReady.
	api = m.apiserver()
	m.waitAPI()
	nodes = m.get("node")
	expect(t, nodes, nodes.row(t, m.node), map[string]string{"STATUS": "NotReady"})

	// Step 11: now the Deployment is created.
	if out := m.apply(k8sForBeginnersDeploy2); out != "deployment.apps/k8s-for-beginners created\n" {
		t.Fatalf("apply printed %q", out)
	}
	// Step 12: but nothing acts on it: 0/1, none up to date.
	deploys := m.get("deploy")
	expect(t, deploys, deploys.row(t, "k8s-for-beginners"), map[string]string{"READY": "0/1", "UP-TO-DATE": "0", "AVAILABLE": "0"})
	// Step 13: no pod, and not even a ReplicaSet, while the controller manager is down.
	if r := m.kubectl("get", "pod"); r.err != nil || r.out != "" || r.errOut != "No resources found in default namespace.\n" {
		t.Fatalf("kubectl get pod with the controllers down: %s", r)
	}
	if r := m.kubectl("get", "rs"); r.err != nil || r.out != "" || r.errOut != "No resources found in default namespace.\n" {
		t.Fatalf("kubectl get rs with the controllers down: %s", r)
	}

	// Step 14: start the controller manager.
	cm = controllerManager()
	// Step 15: the Deployment has one up-to-date replica, not ready.
	m.waitFor("deploy/k8s-for-beginners", "{.status.updatedReplicas}", "1")
	deploys = m.get("deploy")
	expect(t, deploys, deploys.row(t, "k8s-for-beginners"), map[string]string{"READY": "0/1", "UP-TO-DATE": "1", "AVAILABLE": "0"})
	// Step 16: its pod exists, Pending.
	pods := m.get("pod")
	if len(pods.rows) != 1 || !regexp.MustCompile(`^k8s-for-beginners-[a-z0-9]+-[a-z0-9]{5}$`).MatchString(pods.rows[0]["NAME"]) {
		t.Fatalf("want one pod of the Deployment:\n%s", pods.text)
	}
	pod := pods.rows[0]["NAME"]
	expect(t, pods, pods.rows[0], map[string]string{"READY": "0/1", "STATUS": "Pending", "RESTARTS": "0"})
	// Step 17: with no node: the scheduler is down.
	pods = m.get("pod", "-o", "wide")
	expect(t, pods, pods.row(t, pod), map[string]string{"STATUS": "Pending", "IP": "<none>", "NODE": "<none>", "NOMINATED NODE": "<none>"})

	// Step 18: start the scheduler.
	sched = scheduler()
	// Step 19: it tried, and reports that no node is available: the only one is NotReady, tainted
	// unreachable.
	failed := regexp.MustCompile(`(?m)^\s+Warning\s+FailedScheduling\s+\S+\s+default-scheduler\s+` +
		regexp.QuoteMeta(`0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. `+
			`preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.`) + `$`)
	var desc string
	eventually(t, 30*time.Second, func() error {
		desc = m.k("describe", "pod", pod)
		if !failed.MatchString(desc) {
			return fmt.Errorf("no FailedScheduling event in:\n%s", desc)
		}
		return nil
	})
	for _, want := range []string{
		`(?m)^Name:\s+` + pod + `$`,
		`(?m)^Namespace:\s+default$`,
		`(?m)^Priority:\s+0$`,
		`(?m)^Node:\s+<none>$`,
		`(?m)^Status:\s+Pending$`,
	} {
		if !regexp.MustCompile(want).MatchString(desc) {
			t.Errorf("describe pod: no line matching %s in:\n%s", want, desc)
		}
	}

	// Step 20: start the kubelet.
	kubelet = m.agent()
	// Step 21: the Deployment is 1/1.
	rolledOut(t, m.k("rollout", "status", "deploy/k8s-for-beginners", "--timeout=60s"), "k8s-for-beginners")
	deploys = m.get("deploy")
	expect(t, deploys, deploys.row(t, "k8s-for-beginners"), map[string]string{"READY": "1/1", "UP-TO-DATE": "1", "AVAILABLE": "1"})
	// Step 22: the pod is Running on the node.
	pods = m.get("pod", "-o", "wide")
	row := pods.row(t, pod)
	expect(t, pods, row, map[string]string{"READY": "1/1", "STATUS": "Running", "RESTARTS": "0", "NODE": m.node})
	if ip, err := netip.ParseAddr(row["IP"]); err != nil || !netip.MustParsePrefix(m.podCIDR).Contains(ip) {
		t.Errorf("pod IP %q not in %s", row["IP"], m.podCIDR)
	}
	if body := httpGet(t, "http://"+row["IP"]+":8080/"); body != "Hello from "+pod+"\n" {
		t.Errorf("the pod answered %q", body)
	}
	m.requireRunning(api, cm, sched, kubelet)
	// What the scheduler's dashboard shows: since it came back it found no node for the pod, then
	// bound it, alone with every partition of the keys.
	metrics := scrape(t, sched)
	if n := sample(t, metrics, "scheduler_schedule_attempts_total", map[string]string{"result": "unschedulable", "profile": "default-scheduler"}); n < 1 {
		t.Errorf("scheduler_schedule_attempts_total{result=unschedulable} = %v, want ≥ 1", n)
	}
	if n := sample(t, metrics, "scheduler_schedule_attempts_total", map[string]string{"result": "scheduled"}); n != 1 {
		t.Errorf("scheduler_schedule_attempts_total{result=scheduled} = %v, want 1", n)
	}
	if n := sample(t, metrics, "controller_runtime_reconcile_total", map[string]string{"controller": "scheduler", "result": "success", "reconcilers": "scheduler"}); n < 2 {
		t.Errorf("controller_runtime_reconcile_total{controller=scheduler,result=success} = %v, want ≥ 2", n)
	}
	if n := sample(t, metrics, "logplane_reconciler_partitions_owned", map[string]string{"reconcilers": "scheduler"}); n != 64 {
		t.Errorf("logplane_reconciler_partitions_owned = %v, want 64", n)
	}
	// And the kubelet's: the agent started since step 20 runs the one pod, which it started.
	metrics = scrape(t, kubelet)
	node := map[string]string{"node": m.node}
	for name, want := range map[string]float64{"kubelet_running_pods": 1, "kubelet_pod_start_duration_seconds": 1, "kubelet_started_pods_total": 1} {
		if n := sample(t, metrics, name, node); n != want {
			t.Errorf("%s = %v, want %v", name, n, want)
		}
	}
	if n := sample(t, metrics, "kubelet_started_containers_total", map[string]string{"node": m.node, "container_type": "container"}); n != 1 {
		t.Errorf("kubelet_started_containers_total = %v, want 1", n)
	}

	t.Run("the agent catches up", func(t *testing.T) {
		m := m.with(t)
		// Stop the kubelet, change things, start it again.
		kubelet.stop(t)
		if out := m.k("delete", "pod", pod, "--wait=false"); out != fmt.Sprintf("pod %q deleted\n", pod) {
			t.Fatalf("delete printed %q", out)
		}
		m.k("scale", "deploy/k8s-for-beginners", "--replicas=2")
		// The deleted pod waits for its node to stop it; its replacements wait for a node.
		eventually(t, 30*time.Second, func() error {
			pods := m.get("pod")
			var terminating, pending int
			for _, p := range pods.rows {
				switch {
				case p["NAME"] == pod && p["STATUS"] == "Terminating":
					terminating++
				case p["NAME"] != pod && p["STATUS"] == "Pending":
					pending++
				}
			}
			if terminating != 1 || pending != 2 {
				return fmt.Errorf("want %s Terminating and 2 new pods Pending:\n%s", pod, pods.text)
			}
			return nil
		})
		kubelet = m.agent()
		m.waitGone("pod/" + pod)
		rolledOut(t, m.k("rollout", "status", "deploy/k8s-for-beginners", "--timeout=60s"), "k8s-for-beginners")
		pods := m.get("pod", "-o", "wide")
		if len(pods.rows) != 2 {
			t.Fatalf("want 2 pods:\n%s", pods.text)
		}
		for _, p := range pods.rows {
			expect(t, pods, p, map[string]string{"READY": "1/1", "STATUS": "Running", "RESTARTS": "0", "NODE": m.node})
		}
		nodes := m.get("node")
		expect(t, nodes, nodes.row(t, m.node), map[string]string{"STATUS": "Ready"})
	})

	t.Run("the API server restarts under the others", func(t *testing.T) {
		m := m.with(t)
		before := m.get("pod", "-o", "wide")
		api.stop(t)
		// The log is down with the API server: the others wait for it.
		if r := m.kubectl("get", "pod"); r.err == nil {
			t.Fatalf("kubectl get pod with the API server down: %s", r)
		}
		// The others notice and retry meanwhile; none of them exits.
		time.Sleep(3 * time.Second)
		m.requireRunning(cm, sched, kubelet)
		api = m.apiserver()
		m.waitAPI()
		// Everyone reconnected: a scale-up is acted on by the controllers, the scheduler and the agent.
		m.k("scale", "deploy/k8s-for-beginners", "--replicas=3")
		rolledOut(t, m.k("rollout", "status", "deploy/k8s-for-beginners", "--timeout=60s"), "k8s-for-beginners")
		deploys := m.get("deploy")
		expect(t, deploys, deploys.row(t, "k8s-for-beginners"), map[string]string{"READY": "3/3", "UP-TO-DATE": "3", "AVAILABLE": "3"})
		after := m.get("pod", "-o", "wide")
		if len(after.rows) != 3 {
			t.Fatalf("want 3 pods:\n%s", after.text)
		}
		for _, p := range after.rows {
			expect(t, after, p, map[string]string{"READY": "1/1", "STATUS": "Running", "RESTARTS": "0", "NODE": m.node})
		}
		// The pods that ran through the restart kept their containers and IPs.
		for _, p := range before.rows {
			expect(t, after, after.row(t, p["NAME"]), map[string]string{"IP": p["IP"], "RESTARTS": "0"})
		}
		// The node renews its lease again.
		m.waitNodeReady()
		m.requireRunning(api, cm, sched, kubelet)
	})

	m.k("delete", "deploy/k8s-for-beginners")
	m.k("wait", "--for=delete", "pod", "-l", "tier=frontend", "--timeout=60s")
}
