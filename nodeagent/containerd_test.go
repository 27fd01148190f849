package nodeagent_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/nodefeed"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// realCluster is an API server, a machine with containerd, CNI and a
// registry (dataplanetest), and the certificates a node agent needs.
type realCluster struct {
	*cluster
	env                *dataplanetest.Env
	ca, nodeCert, node []byte
	authority          *pki.CA
	sched              *engine.Engine // the scheduler's
}

func newRealCluster(t testing.TB) *realCluster {
	t.Helper()
	env := dataplanetest.New(t) // skips (or fails under LOGPLANE_REQUIRE_ROOT_TESTS=1) without root and containerd
	dir := t.TempDir()
	mat, err := pki.Load(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	kc, kk, err := mat.CA.Issue("logplane-apiserver-kubelet-client", []string{"system:masters"}, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	ktls, err := apiserver.KubeletClientTLS(mat.CA.CertPEM, kc, kk)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, apiservertest.Options{DataDir: dir, LogListen: "127.0.0.1:0", Configure: func(cfg *apiserver.Config) { cfg.KubeletTLS = ktls }})
	sched := startScheduler(t, c)
	sc, sk, err := mat.CA.Issue("system:node:node-1", []string{"system:nodes"}, []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		t.Fatal(err)
	}
	return &realCluster{cluster: c, env: env, ca: mat.CA.CertPEM, nodeCert: sc, node: sk, authority: mat.CA, sched: sched}
}

func (r *realCluster) agentConfig(t testing.TB) agentProcess {
	return agentConfig(t, r.cluster, r.env, "node-1", r.ca, r.nodeCert, r.node)
}

// startAgent runs node-1's agent in this process until the test ends;
// opts change its configuration.
func (r *realCluster) startAgent(t testing.TB, opts ...func(*agentProcess)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	ready := make(chan struct{})
	done := make(chan error, 1)
	p := r.agentConfig(t)
	for _, o := range opts {
		o(&p)
	}
	go func() { done <- runAgent(ctx, p, ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("agent: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("agent not ready after 60s")
	}
}

// run creates a pod with kubectl run; the scheduler puts it on node-1.
func (r *realCluster) run(name, image string, args ...string) {
	r.t.Helper()
	r.must("", []string{"pod/" + name + " created"}, append([]string{"run", name, "--image=" + image, "--restart=Always"}, args...)...)
}

// startScheduler runs the scheduler as `logplane reconcile` does, in this process, on the API
// server's projection and registry, until the test ends, and returns its engine. The nodes'
// feeds are kept on the same engine, as the reconcile role keeps them: an agent holding a node's
// credential reads only its feed.
func startScheduler(t testing.TB, c *cluster) *engine.Engine {
	t.Helper()
	e, err := reconcilerstest.SchedulerEngine(c.api.API.Registry(), c.api.API.Store(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	if err := nodefeed.Setup(nodefeed.Config{Feeds: c.api.Log})(ctx, e); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(ctx) // returns once ctx ends
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return e
}

func TestRealPodWithKubectl(t *testing.T) {
	r := newRealCluster(t)
	r.startAgent(t)
	r.must("", []string{"node-1", "Ready"}, "get", "nodes")

	// kubectl run: Running, with an IP from the node's range, shown by get -o wide.
	r.run("web", r.env.Hello, "--port=8080", "--labels=app=web")
	p := r.waitPod("default", "web", 60*time.Second, "Running", running)
	prefix := strings.TrimSuffix(r.env.Subnet, "0/24")
	if !strings.HasPrefix(p.Status.PodIP, prefix) {
		t.Fatalf("pod IP %s not in %s", p.Status.PodIP, r.env.Subnet)
	}
	r.must("", []string{"web", "1/1", "Running", p.Status.PodIP, "node-1"}, "get", "pods", "-o", "wide")
	r.must("", []string{"Node:", "node-1/127.0.0.1", "IP:", p.Status.PodIP, "Scheduled", "Successfully assigned default/web to node-1",
		"Pulled", "Created", "Started", "Started container web", "kubelet"}, "describe", "pod", "web")

	// ConfigMap and Secret as files and env, fieldRef env.
	r.must("", nil, "create", "configmap", "settings", "--from-literal=color=blue")
	r.must("", nil, "create", "secret", "generic", "creds", "--from-literal=password=s3cret")
	r.must(`apiVersion: v1
kind: Pod
metadata: {name: cfg}
spec:
  containers:
  - name: c
    image: `+r.env.Busybox+`
    command: [sleep, "3600"]
    env:
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - {name: MY_POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: MY_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    volumeMounts: [{name: settings, mountPath: /etc/settings}]
  volumes:
  - {name: settings, configMap: {name: settings}}
`, []string{"pod/cfg created"}, "apply", "-f", "-")
	cfgPod := r.waitPod("default", "cfg", 60*time.Second, "Running", running)
	r.must("", []string{"blue"}, "exec", "cfg", "--", "cat", "/etc/settings/color")
	r.must("", []string{"PASSWORD=s3cret", "MY_POD_IP=" + cfgPod.Status.PodIP, "MY_NODE=node-1"}, "exec", "cfg", "--", "env")

	// logs: a counter.
	r.run("counter", r.env.Busybox, "--labels=app=counter", "--command", "--", "sh", "-c",
		`i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.2; done`)
	r.waitPod("default", "counter", 60*time.Second, "Running", running)
	time.Sleep(time.Second)
	out := r.must("", []string{"line 0", "line 1"}, "logs", "counter")
	tail := r.must("", nil, "logs", "counter", "--tail=2")
	if n := strings.Count(strings.TrimSpace(tail), "\n") + 1; n != 2 || strings.Contains(tail, "line 0\n") {
		t.Errorf("logs --tail=2: %q", tail)
	}
	if since := r.must("", []string{"line"}, "logs", "counter", "--since=1s"); strings.Contains(since, "line 0\n") || len(since) >= len(out)+50 {
		t.Errorf("logs --since=1s has the first line: %q", since)
	}
	r.must("", []string{"line 0"}, "logs", "counter", "-c", "counter")
	// With a selector kubectl asks for the last 10 lines unless told otherwise.
	if sel := strings.TrimSpace(r.must("", []string{"line"}, "logs", "-l", "app=counter")); strings.Count(sel, "\n")+1 > 10 {
		t.Errorf("logs -l app=counter: more than the 10 lines kubectl asks for: %q", sel)
	}
	r.must("", []string{"line 0\n", "line 1\n"}, "logs", "-l", "app=counter", "--tail=-1")
	r.followLogs(t, "counter")

	// exec, over WebSocket (kubectl's default) and SPDY.
	for _, spdy := range []bool{false, true} {
		env := []string{}
		if spdy {
			env = append(env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")
		}
		if out := r.kubectlEnv(env, "", "exec", "web", "--", "echo", "hello from exec"); !strings.Contains(out, "hello from exec") {
			t.Errorf("exec (spdy %v): %q", spdy, out)
		}
		if out := r.kubectlEnv(env, "some input\n", "exec", "-i", "web", "--", "cat"); !strings.Contains(out, "some input") {
			t.Errorf("exec -i (spdy %v): %q", spdy, out)
		}
		code, out := r.kubectlCode(env, "exec", "web", "--", "sh", "-c", "exit 3")
		if code != 3 || !strings.Contains(out, "command terminated with exit code 3") {
			t.Errorf("exec exit code (spdy %v): %d %q", spdy, code, out)
		}
	}
	// exec -it: a TTY, from a terminal that script(1) provides.
	if _, err := exec.LookPath("script"); err == nil {
		cmd := exec.CommandContext(t.Context(), "script", "-qec",
			fmt.Sprintf("%s --kubeconfig %s exec -it web -- sh -c 'tty; echo tty-ok'", kubectlBin, r.api.Kubeconfig), "/dev/null")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		cmd.Stdin = strings.NewReader("")
		b, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(b), "/dev/pts/") || !strings.Contains(string(b), "tty-ok") {
			t.Errorf("exec -it: %v %q", err, b)
		}
	}

	// attach: kubectl run -i (stdin once, then the pod is removed), kubectl attach, run -it.
	for _, spdy := range []bool{false, true} {
		var env []string
		if spdy {
			env = append(env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")
		}
		name := fmt.Sprintf("reader-%v", spdy)
		out := r.kubectlEnv(env, "hello attach\n", "run", "-i", "--rm", "--restart=Never", name, "--image="+r.env.Busybox,
			"--", "sh", "-c", `read line; echo "got $line"`)
		if !strings.Contains(out, "got hello attach") || !strings.Contains(out, `pod "`+name+`" deleted`) {
			t.Errorf("run -i --rm (spdy %v): %q", spdy, out)
		}
	}
	r.attachOutput(t, "counter")
	if _, err := exec.LookPath("script"); err == nil {
		cmd := exec.CommandContext(t.Context(), "script", "-qec",
			fmt.Sprintf("%s --kubeconfig %s run -it --rm --restart=Never shell --image=%s -- sh", kubectlBin, r.api.Kubeconfig, r.env.Busybox), "/dev/null")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		cmd.Stdin = strings.NewReader("tty; echo shell-ok\nexit\n")
		b, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(b), "/dev/pts/") || !strings.Contains(string(b), "shell-ok") {
			t.Errorf("run -it: %v %q", err, b)
		}
	}

	// port-forward, over WebSocket and SPDY.
	for _, spdy := range []bool{false, true} {
		var env []string
		if spdy {
			env = append(env, "KUBECTL_PORT_FORWARD_WEBSOCKETS=false")
		}
		body := r.portForwardGet(t, env, "pod/web", "8080", "/")
		if !strings.Contains(body, "Hello") || !strings.Contains(body, "web") {
			t.Errorf("port-forward (spdy %v): %q", spdy, body)
		}
	}

	// cp, both ways (tar over exec).
	src := filepath.Join(t.TempDir(), "note.txt")
	if err := os.WriteFile(src, []byte("copied by kubectl cp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.must("", nil, "cp", src, "default/web:/tmp/note.txt")
	r.must("", []string{"copied by kubectl cp"}, "exec", "web", "--", "cat", "/tmp/note.txt")
	dst := filepath.Join(t.TempDir(), "back.txt")
	r.must("", nil, "cp", "default/web:/tmp/note.txt", dst)
	if b, err := os.ReadFile(dst); err != nil || string(b) != "copied by kubectl cp\n" {
		t.Errorf("cp back: %v %q", err, b)
	}

	// The agent's streaming endpoint is not open to anyone: no client certificate, no
	// connection; a node's certificate (not the API server's), 403.
	node, err := r.client.CoreV1().Nodes().Get(t.Context(), "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := fmt.Sprintf("https://127.0.0.1:%d/containerLogs/default/web/web", node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.ca)
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := anon.Get(endpoint); err == nil {
		resp.Body.Close()
		t.Errorf("streaming endpoint answered a client without a certificate: %s", resp.Status)
	}
	ncPEM, nkPEM, err := r.authority.Issue("system:node:node-1", []string{"system:nodes"}, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, err := tls.X509KeyPair(ncPEM, nkPEM)
	if err != nil {
		t.Fatal(err)
	}
	asNode := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{nodeCert}}}}
	if resp, err := asNode.Get(endpoint); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("streaming endpoint with a node's certificate: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}

	// Errors as Kubernetes gives them.
	if out, err := r.kubectl("", "logs", "nosuchpod"); err == nil || !strings.Contains(out, `pods "nosuchpod" not found`) {
		t.Errorf("logs of a missing pod: %v %q", err, out)
	}
	if out, err := r.kubectl("", "logs", "web", "--previous"); err == nil || !strings.Contains(out, `previous terminated container "web" in pod "web" not found`) {
		t.Errorf("logs --previous without a previous instance: %v %q", err, out)
	}

	// Graceful deletion: kubectl waits until the agent removed the pod.
	start := time.Now()
	r.must("", []string{`pod "web" deleted`}, "delete", "pod", "web")
	if _, err := r.client.CoreV1().Pods("default").Get(t.Context(), "web", metav1.GetOptions{}); err == nil {
		t.Error("pod still there after kubectl delete returned")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("deleting a pod that stops on SIGTERM took %s", d)
	}
	r.waitEvent("default", "web", "Killing", 5*time.Second)

	// A force-deleted pod whose process ignores SIGTERM is killed within a short grace, not its
	// 30 s grace period: its sandbox goes.
	r.run("stubborn", r.env.Busybox, "--command", "--", "sh", "-c", `trap "" TERM; while true; do sleep 1; done`)
	r.waitPod("default", "stubborn", 60*time.Second, "Running", running)
	r.must("", nil, "delete", "pod", "stubborn", "--grace-period=0", "--force")
	start = time.Now()
	for {
		sbs, err := r.env.Runtime.ListSandboxes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(sbs, func(sb runtimeapi.Sandbox) bool { return sb.PodName == "stubborn" }) {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatal("the sandbox of a force-deleted pod still there after 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kubectlEnv runs kubectl with extra environment.
func (r *realCluster) kubectlEnv(env []string, stdin string, args ...string) string {
	_, out := r.kubectlCodeIn(env, stdin, args...)
	return out
}

func (r *realCluster) kubectlCode(env []string, args ...string) (int, string) {
	return r.kubectlCodeIn(env, "", args...)
}

func (r *realCluster) kubectlCodeIn(env []string, stdin string, args ...string) (int, string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlBin, append([]string{"--kubeconfig", r.api.Kubeconfig}, args...)...)
	cmd.Env = append(append(os.Environ(), "HOME="+r.t.TempDir()), env...)
	cmd.Stdin = strings.NewReader(stdin)
	b, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(b)
	}
	if err != nil {
		r.t.Fatalf("kubectl %v: %v", args, err)
	}
	return 0, string(b)
}

// followLogs checks that logs -f streams new lines as they are written.
func (r *realCluster) followLogs(t *testing.T, pod string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stdout, stop := apiservertest.Stream(t, r.api.KubectlCmd(ctx, t, "logs", "-f", "--tail=1", pod))
	defer stop()
	sc := bufio.NewScanner(stdout)
	var lines []string
	for len(lines) < 5 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 5 {
		t.Fatalf("logs -f: only %q (%v)", lines, sc.Err())
	}
	// Lines arrive in order and keep coming: line n, n+1, ...
	var first int
	if _, err := fmt.Sscanf(lines[0], "line %d", &first); err != nil {
		t.Fatalf("logs -f: %q", lines)
	}
	for i, l := range lines {
		if l != fmt.Sprintf("line %d", first+i) {
			t.Fatalf("logs -f: %q", lines)
		}
	}
}

// attachOutput checks that kubectl attach streams a running container's output.
func (r *realCluster) attachOutput(t *testing.T, pod string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stdout, stop := apiservertest.Stream(t, r.api.KubectlCmd(ctx, t, "attach", pod))
	defer stop()
	sc := bufio.NewScanner(stdout)
	var lines []string
	for len(lines) < 3 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "line ") {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) < 3 {
		t.Fatalf("attach: only %q (%v)", lines, sc.Err())
	}
}

var forwarding = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)

// portForwardGet runs kubectl port-forward to target's port and GETs path through it.
func (r *realCluster) portForwardGet(t *testing.T, env []string, target, port, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlBin, "--kubeconfig", r.api.Kubeconfig, "port-forward", "--address=127.0.0.1", target, ":"+port)
	cmd.Env = append(append(os.Environ(), "HOME="+t.TempDir()), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait() // killed by cancel
	}()
	sc := bufio.NewScanner(stdout)
	local := ""
	var seen []string
	for local == "" && sc.Scan() {
		seen = append(seen, sc.Text())
		if m := forwarding.FindStringSubmatch(sc.Text()); m != nil {
			local = m[1]
		}
	}
	if local == "" {
		t.Fatalf("port-forward printed no local port: %q", seen)
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdout) // "Handling connection" lines
	}()
	var body []byte
	for i := 0; i < 2; i++ { // a second request over the same forward
		resp, err := http.Get("http://127.0.0.1:" + local + path)
		if err != nil {
			t.Fatalf("GET through port-forward: %v", err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return string(body)
}

func containerState(p *corev1.Pod) *corev1.ContainerStatus {
	if len(p.Status.ContainerStatuses) == 0 {
		return nil
	}
	return &p.Status.ContainerStatuses[0]
}

func TestRealFailuresAsKubectlShowsThem(t *testing.T) {
	r := newRealCluster(t)
	r.startAgent(t)

	// Crash loop: CrashLoopBackOff with restarts, logs --previous.
	r.run("crash", r.env.Busybox, "--command", "--", "sh", "-c", "echo crashing; sleep 0.5; exit 1")
	r.waitPod("default", "crash", 60*time.Second, "in CrashLoopBackOff with 2 restarts", func(p *corev1.Pod) bool {
		cs := containerState(p)
		return cs != nil && cs.RestartCount >= 2 && cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" &&
			cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.ExitCode == 1
	})
	r.must("", []string{"crash", "0/1", "CrashLoopBackOff"}, "get", "pod", "crash")
	r.must("", []string{"crashing"}, "logs", "crash", "--previous")
	r.waitEvent("default", "crash", "BackOff", 10*time.Second)
	r.must("", []string{"Back-off restarting failed container", "Last State:", "Terminated", "Exit Code:", "Restart Count:"}, "describe", "pod", "crash")

	// Liveness: a failed probe restarts the container.
	live := podOn("live", "node-1", r.env.Hello, func(p *corev1.Pod) {
		p.Spec.Containers[0].LivenessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr(8080)}},
			PeriodSeconds: 1, FailureThreshold: 2,
		}
	})
	// Readiness: a failing probe takes Ready away, a passing one gives it back.
	ready := podOn("ready", "node-1", r.env.Hello, func(p *corev1.Pod) {
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr(8080)}},
			PeriodSeconds: 1, FailureThreshold: 1,
		}
	})
	// OOMKilled: hello touches 64 MiB under a 16 MiB limit.
	oom := podOn("oom", "node-1", r.env.Hello, func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "HELLO_ALLOC_MB", Value: "64"}}
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: mustQuantity("16Mi")}
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
	})
	// ImagePullBackOff: an image the registry does not have.
	missing := podOn("missing", "node-1", strings.Replace(r.env.Hello, "hello", "nosuchimage", 1))
	for _, p := range []*corev1.Pod{live, ready, oom, missing} {
		if _, err := r.client.CoreV1().Pods("default").Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	r.waitPod("default", "live", 60*time.Second, "Running", running)
	r.must("", nil, "exec", "live", "--", "wget", "-q", "-O-", "--post-data=", "http://127.0.0.1:8080/fail")
	r.waitPod("default", "live", 60*time.Second, "restarted by its liveness probe", func(p *corev1.Pod) bool {
		cs := containerState(p)
		return cs != nil && cs.RestartCount >= 1 && cs.State.Running != nil
	})
	r.waitEvent("default", "live", "Unhealthy", 5*time.Second)
	r.must("", []string{"Liveness probe failed", "Killing"}, "describe", "pod", "live")

	r.waitPod("default", "ready", 60*time.Second, "Running and Ready", running)
	r.must("", []string{"ready", "1/1", "Running"}, "get", "pod", "ready")
	r.must("", nil, "exec", "ready", "--", "wget", "-q", "-O-", "--post-data=", "http://127.0.0.1:8080/fail")
	r.waitPod("default", "ready", 30*time.Second, "not Ready", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && !running(p) })
	r.must("", []string{"ready", "0/1", "Running"}, "get", "pod", "ready")
	r.must("", nil, "exec", "ready", "--", "wget", "-q", "-O-", "--post-data=", "http://127.0.0.1:8080/heal")
	r.waitPod("default", "ready", 30*time.Second, "Ready again", running)

	r.waitPod("default", "oom", 60*time.Second, "OOMKilled", func(p *corev1.Pod) bool {
		cs := containerState(p)
		return cs != nil && cs.State.Terminated != nil && cs.State.Terminated.Reason == "OOMKilled" && p.Status.Phase == corev1.PodFailed
	})
	r.must("", []string{"oom", "OOMKilled"}, "get", "pod", "oom")

	r.waitPod("default", "missing", 60*time.Second, "ImagePullBackOff", func(p *corev1.Pod) bool {
		cs := containerState(p)
		return cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason == "ImagePullBackOff"
	})
	r.eventually(30*time.Second, []string{"missing", "ImagePullBackOff"}, "get", "pod", "missing")
	r.must("", []string{"Failed to pull image", "Back-off pulling image"}, "describe", "pod", "missing")
}

func TestRealAgentKill9AdoptsContainers(t *testing.T) {
	r := newRealCluster(t)
	kill := startChild(t, r.agentConfig(t))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if n, err := r.client.CoreV1().Nodes().Get(t.Context(), "node-1", metav1.GetOptions{}); err == nil && len(n.Status.Conditions) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node-1 did not register")
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, name := range []string{"keep", "forced", "graceful"} {
		r.run(name, r.env.Hello, "--port=8080")
	}
	before := map[string]*corev1.Pod{}
	for _, name := range []string{"keep", "forced", "graceful"} {
		before[name] = r.waitPod("default", name, 60*time.Second, "Running", running)
	}
	r.waitEvent("default", "keep", "Started", 10*time.Second)
	started := count(r.events("default", "keep"), "Started")

	kill() // kill -9 of the agent: containers keep running.
	get := func(ip string) error {
		resp, err := http.Get("http://" + ip + ":8080/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	// Ready means started, not yet listening: give hello a moment.
	for i := 0; ; i++ {
		err := get(before["keep"].Status.PodIP)
		if err == nil {
			break
		}
		if i == 50 {
			t.Fatalf("pod unreachable with its agent dead: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Meanwhile: one pod is force-deleted, one deleted gracefully, one created.
	r.must("", nil, "delete", "pod", "forced", "--grace-period=0", "--force")
	r.must("", nil, "delete", "pod", "graceful", "--wait=false")
	r.run("late", r.env.Hello, "--port=8080")
	// The scheduler binds it; with the agent down, it stays Pending.
	late, err := r.client.CoreV1().Pods("default").Get(t.Context(), "late", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created, _ := strconv.ParseUint(late.ResourceVersion, 10, 64)
	waitCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.sched.WaitReconciled(waitCtx, created); err != nil {
		t.Fatal(err)
	}
	r.must("", []string{"late", "Pending"}, "get", "pod", "late")

	startChild(t, r.agentConfig(t))
	after := r.waitPod("default", "late", 60*time.Second, "Running (created while the agent was down)", running)
	_ = after
	r.waitGone("default", "graceful", 60*time.Second)
	keep := r.waitPod("default", "keep", 30*time.Second, "Running", running)
	b, a := before["keep"].Status.ContainerStatuses[0], keep.Status.ContainerStatuses[0]
	if a.ContainerID != b.ContainerID || a.RestartCount != b.RestartCount || !a.State.Running.StartedAt.Equal(&b.State.Running.StartedAt) {
		t.Errorf("container not adopted: before %s restarts %d started %v, after %s restarts %d started %v",
			b.ContainerID, b.RestartCount, b.State.Running.StartedAt, a.ContainerID, a.RestartCount, a.State.Running.StartedAt)
	}
	if keep.Status.PodIP != before["keep"].Status.PodIP {
		t.Errorf("pod IP changed: %s -> %s", before["keep"].Status.PodIP, keep.Status.PodIP)
	}
	if n := count(r.events("default", "keep"), "Started"); n != started {
		t.Errorf("Started events: %d before, %d after the restart", started, n)
	}
	// The force-deleted pod's sandbox is gone: its IP answers no more.
	deadline = time.Now().Add(30 * time.Second)
	for get(before["forced"].Status.PodIP) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the sandbox of a pod deleted while the agent was down still answers")
		}
		time.Sleep(200 * time.Millisecond)
	}
	sbs, err := r.env.Runtime.ListSandboxes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sb := range sbs {
		names = append(names, sb.PodName)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"keep", "late"}) {
		t.Errorf("sandboxes on the node: %v, want keep and late", names)
	}
}

func count(xs []string, x string) int {
	n := 0
	for _, y := range xs {
		if y == x {
			n++
		}
	}
	return n
}
