package e2e_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestStatefulSet applies a StatefulSet with its headless Service on a `logplane up` machine
// running its service proxy and cluster DNS: web-0 becomes Ready before web-1 is created, each
// pod answers to <pod>.<service>.<ns>.svc.cluster.local from another pod, and `kubectl rollout
// status` reports the set rolled out.
func TestStatefulSet(t *testing.T) {
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

	out := m.apply(`apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: hello
        image: logplane.local/hello:latest
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
`)
	if !strings.Contains(out, "statefulset.apps/web created") {
		t.Fatalf("apply printed %q", out)
	}
	if out := m.k("rollout", "status", "sts/web", "--timeout=180s"); !strings.Contains(out, "partitioned roll out complete: 2 new pods have been updated") {
		t.Fatalf("rollout status printed %q", out)
	}
	sts := m.get("sts")
	expect(t, sts, sts.row(t, "web"), map[string]string{"READY": "2/2"})

	// Ordered: web-1 was made after web-0 was Ready.
	ready0, err := time.Parse(time.RFC3339, m.jsonpath("pod/web-0", `{.status.conditions[?(@.type=="Ready")].lastTransitionTime}`))
	if err != nil {
		t.Fatal(err)
	}
	created1, err := time.Parse(time.RFC3339, m.jsonpath("pod/web-1", "{.metadata.creationTimestamp}"))
	if err != nil {
		t.Fatal(err)
	}
	if created1.Before(ready0) {
		t.Errorf("web-1 was created at %v, before web-0 was Ready at %v", created1, ready0)
	}
	for _, p := range []string{"web-0", "web-1"} {
		if h := m.jsonpath("pod/"+p, "{.spec.hostname}.{.spec.subdomain}"); h != p+".web" {
			t.Errorf("pod %s: hostname.subdomain %q", p, h)
		}
	}

	// Stable network identity: web-0's name resolves, from a pod, to web-0's address.
	ip0 := m.jsonpath("pod/web-0", "{.status.podIP}")
	m.k("run", "client", "--image=logplane.local/busybox:latest", "--restart=Never", "--", "sleep", "3600")
	m.k("wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
	until(t, 60*time.Second, func() (bool, string) {
		r := m.kubectl("exec", "client", "--", "nslookup", "web-0.web.default.svc.cluster.local")
		return r.err == nil && strings.Contains(r.out, ip0), "nslookup web-0.web.default.svc.cluster.local (want " + ip0 + "): " + r.String()
	})
	until(t, 60*time.Second, func() (bool, string) {
		r := m.kubectl("exec", "client", "--", "wget", "-qO-", "http://web-1.web:8080/")
		return r.err == nil && r.out != "", "wget http://web-1.web:8080/: " + r.String()
	})
}
