package e2e_test

import (
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helloCronJob is the CronJob of seed 001's "Cron Jobs" session (`kubectl create -f
// cronjob.yml`, whose file is Kubernetes' documentation example): every minute, a busybox pod
// prints the date and "Hello from the Kubernetes cluster". batch/v1 (the seed's era used
// v2alpha1) and the busybox image logplane has.
const helloCronJob = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: hello
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: hello
            image: logplane.local/busybox:latest
            args:
            - /bin/sh
            - -c
            - date; echo Hello from the Kubernetes cluster
          restartPolicy: OnFailure
`

// loadTestJob is seed 003's Job exercise: a load test of the 2-replica web server's Service
// (port 5858), on the documentation's Job example. Adapted: the busybox image logplane has
// instead of busybox:1.28, and `$(seq 1 10)` for the seed's `{1..10}`, which is bash: busybox sh
// (1.28's too) does not expand it and would make one request.
const loadTestJob = `apiVersion: batch/v1
kind: Job
metadata:
  name: load-test
spec:
  template:
    spec:
      containers:
      - name: load-test
        image: logplane.local/busybox:latest
        command: ["/bin/sh", "-c", "for run in $(seq 1 10); do wget -q -O- http://simple-webserver:5858; done"]
      restartPolicy: Never
  backoffLimit: 4
`

// availabilityCronJob is seed 003's CronJob exercise: every minute, an availability test of a
// Service, on the documentation's CronJob example. Adapted: Debian's busybox wget has neither
// --timeout nor --tries (and its -T crashes), so `timeout 5` bounds the request.
const availabilityCronJob = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: availability-test
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: availability-test
            image: logplane.local/busybox:latest
            command: ["/bin/sh", "-c", "timeout 5 wget --spider http://simple-webserver:5858"]
          restartPolicy: OnFailure
`

// TestBatchSeeds runs seed 001's CronJob session and seed 003's Job and CronJob exercises on a
// `logplane up` machine with its service proxy and cluster DNS, on the real clock:
//   - `kubectl get cronjob hello` as the seed shows it (SCHEDULE `*/1 * * * *`, SUSPEND False,
//     ACTIVE 0, LAST SCHEDULE <none>);
//   - seed 003's load test Job completes, and the two web server replicas' logs hold its 10
//     requests;
//   - `kubectl create job --from=cronjob/hello` runs at once and `kubectl logs job/...` prints
//     the date and "Hello from the Kubernetes cluster";
//   - at the next minute each CronJob starts one Job, `<cronjob>-<minutes since the epoch>`
//     matching its lastScheduleTime; hello's pod (found as the seed finds it, by job-name) prints
//     the message, the availability test succeeds against the Service; `get cronjob` shows ACTIVE
//     0 and a LAST SCHEDULE;
//   - `kubectl delete cronjob hello` deletes its Jobs.
func TestBatchSeeds(t *testing.T) {
	m := upServingServices(t)

	// Seed 003: the 2-replica web server behind a Service on 5858.
	m.k("create", "deployment", "simple-webserver", "--image=logplane.local/hello:latest", "--replicas=2", "--port=8080")
	m.k("rollout", "status", "deployment/simple-webserver", "--timeout=180s")
	m.k("expose", "deployment", "simple-webserver", "--port=5858", "--target-port=8080")
	until(t, 60*time.Second, func() (bool, string) {
		out := m.k("get", "ep", "simple-webserver")
		return strings.Count(out, ":8080") == 2, out
	})

	// kubectl create -f cronjob.yml
	r := m.run(time.Minute, helloCronJob+"---\n"+availabilityCronJob, kubectlPath, "create", "-f", "-")
	if r.err != nil || r.out != "cronjob.batch/hello created\ncronjob.batch/availability-test created\n" {
		t.Fatalf("kubectl create -f cronjob.yml: %s", r)
	}
	cj := m.get("cronjob", "hello")
	expect(t, cj, cj.row(t, "hello"), map[string]string{"SCHEDULE": "*/1 * * * *", "SUSPEND": "False", "ACTIVE": "0", "LAST SCHEDULE": "<none>"})

	// Seed 003's Job: ten requests through the Service, which both replicas' logs show.
	if out := m.apply(loadTestJob); out != "job.batch/load-test created\n" {
		t.Fatalf("apply printed %q", out)
	}
	m.k("wait", "--for=condition=Complete", "job/load-test", "--timeout=180s")
	jobs := m.get("jobs", "load-test")
	expect(t, jobs, jobs.row(t, "load-test"), map[string]string{"STATUS": "Complete", "COMPLETIONS": "1/1"})
	request := regexp.MustCompile(`(?m) GET /$`)
	requests := 0
	for _, pod := range m.podNames("app=simple-webserver") {
		logs := m.k("logs", pod)
		n := len(request.FindAllString(logs, -1))
		t.Logf("%s served %d of the load test's requests", pod, n)
		requests += n
	}
	if requests != 10 {
		t.Errorf("the web server's replicas logged %d requests, want the load test's 10", requests)
	}

	// The first run at once, by hand.
	if out := m.k("create", "job", "--from=cronjob/hello", "hello-manual"); out != "job.batch/hello-manual created\n" {
		t.Errorf("create job --from printed %q", out)
	}
	m.k("wait", "--for=condition=Complete", "job/hello-manual", "--timeout=180s")
	helloLogs(t, m, "job/hello-manual")

	// The scheduled runs, at the next minute of the real clock.
	hello := m.scheduledJob("hello")
	availability := m.scheduledJob("availability-test")
	for _, job := range []string{hello, availability} {
		m.k("wait", "--for=condition=Complete", "job/"+job, "--timeout=180s")
	}
	pods := strings.Fields(m.k("get", "pods", "--selector=job-name="+hello, "--output=jsonpath={.items..metadata.name}"))
	if len(pods) != 1 || !strings.HasPrefix(pods[0], hello+"-") {
		t.Fatalf("pods of job %s: %v", hello, pods)
	}
	helloLogs(t, m, pods[0])
	until(t, 60*time.Second, func() (bool, string) {
		cj := m.get("cronjob", "hello")
		row := cj.row(t, "hello")
		return row["ACTIVE"] == "0" && row["LAST SCHEDULE"] != "<none>" && row["SUSPEND"] == "False", cj.text
	})
	if last := m.jsonpath("cronjob/hello", "{.status.lastSuccessfulTime}"); last == "" {
		t.Error("cronjob hello has no lastSuccessfulTime after a Job completed")
	}

	if out := m.k("delete", "cronjob", "hello"); out != "cronjob.batch \"hello\" deleted\n" {
		t.Errorf("delete cronjob printed %q", out)
	}
	for _, job := range []string{"hello-manual", hello} {
		m.waitGone("job/" + job)
	}
}

// scheduledJob waits for the first Job that CronJob name started on its schedule (not one made
// by hand) and returns its name, checking that the name is `<cronjob>-<minutes since the epoch>`
// of a schedule time the CronJob recorded (its lastScheduleTime or an earlier one).
func (m *machine) scheduledJob(cronjob string) string {
	m.t.Helper()
	named := regexp.MustCompile(`^` + regexp.QuoteMeta(cronjob) + `-([0-9]+)$`)
	var job string
	var minutes int64
	// A minute of the real clock, and the machine is loaded.
	until(m.t, 150*time.Second, func() (bool, string) {
		out := m.k("get", "jobs", "-o", `jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].name}{"\n"}{end}`)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 || f[1] != cronjob {
				continue
			}
			if sub := named.FindStringSubmatch(f[0]); sub != nil {
				n, _ := strconv.ParseInt(sub[1], 10, 64) // the pattern matched digits
				if job == "" || n < minutes {
					job, minutes = f[0], n
				}
			}
		}
		return job != "", "no scheduled Job of cronjob " + cronjob + " yet:\n" + out
	})
	last, err := time.Parse(time.RFC3339, m.jsonpath("cronjob/"+cronjob, "{.status.lastScheduleTime}"))
	if err != nil {
		m.t.Fatalf("lastScheduleTime of cronjob %s: %v", cronjob, err)
	}
	if at := time.Unix(minutes*60, 0); at.After(last) || at.Second() != 0 {
		m.t.Errorf("job %s is for %v, cronjob %s's lastScheduleTime is %v", job, at.UTC(), cronjob, last)
	}
	return job
}

// helloLogs checks what `kubectl logs` prints for a pod (or job/NAME) of the hello CronJob: the
// date, then the message.
func helloLogs(t *testing.T, m *machine, object string) {
	t.Helper()
	logs := m.k("logs", object)
	lines := strings.Split(strings.TrimRight(logs, "\n"), "\n")
	if len(lines) != 2 || lines[1] != "Hello from the Kubernetes cluster" {
		t.Fatalf("kubectl logs %s:\n%s", object, logs)
	}
	if _, err := time.Parse(time.UnixDate, strings.Join(strings.Fields(lines[0]), " ")); err != nil {
		t.Errorf("kubectl logs %s: the first line is not the date: %v", object, err)
	}
}

// upServingServices starts `logplane up` with the demo images, its service proxy and cluster DNS
// (the other tests' machines run without), and removes the service proxy's table and route
// afterwards.
func upServingServices(t *testing.T) *machine {
	m := newMachine(t)
	m.loadImages()
	flags := slices.DeleteFunc(m.nodeFlags(), func(f string) bool { return f == "--service-proxy=false" })
	up := m.start("up", slices.Concat([]string{"up", "--data-dir", m.dir}, m.apiFlags(), flags)...)
	t.Cleanup(func() {
		if !up.exited() {
			up.stop(t)
		}
		if out, err := exec.Command(m.bin.logplane, "agent", "--cleanup").CombinedOutput(); err != nil {
			t.Errorf("logplane agent --cleanup: %v: %s", err, out)
		}
	})
	m.waitAPI()
	m.waitNodeReady()
	return m
}
