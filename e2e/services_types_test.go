package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServiceTypes is seed 001's walk through the Service types and seed 003's NodePort
// exercise, on a `logplane up` machine running its service proxy, with real pods and the real
// kubectl:
//   - the service range is routed to the machine before the API server answers;
//   - `kubectl proxy` reaches /version, a Service (services/NAME:PORT/proxy/) and a pod
//     (pods/NAME:PORT/proxy/);
//   - NodePort (seed 003's manifest, nodePort 30002) answers curl on 127.0.0.1 and on the node's
//     other address (the pods' bridge); LoadBalancer shows its EXTERNAL-IP and serves its port
//     there; an externalIP (the bridge's address, which the test owns) serves its port; an
//     ExternalName Service resolves as a CNAME from a pod and reaches its target by name;
//   - a deleted Service leaves no rule behind;
//   - kill -9 of `logplane up`: the Services keep carrying traffic while it is down, and after
//     the restart a change is programmed (a Service deleted, another created).
func TestServiceTypes(t *testing.T) {
	m := newMachine(t)
	m.loadImages()
	if out, _ := exec.Command("ip", "route", "show", "10.96.0.0/16").CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Fatalf("the service range is routed before the test starts (an earlier run left it? logplane agent --cleanup removes it): %s", out)
	}
	flags := slices.DeleteFunc(m.nodeFlags(), func(f string) bool { return f == "--service-proxy=false" })
	upArgs := slices.Concat([]string{"up", "--data-dir", m.dir}, m.apiFlags(), flags)
	up := m.start("up", upArgs...)
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
	})

	// The range is routed here before the API server even listens: whenever it answers, a
	// cluster IP that no Service holds goes to the service device, never to the default route.
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.apiAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server did not listen within 60s: %v; log:\n%s", err, tail(up.log, 30))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "-o", "route", "get", "10.96.251.7").CombinedOutput(); err != nil || !strings.Contains(string(out), "dev lpsvc0") {
		t.Fatalf("the API server listens, and a cluster IP routes %s (%v), not to lpsvc0", out, err)
	}
	m.waitAPI()
	m.waitNodeReady()

	// Seed 001's webserver behind a NodePort Service, as seed 003 writes it (nodePort 30002).
	m.k("create", "deployment", "webserver", "--image=logplane.local/hello:latest", "--replicas=2", "--port=8080")
	m.k("rollout", "status", "deployment/webserver", "--timeout=180s")
	m.apply(`apiVersion: v1
kind: Service
metadata:
  name: web-service
  labels:
    run: web-service
spec:
  type: NodePort
  selector:
    app: webserver
  ports:
  - protocol: TCP
    nodePort: 30002
    port: 8080
    targetPort: 8080
`)
	svc := m.get("svc", "web-service")
	expect(t, svc, svc.row(t, "web-service"), map[string]string{"TYPE": "NodePort", "EXTERNAL-IP": "<none>", "PORT(S)": "8080:30002/TCP"})
	if np := m.jsonpath("svc/web-service", "{.spec.ports[*].nodePort}"); np != "30002" {
		t.Errorf("nodePort %q", np)
	}
	nodeIP := m.jsonpath("node/"+m.node, `{.status.addresses[?(@.type=="InternalIP")].address}`)
	bridgeIP := m.bridgeAddr()
	for _, host := range []string{"127.0.0.1", nodeIP, bridgeIP} {
		curlHello(t, "http://"+net.JoinHostPort(host, "30002")+"/")
	}

	// kubectl proxy, as seed 001 uses it: /version, then a Service and a pod through the
	// proxy subresources.
	proxy := m.kubectlProxy()
	if body := curlHello(t, proxy+"/api/v1/namespaces/default/services/web-service:8080/proxy/"); body == "" {
		t.Error("empty answer through services/web-service:8080/proxy/")
	}
	for _, form := range []string{"http:web-service:8080", "web-service"} {
		curlHello(t, proxy+"/api/v1/namespaces/default/services/"+form+"/proxy/")
	}
	pod := m.podNames("app=webserver")[0]
	if body := curl(t, proxy+"/api/v1/namespaces/default/pods/"+pod+":8080/proxy/"); body != "Hello from "+pod+"\n" {
		t.Errorf("pods/%s:8080/proxy/ answered %q", pod, body)
	}
	if body := curl(t, proxy+"/version"); !strings.Contains(body, `"gitVersion"`) {
		t.Errorf("/version through kubectl proxy: %s", body)
	}
	if code := curlCode(t, proxy+"/api/v1/namespaces/default/services/nothing:80/proxy/"); code != "404" {
		t.Errorf("an unknown Service through the proxy: HTTP %s, want 404", code)
	}

	// LoadBalancer: the node's address as EXTERNAL-IP, the port served there.
	m.k("expose", "deployment", "webserver", "--name=web-lb", "--type=LoadBalancer", "--port=18080", "--target-port=8080")
	until(t, 60*time.Second, func() (bool, string) {
		lb := m.get("svc", "web-lb")
		row := lb.row(t, "web-lb")
		return row["EXTERNAL-IP"] == nodeIP && strings.HasPrefix(row["PORT(S)"], "18080:"), lb.text
	})
	curlHello(t, "http://"+net.JoinHostPort(nodeIP, "18080")+"/")

	// externalIPs, on an address the test owns (its pods' bridge).
	m.k("expose", "deployment", "webserver", "--name=web-ext", "--port=18081", "--target-port=8080", "--external-ip="+bridgeIP)
	ext := m.get("svc", "web-ext")
	expect(t, ext, ext.row(t, "web-ext"), map[string]string{"EXTERNAL-IP": bridgeIP, "PORT(S)": "18081/TCP"})
	curlHello(t, "http://"+net.JoinHostPort(bridgeIP, "18081")+"/")

	// ExternalName: a CNAME in the cluster DNS, here to the NodePort Service's own name so that
	// nothing leaves the machine; a pod resolves it and reaches the target through it.
	m.k("create", "service", "externalname", "web-alias", "--external-name=web-service.default.svc.cluster.local")
	alias := m.get("svc", "web-alias")
	expect(t, alias, alias.row(t, "web-alias"), map[string]string{"TYPE": "ExternalName", "CLUSTER-IP": "<none>", "EXTERNAL-IP": "web-service.default.svc.cluster.local"})
	clusterIP := m.jsonpath("svc/web-service", "{.spec.clusterIP}")
	until(t, 30*time.Second, func() (bool, string) {
		r := m.kubectl("exec", pod, "--", "nslookup", "-type=CNAME", "web-alias.default.svc.cluster.local")
		return r.err == nil && strings.Contains(r.out, "canonical name = web-service.default.svc.cluster.local"), r.String()
	})
	until(t, 30*time.Second, func() (bool, string) {
		r := m.kubectl("exec", pod, "--", "nslookup", "web-alias.default.svc.cluster.local")
		return r.err == nil && strings.Contains(r.out, clusterIP), r.String()
	})
	until(t, 30*time.Second, func() (bool, string) {
		r := m.kubectl("exec", pod, "--", "wget", "-qO-", "http://web-alias:8080/")
		return r.err == nil && strings.HasPrefix(r.out, "Hello from webserver-"), r.String()
	})

	// A deleted Service leaves no rule behind.
	lbIP := m.jsonpath("svc/web-lb", "{.spec.clusterIP}")
	m.k("delete", "svc", "web-lb")
	until(t, 30*time.Second, func() (bool, string) {
		table := nftTable(t)
		return !strings.Contains(table, "default/web-lb/") && !strings.Contains(table, lbIP+" ") && !strings.Contains(table, "18080"), table
	})

	// kill -9 of logplane up: the rules stay, so the Services carry traffic while it is down.
	up.kill(t)
	if r := m.kubectl("get", "svc"); r.err == nil {
		t.Fatalf("kubectl get svc with logplane killed: %s", r)
	}
	for range 5 {
		for _, url := range []string{"http://" + clusterIP + ":8080/", "http://127.0.0.1:30002/", "http://" + net.JoinHostPort(bridgeIP, "18081") + "/"} {
			if body, err := get1(url); err != nil || !strings.HasPrefix(body, "Hello from webserver-") {
				t.Errorf("%s with logplane down: %q %v", url, body, err)
			}
		}
	}
	up = m.start("up", upArgs...)
	m.waitAPI()
	m.waitNodeReady()
	// After the restart, changes are programmed: the NodePort Service goes, a new one comes.
	m.k("delete", "svc", "web-service")
	m.k("expose", "deployment", "webserver", "--name=web-after", "--type=NodePort", "--port=8080")
	afterPort := m.jsonpath("svc/web-after", "{.spec.ports[0].nodePort}")
	curlHello(t, "http://127.0.0.1:"+afterPort+"/")
	until(t, 30*time.Second, func() (bool, string) {
		table := nftTable(t)
		return !strings.Contains(table, "default/web-service/") && !strings.Contains(table, "30002"), table
	})
	if _, err := get1("http://127.0.0.1:30002/"); err == nil {
		t.Error("the deleted NodePort 30002 still answers")
	}
}

// bridgeAddr is the IPv4 address of the machine's pod bridge (the pods' gateway).
func (m *machine) bridgeAddr() string {
	m.t.Helper()
	out, err := exec.Command("ip", "-o", "-4", "addr", "show", "dev", m.bridge).CombinedOutput()
	if err != nil {
		m.t.Fatalf("ip addr show %s: %v: %s", m.bridge, err, out)
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			return strings.Split(f[i+1], "/")[0]
		}
	}
	m.t.Fatalf("no address on %s: %s", m.bridge, out)
	return ""
}

// kubectlProxy runs `kubectl proxy --port=0` until the test ends and returns its URL.
func (m *machine) kubectlProxy() string {
	m.t.Helper()
	cmd := exec.Command(kubectlPath, "proxy", "--port=0")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+m.kubeconfig(), "KUBECACHEDIR="+filepath.Join(m.logs, "kubecache"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		m.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() {
		_ = cmd.Process.Kill() // ours, by PID; it may have ended
		_ = cmd.Wait()         // killed: its exit status says so
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout) // keep draining until it exits
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(line, "Starting to serve on ")
		if !ok {
			m.t.Fatalf("kubectl proxy printed %q", line)
		}
		return "http://" + addr
	case <-time.After(30 * time.Second):
		m.t.Fatal("kubectl proxy did not start within 30s")
	}
	return ""
}

// curl runs curl on url until it answers 200 (generous: the machine is loaded) and returns the
// body.
func curl(t *testing.T, url string) string {
	t.Helper()
	var body string
	until(t, 30*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "curl", "-sS", "--fail", "--max-time", "5", url).CombinedOutput()
		body = string(out)
		return err == nil, fmt.Sprintf("curl %s: %v: %s", url, err, out)
	})
	return body
}

// curlHello is curl of an address where a webserver pod answers.
func curlHello(t *testing.T, url string) string {
	t.Helper()
	body := curl(t, url)
	if !strings.HasPrefix(body, "Hello from webserver-") {
		t.Errorf("%s answered %q", url, body)
	}
	return body
}

// curlCode is the HTTP status code curl gets from url.
func curlCode(t *testing.T, url string) string {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v: %s", url, err, out)
	}
	return string(out)
}

// get1 is one GET on a new connection, with a short timeout, no retry.
func get1(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// nftTable lists the service proxy's table on the host.
func nftTable(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", "ip", "logplane-services").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return string(out)
}
