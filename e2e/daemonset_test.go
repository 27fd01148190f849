package e2e_test

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

const nodeAgentDaemonSet = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
spec:
  selector:
    matchLabels:
      app: node-agent
  template:
    metadata:
      labels:
        app: node-agent
    spec:
      containers:
      - name: agent
        image: logplane.local/hello:latest
        ports:
        - containerPort: 8080
`

// TestDaemonSet runs a DaemonSet on logplane up with real containerd: its pod runs on the node,
// placed by the scheduler; a template change rolls out (`kubectl rollout status ds`), `rollout
// history` lists both revisions, `rollout undo` brings the first template back; deleting the
// DaemonSet deletes its pod.
func TestDaemonSet(t *testing.T) {
	m, _ := upMachine(t)
	if r := m.run(time.Minute, nodeAgentDaemonSet, kubectlPath, "apply", "-f", "-"); r.err != nil || r.out != "daemonset.apps/node-agent created\n" {
		t.Fatalf("kubectl apply: %s", r)
	}
	rolledOutDS := func() {
		t.Helper()
		if out := m.k("rollout", "status", "ds/node-agent", "--timeout=120s"); !strings.HasSuffix(out, "daemon set \"node-agent\" successfully rolled out\n") {
			t.Fatalf("rollout status:\n%s", out)
		}
	}
	rolledOutDS()
	node := strings.TrimSpace(m.k("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"))
	pod := func() (name, env string) {
		t.Helper()
		var out string
		deadline := time.Now().Add(90 * time.Second)
		for {
			out = strings.TrimSpace(m.k("get", "pods", "-l", "app=node-agent", "-o",
				`jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp} {.spec.containers[0].env[0].value}{"\n"}{end}`))
			lines := strings.Split(out, "\n")
			if f := strings.Fields(out); len(lines) == 1 && len(f) >= 3 && f[1] == node && f[2] == "Running" {
				if len(f) == 4 {
					return f[0], f[3]
				}
				return f[0], ""
			}
			if time.Now().After(deadline) {
				t.Fatalf("want one Running pod on %s:\n%s", node, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	first, _ := pod()
	ds := m.get("ds")
	expect(t, ds, ds.row(t, "node-agent"), map[string]string{"DESIRED": "1", "CURRENT": "1", "READY": "1", "UP-TO-DATE": "1", "AVAILABLE": "1"})

	m.k("set", "env", "ds/node-agent", "GREETING=hi")
	rolledOutDS()
	second, env := pod()
	if second == first || env != "hi" {
		t.Fatalf("after set env: pod %s (was %s), GREETING=%q", second, first, env)
	}
	hist := m.k("rollout", "history", "ds/node-agent")
	if !regexp.MustCompile(`(?s)REVISION\s+CHANGE-CAUSE\s+1\s+<none>\s+2\s+<none>`).MatchString(hist) {
		t.Errorf("rollout history:\n%s", hist)
	}
	if out := m.k("rollout", "undo", "ds/node-agent"); out != "daemonset.apps/node-agent rolled back\n" {
		t.Errorf("rollout undo: %q", out)
	}
	rolledOutDS()
	third, env := pod()
	if third == second || env != "" {
		t.Fatalf("after undo: pod %s (was %s), GREETING=%q", third, second, env)
	}

	m.k("delete", "ds", "node-agent")
	m.waitGone("pod/" + third)
}
