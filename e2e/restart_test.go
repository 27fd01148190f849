package e2e_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestUpKill9 is restart safety end to end: kill -9 of `logplane up` with pods running, then
// `logplane up` again on the same data directory. The containerd that `up` ran for itself dies
// with it, but not the shims: the pods answer on. Every object is back, the running containers
// are adopted (same container, same pod IP, RESTARTS unchanged) and the cluster works on.
func TestUpKill9(t *testing.T) {
	m, up := upMachine(t)

	m.k("create", "deployment", "web", "--image=logplane.local/hello:latest", "--replicas=2")
	m.k("run", "hello", "--image=logplane.local/hello:latest", "--port", "8080")
	m.k("create", "configmap", "settings", "--from-literal=greeting=hi")
	rolledOut(t, m.k("rollout", "status", "deployment/web", "--timeout=60s"), "web")
	m.k("wait", "--for=condition=Ready", "pod/hello", "--timeout=60s")
	objects := func() []string {
		out := m.k("get", "namespaces,serviceaccounts,configmaps,deployments,replicasets,pods,nodes", "-A", "-o", "name")
		names := strings.Fields(out)
		slices.Sort(names)
		return names
	}
	before := objects()
	type podState struct{ ip, containerID, restarts, startedAt, uid string }
	state := func() map[string]podState {
		out := m.k("get", "pods", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.running.startedAt} {.metadata.uid}{"\n"}{end}`)
		s := map[string]podState{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) != 6 {
				t.Fatalf("pod state line %q", line)
			}
			s[f[0]] = podState{f[1], f[2], f[3], f[4], f[5]}
		}
		return s
	}
	pods := state()
	if len(pods) != 3 {
		t.Fatalf("want 3 pods, got %v", pods)
	}
	podsWide := m.get("pods", "-o", "wide")
	daemons, shims := m.containerdPIDs(), m.shims()
	if len(daemons) != 1 || len(shims) != 3 {
		t.Fatalf("logplane's containerd: %v, its shims and their containers: %v; want one daemon and 3 shims", daemons, shims)
	}

	up.kill(t)
	// logplane's own containerd does not outlive it; the shims, and the containers, do.
	waitExit(t, daemons[0], 20*time.Second, "logplane's containerd after kill -9 of logplane up")
	for shim, children := range shims {
		for _, pid := range append([]int{shim}, children...) {
			if !alive(pid) {
				t.Errorf("process %d (a shim, or its container) died with containerd", pid)
			}
		}
	}
	// With logplane gone, kubectl finds no server, but the pods run on.
	if r := m.kubectl("get", "pods"); r.err == nil {
		t.Fatalf("kubectl get pods with logplane killed: %s", r)
	}
	for name, p := range pods {
		if body := httpGet(t, "http://"+p.ip+":8080/"); body != "Hello from "+name+"\n" {
			t.Errorf("pod %s answered %q while logplane was down", name, body)
		}
	}

	up = m.up()
	m.waitAPI()
	m.waitNodeReady()
	if after := objects(); !slices.Equal(after, before) {
		t.Errorf("objects after the restart:\n%v\nwant:\n%v", after, before)
	}
	// The agent adopted the containers: same container, IP, start time and restart count.
	eventually(t, 30*time.Second, func() error {
		tbl := m.get("pods", "-o", "wide")
		for _, row := range tbl.rows {
			if row["STATUS"] != "Running" || row["READY"] != "1/1" {
				return fmt.Errorf("pods not all Running and ready after the restart:\n%s", tbl.text)
			}
		}
		return nil
	})
	if got := state(); !maps.Equal(got, pods) {
		t.Errorf("pods after the restart:\n%v\nwant (adopted, unchanged):\n%v", got, pods)
	}
	wide := m.get("pods", "-o", "wide")
	for _, row := range podsWide.rows {
		expect(t, wide, wide.row(t, row["NAME"]), map[string]string{"READY": "1/1", "STATUS": "Running", "RESTARTS": "0", "IP": row["IP"], "NODE": m.node})
	}
	// Each container was started once: the agent that adopted it did not start it again.
	for name := range pods {
		out := m.k("get", "events", "--field-selector", "involvedObject.name="+name+",reason=Started", "-o", "jsonpath={.items[*].count}")
		if out != "1" {
			t.Errorf("Started events of %s after the restart: counts %q, want one event once", name, out)
		}
	}

	// The cluster works on: controllers, scheduler and agent act on new changes.
	m.k("scale", "deployment/web", "--replicas=3")
	rolledOut(t, m.k("rollout", "status", "deployment/web", "--timeout=60s"), "web")
	m.k("delete", "pod", "hello")
	m.k("delete", "deployment", "web")
	m.k("wait", "--for=delete", "pod", "-l", "app=web", "--timeout=60s")
	if r := m.kubectl("get", "pods"); r.err != nil || r.errOut != "No resources found in default namespace.\n" {
		t.Errorf("kubectl get pods after deleting everything: %s", r)
	}
	up.stop(t)
	// With no pod left, a stopped `up` leaves nothing behind: no process of its (containerd, a
	// shim), no pinned network namespace, no state tmpfs.
	eventually(t, 20*time.Second, func() error {
		if pids := pidsUnder(m.dir); len(pids) > 0 {
			return fmt.Errorf("processes of the data directory left after every pod was deleted and up stopped: %v", pids)
		}
		return nil
	})
	if left := mountsUnder(t, m.dir); len(left) > 0 {
		t.Errorf("mounts left after every pod was deleted: %v", left)
	}
}
