package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sixJob needs 6 successes, 2 pods at a time, each pod sleeping 3 s and exiting 0.
const sixJob = `apiVersion: batch/v1
kind: Job
metadata:
  name: six
spec:
  completions: 6
  parallelism: 2
  template:
    spec:
      containers:
      - name: work
        image: logplane.local/busybox:latest
        command: ["/bin/sh", "-c", "sleep 3; echo done"]
      restartPolicy: Never
`

// TestUpKill9MidJob kills `logplane up` with -9 in the middle of a Job (completions 6,
// parallelism 2, after at least 2 successes), lets its running pods finish while it is down, and
// starts `up` again on the same data directory: the Job completes with exactly 6 succeeded and
// none failed, exactly 6 pods were ever created (the pods, and the SuccessfulCreate Events, each
// naming a different one of them), each Succeeded with its container run once, and no pod keeps
// the job-tracking finalizer.
func TestUpKill9MidJob(t *testing.T) {
	m, up := upMachine(t)
	m.dumpOnFailure("get", "pods,jobs", "-o", "wide", "--show-labels")
	m.dumpOnFailure("get", "jobs", "-o", "yaml")
	m.dumpOnFailure("get", "events", "--sort-by=.lastTimestamp")
	if out := m.apply(sixJob); out != "job.batch/six created\n" {
		t.Fatalf("apply printed %q", out)
	}
	until(t, 120*time.Second, func() (bool, string) {
		out := m.jsonpath("job/six", "{.status.succeeded} {.status.active}")
		f := strings.Fields(out) // each is empty while it is 0
		succeeded := 0
		if len(f) == 2 {
			succeeded, _ = strconv.Atoi(f[0]) // the API's integer
		}
		return succeeded >= 2 && succeeded < 6, "job six succeeded, active: " + out
	})
	t.Logf("kill -9 of logplane up with job six at succeeded, active: %s", m.jsonpath("job/six", "{.status.succeeded} {.status.active}"))
	up.kill(t)
	// The pods that ran finish (sleep 3) while logplane is down: the node agent finds them
	// exited when it adopts them.
	time.Sleep(4 * time.Second)

	m.up()
	m.waitAPI()
	m.k("wait", "--for=condition=Complete", "job/six", "--timeout=180s")

	status := m.jsonpath("job/six", "{.status.succeeded}/{.status.failed}/{.status.active}/{.status.uncountedTerminatedPods.succeeded}{.status.uncountedTerminatedPods.failed}")
	if status != "6///" && status != "6/0/0/" {
		t.Errorf("job six succeeded/failed/active/uncounted: %q, want 6 succeeded and nothing else", status)
	}
	jobs := m.get("jobs", "six")
	expect(t, jobs, jobs.row(t, "six"), map[string]string{"STATUS": "Complete", "COMPLETIONS": "6/6"})
	if d := m.k("describe", "job", "six"); !regexp.MustCompile(`\nPods Statuses:\s+0 Active \(0 Ready\) / 6 Succeeded / 0 Failed\n`).MatchString(d) {
		t.Errorf("describe job six:\n%s", d)
	}

	out := m.k("get", "pods", "-l", "job-name=six", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.terminated.exitCode} {.metadata.finalizers}{"\n"}{end}`)
	var pods []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[1] != "Succeeded" || f[2] != "0" || f[3] != "0" {
			t.Errorf("pod of job six (name phase restarts exit-code finalizers): %q, want Succeeded, run once, exit 0, no finalizer", line)
		}
		if len(f) > 0 {
			pods = append(pods, f[0])
		}
	}
	if len(pods) != 6 {
		t.Errorf("job six has %d pods, want exactly 6:\n%s", len(pods), out)
	}
	// Each creation's Event names a pod of those 6, and none twice. (An Event the killed process
	// had not written yet is lost, as the kube-controller-manager's would be.)
	events := m.k("get", "events", "--field-selector", "involvedObject.kind=Job,involvedObject.name=six,reason=SuccessfulCreate",
		"-o", `jsonpath={range .items[*]}{.count} {.message}{"\n"}{end}`)
	created := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(events), "\n") {
		count, pod, ok := strings.Cut(line, " Created pod: ")
		if !ok || count != "1" || created[pod] || !slices.Contains(pods, pod) {
			t.Errorf("SuccessfulCreate event %q: want one per pod of %v, each once", line, pods)
		}
		created[pod] = true
	}
	t.Logf("SuccessfulCreate events for %d of the 6 pods", len(created))
}

// rollingKinds are a Deployment, a DaemonSet and a StatefulSet of the hello image whose rollouts
// take long enough to be caught in the middle: each new pod is Ready 2 s after it starts and
// available minReadySeconds later; the Deployment and the DaemonSet surge (a new pod beside the
// old one), the StatefulSet replaces its pods one at a time from the highest ordinal.
const rollingKinds = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  minReadySeconds: 4
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: hello
        image: logplane.local/hello:latest
        readinessProbe: {httpGet: {path: /, port: 8080}, initialDelaySeconds: 2, periodSeconds: 1}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent}
spec:
  minReadySeconds: 15
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app: node-agent}}
  template:
    metadata: {labels: {app: node-agent}}
    spec:
      containers:
      - name: hello
        image: logplane.local/hello:latest
        readinessProbe: {httpGet: {path: /, port: 8080}, initialDelaySeconds: 2, periodSeconds: 1}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  minReadySeconds: 4
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: hello
        image: logplane.local/hello:latest
        readinessProbe: {httpGet: {path: /, port: 8080}, initialDelaySeconds: 2, periodSeconds: 1}
`

// TestUpKill9MidRollouts kills `logplane up` with -9 while a Deployment, a DaemonSet and a
// StatefulSet are each in the middle of a rollout to a new image (`kubectl rollout status
// --watch=false` of each says it is waiting, with at least one new pod), then starts `up` again
// on the same data directory: every `kubectl rollout status` finishes, and each set ends with
// exactly its number of pods, all of the new template (image, pod-template-hash or
// controller-revision-hash of the current revision), none of the old one left, the StatefulSet's
// ordinals 0, 1, 2 once each and its current revision the update revision.
func TestUpKill9MidRollouts(t *testing.T) {
	m, up := upMachine(t)
	m.dumpOnFailure("get", "pods,rs,ds,sts,controllerrevisions", "-o", "wide", "--show-labels")
	m.dumpOnFailure("get", "ds,sts,deploy", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status}{\"\\n\"}{end}")
	m.dumpOnFailure("get", "events", "--sort-by=.lastTimestamp")
	out := m.apply(rollingKinds)
	if want := "deployment.apps/web created\ndaemonset.apps/node-agent created\nstatefulset.apps/db created\n"; out != want {
		t.Fatalf("apply printed %q", out)
	}
	kinds := []string{"deployment/web", "daemonset/node-agent", "statefulset/db"}
	rolledOutAll := func() {
		t.Helper()
		for _, k := range kinds {
			if r := m.kubectl("rollout", "status", k, "--timeout=180s"); r.err != nil || !regexp.MustCompile(`successfully rolled out|roll out complete`).MatchString(r.out) {
				t.Fatalf("rollout status %s: %s", k, r)
			}
		}
	}
	rolledOutAll()

	image := "logplane.local/hello:v2"
	podsOf := func(selector string) [][]string {
		out := m.k("get", "pods", "-l", selector, "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.phase} {.metadata.labels.pod-template-hash}{.metadata.labels.controller-revision-hash} {.metadata.deletionTimestamp}{"\n"}{end}`)
		var pods [][]string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line != "" {
				pods = append(pods, strings.Fields(line))
			}
		}
		return pods
	}
	for _, k := range kinds {
		m.k("set", "image", k, "hello=logplane.local/hello:v2")
	}
	// In the middle of every rollout: rollout status says it waits, and there are pods of both
	// images.
	selectors := []string{"app=web", "app=node-agent", "app=db"}
	until(t, 60*time.Second, func() (bool, string) {
		var all strings.Builder
		ok := true
		for i, k := range kinds {
			r := m.kubectl("rollout", "status", k, "--watch=false")
			images := map[string]bool{}
			for _, p := range podsOf(selectors[i]) {
				images[p[1]] = true
			}
			fmt.Fprintf(&all, "%s: %s%s pods' images: %v\n", k, r.out, r.errOut, images)
			ok = ok && r.err == nil && strings.Contains(strings.ToLower(r.out), "waiting for") && len(images) == 2
		}
		return ok, all.String()
	})
	t.Logf("kill -9 of logplane up in the middle of the rollouts")
	up.kill(t)

	m.up()
	m.waitAPI()
	m.waitNodeReady()
	rolledOutAll()

	// Exactly n pods, Running, of the new image and of revision hash, none being deleted (the
	// old ones may still be on their way out when rollout status returns).
	exactly := func(selector string, n int, hash string) [][]string {
		t.Helper()
		var pods [][]string
		until(t, 90*time.Second, func() (bool, string) {
			pods = podsOf(selector)
			if len(pods) != n {
				return false, fmt.Sprintf("pods %s: want %d, all %s %s:\n%v", selector, n, image, hash, pods)
			}
			for _, p := range pods {
				if len(p) != 4 || p[1] != image || p[2] != "Running" || p[3] != hash {
					return false, fmt.Sprintf("pods %s: want %d, all %s Running %s:\n%v", selector, n, image, hash, pods)
				}
			}
			return true, ""
		})
		return pods
	}

	// The Deployment: 3 pods of its new ReplicaSet, the old one scaled to 0.
	rsOut := m.k("get", "rs", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.metadata.labels.pod-template-hash} {.spec.template.spec.containers[0].image} {.spec.replicas} {.status.replicas}{"\n"}{end}`)
	var newHash string
	for _, line := range strings.Split(strings.TrimSpace(rsOut), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 4 && f[1] == image && f[2] == "3":
			newHash = f[0]
		case len(f) == 4 && f[2] == "0":
		default:
			t.Errorf("replica set of web (hash image replicas status): %q, want the new one at 3 and the others at 0", line)
		}
	}
	if newHash == "" {
		t.Fatalf("no replica set of web with %s at 3 replicas:\n%s", image, rsOut)
	}
	exactly("app=web", 3, newHash)
	deps := m.get("deployments", "web")
	expect(t, deps, deps.row(t, "web"), map[string]string{"READY": "3/3", "UP-TO-DATE": "3", "AVAILABLE": "3"})

	// The DaemonSet: one pod on the node, of the newest ControllerRevision.
	dsRevision := m.jsonpath("controllerrevisions", `{range .items[?(@.metadata.ownerReferences[0].name=="node-agent")]}{.revision} {.metadata.labels.controller-revision-hash}{"\n"}{end}`)
	dsHash, best := "", int64(-1)
	for _, line := range strings.Split(strings.TrimSpace(dsRevision), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil && n > best {
				dsHash, best = f[1], n
			}
		}
	}
	exactly("app=node-agent", 1, dsHash)
	ds := m.get("ds", "node-agent")
	expect(t, ds, ds.row(t, "node-agent"), map[string]string{"DESIRED": "1", "CURRENT": "1", "READY": "1", "UP-TO-DATE": "1", "AVAILABLE": "1"})

	// The StatefulSet: db-0, db-1, db-2 once each, all of the update revision, which is current.
	revs := strings.Fields(m.jsonpath("statefulset/db", "{.status.currentRevision} {.status.updateRevision}"))
	if len(revs) != 2 || revs[0] != revs[1] {
		t.Fatalf("statefulset db current and update revisions: %v, want the same", revs)
	}
	var names []string
	for _, p := range exactly("app=db", 3, revs[1]) {
		names = append(names, p[0])
	}
	slices.Sort(names)
	if want := []string{"db-0", "db-1", "db-2"}; !slices.Equal(names, want) {
		t.Errorf("statefulset db's pods: %v, want %v", names, want)
	}
	sts := m.get("sts", "db")
	expect(t, sts, sts.row(t, "db"), map[string]string{"READY": "3/3"})
}

// dumpOnFailure logs what kubectl prints with args if the test fails, before the machine stops.
func (m *machine) dumpOnFailure(args ...string) {
	t := m.t
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectlPath, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+m.kubeconfig())
		out, err := cmd.CombinedOutput()
		t.Logf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	})
}
