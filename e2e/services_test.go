package e2e_test

import (
	"errors"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestServiceWalkthrough is seed 000's Service walkthrough on a `logplane up` machine running
// its service proxy and cluster DNS: a Deployment, `kubectl expose`, wget from a pod to the
// Service by cluster IP and by name, and a request from the host to the cluster IP; the
// Services' environment variables in new pods (seed 001's discovery by environment). The
// service range is routed to the machine from the start; afterwards `logplane agent --cleanup`
// leaves no table, device or route.
func TestServiceWalkthrough(t *testing.T) {
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
		if out, _ := exec.Command("ip", "route", "show", "10.96.0.0/16").CombinedOutput(); strings.TrimSpace(string(out)) != "" {
			t.Errorf("after cleanup, the service range is still routed: %s", out)
		}
		if out, err := exec.Command("nft", "list", "table", "ip", "logplane-services").CombinedOutput(); err == nil {
			t.Errorf("after cleanup, the table is left:\n%s", out)
		}
	})
	m.waitAPI()
	m.waitNodeReady()
	if out, err := exec.Command("ip", "route", "show", "10.96.0.0/16").CombinedOutput(); err != nil || !strings.Contains(string(out), "lpsvc0") {
		t.Fatalf("the service range is not routed to the machine: %s %v", out, err)
	}

	m.k("create", "deployment", "web", "--image=logplane.local/hello:latest", "--replicas=2", "--port=8080")
	m.k("rollout", "status", "deployment/web", "--timeout=180s")
	if out := m.k("expose", "deployment", "web", "--port=80", "--target-port=8080"); out != "service/web exposed\n" {
		t.Fatalf("expose printed %q", out)
	}
	ip := m.jsonpath("svc/web", "{.spec.clusterIP}")
	until(t, 30*time.Second, func() (bool, string) {
		out := m.k("get", "ep", "web")
		return strings.Count(out, ":8080") == 2, out
	})
	pod := m.podNames("app=web")[0]
	for _, target := range []string{ip, "web", "web.default.svc.cluster.local"} {
		until(t, 30*time.Second, func() (bool, string) {
			r := m.kubectl("exec", pod, "--", "wget", "-qO-", "http://"+target+"/")
			return r.err == nil && r.out != "", "wget http://" + target + "/: " + r.String()
		})
	}
	client := &http.Client{Timeout: 5 * time.Second}
	until(t, 30*time.Second, func() (bool, string) {
		resp, err := client.Get("http://" + ip + "/")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && len(b) > 0, resp.Status
	})
	if out := m.k("exec", pod, "--", "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver 10.96.0.10") ||
		!strings.Contains(out, "default.svc.cluster.local") {
		t.Errorf("the pod's resolv.conf:\n%s", out)
	}

	// Discovery by environment: a new pod gets the Services' variables (the kubelet's
	// envvars), KUBERNETES_SERVICE_* always, the others only with enableServiceLinks.
	env := func(name string, overrides string) string {
		args := []string{"run", name, "--image=logplane.local/busybox:latest", "--restart=Never"}
		if overrides != "" {
			args = append(args, "--overrides", overrides)
		}
		m.k(append(args, "--", "sh", "-c", "env; sleep 3600")...)
		m.k("wait", "--for=condition=Ready", "pod/"+name, "--timeout=60s")
		var logs string
		until(t, 10*time.Second, func() (bool, string) {
			logs = m.k("logs", name)
			return strings.Contains(logs, "KUBERNETES_SERVICE_HOST="), logs
		})
		return logs
	}
	logs := env("links", "")
	for _, want := range []string{"WEB_SERVICE_HOST=" + ip + "\n", "WEB_SERVICE_PORT=80\n", "WEB_PORT=tcp://" + ip + ":80\n",
		"WEB_PORT_80_TCP_ADDR=" + ip + "\n", "WEB_PORT_80_TCP_PROTO=tcp\n", "KUBERNETES_SERVICE_HOST=10.96.0.1\n",
		"KUBERNETES_SERVICE_PORT=443\n", "KUBERNETES_SERVICE_PORT_HTTPS=443\n"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the pod's environment lacks %q:\n%s", want, logs)
		}
	}
	if logs := env("nolinks", `{"spec":{"enableServiceLinks":false}}`); strings.Contains(logs, "WEB_SERVICE_HOST") ||
		!strings.Contains(logs, "KUBERNETES_SERVICE_PORT=443") {
		t.Errorf("with enableServiceLinks false:\n%s", logs)
	}
}

// until calls cond until it says true, failing the test with its last message after d.
func until(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	eventually(t, d, func() error {
		if ok, msg := cond(); !ok {
			return errors.New(msg)
		}
		return nil
	})
}
