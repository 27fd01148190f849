package nodeagent_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podJSON gets a pod with kubectl, as a user would read it.
func (r *realCluster) podJSON(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := json.Unmarshal([]byte(r.must("", nil, "get", "pod", name, "-o", "json")), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func statusOf(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{}
}

func waitingReason(s corev1.ContainerStatus) string {
	if s.State.Waiting == nil {
		return ""
	}
	return s.State.Waiting.Reason
}

// TestRealPodsAsTheKubeletRunsThem checks on real containerd, through kubectl,
// behaviours the kubelet has and conformance tests rely on: configMap and
// secret volumes that follow their objects (subPath mounts excepted), what
// a pod reports while its init containers run, and activeDeadlineSeconds.
func TestRealPodsAsTheKubeletRunsThem(t *testing.T) {
	r := newRealCluster(t)
	// A short sync period, so that volumes refresh within seconds rather than a minute.
	r.startAgent(t, func(p *agentProcess) { p.SyncFrequency = time.Second })

	// configMap and secret volumes follow their objects.
	{
		r.must("", nil, "create", "configmap", "live", "--from-literal=color=blue", "--from-literal=size=M")
		r.must("", nil, "create", "secret", "generic", "live-creds", "--from-literal=password=s3cret")
		r.must(`apiVersion: v1
kind: Pod
metadata: {name: vols}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: `+r.env.Busybox+`
    command: [sleep, "3600"]
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: creds, mountPath: /etc/creds}
    - {name: cfg, mountPath: /etc/color, subPath: color}
  volumes:
  - {name: cfg, configMap: {name: live}}
  - {name: creds, secret: {secretName: live-creds}}
`, []string{"pod/vols created"}, "apply", "-f", "-")
		r.waitPod("default", "vols", 60*time.Second, "Running", running)
		r.must("", []string{"blue M s3cret blue"}, "exec", "vols", "--", "sh", "-c",
			`echo $(cat /etc/cfg/color) $(cat /etc/cfg/size) $(cat /etc/creds/password) $(cat /etc/color)`)
		r.must("", []string{"..data", "color", "size"}, "exec", "vols", "--", "ls", "-a", "/etc/cfg")

		r.must("", nil, "patch", "configmap", "live", "--type=merge", "-p", `{"data":{"color":"red","size":null}}`)
		r.must("", nil, "patch", "secret", "live-creds", "--type=merge", "-p", `{"data":{"password":"bjN3"}}`) // n3w
		r.eventually(30*time.Second, []string{"red n3w"}, "exec", "vols", "--", "sh", "-c",
			`echo $(cat /etc/cfg/color) $(cat /etc/creds/password)`)
		// The update is there: the subPath mount still has the file the container started with,
		// and the removed key is gone.
		r.must("", []string{"blue"}, "exec", "vols", "--", "cat", "/etc/color")
		if out, _ := r.kubectl("", "exec", "vols", "--", "ls", "/etc/cfg"); strings.Contains(out, "size") {
			t.Errorf("a key removed from the ConfigMap is still in the volume: %q", out)
		}
		r.must("", []string{`pod "vols" deleted`}, "delete", "pod", "vols")
	}

	// Init containers: what the pod reports while they run, and once they completed.
	{
		r.must(`apiVersion: v1
kind: Pod
metadata: {name: init}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: init1
    image: `+r.env.Busybox+`
    command: [sh, -c, "until [ -f /tmp/go ]; do sleep 0.1; done"]
  - name: init2
    image: `+r.env.Busybox+`
    command: [/bin/true]
  containers:
  - name: run1
    image: `+r.env.Busybox+`
    command: [sleep, "3600"]
`, []string{"pod/init created"}, "apply", "-f", "-")
		r.waitPod("default", "init", 60*time.Second, "init1 running", func(p *corev1.Pod) bool {
			return statusOf(p, "init1").State.Running != nil
		})
		p := r.podJSON(t, "init")
		if got := waitingReason(statusOf(p, "init2")); got != "PodInitializing" {
			t.Errorf("init2 while init1 runs waits with %q, want PodInitializing", got)
		}
		if got := waitingReason(statusOf(p, "run1")); got != "PodInitializing" {
			t.Errorf("run1 while init1 runs waits with %q, want PodInitializing", got)
		}
		if s := statusOf(p, "init1"); s.Ready {
			t.Error("init1 is ready while it runs")
		}
		r.must("", []string{"init", "Init:0/2"}, "get", "pod", "init")

		r.must("", nil, "exec", "init", "-c", "init1", "--", "touch", "/tmp/go")
		p = r.waitPod("default", "init", 60*time.Second, "Running", running)
		for _, name := range []string{"init1", "init2"} {
			s := statusOf(p, name)
			if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 || s.State.Terminated.Reason != "Completed" || !s.Ready {
				t.Errorf("%s once the pod runs: %+v ready=%v, want terminated Completed and ready", name, s.State, s.Ready)
			}
		}
		r.must("", []string{"init", "1/1", "Running"}, "get", "pod", "init")
		r.must("", []string{`pod "init" deleted`}, "delete", "pod", "init")
	}

	// activeDeadlineSeconds shortened on a running pod (it may only go down).
	{
		r.must(`apiVersion: v1
kind: Pod
metadata: {name: deadline}
spec:
  activeDeadlineSeconds: 600
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: `+r.env.Busybox+`
    command: [sleep, "3600"]
`, []string{"pod/deadline created"}, "apply", "-f", "-")
		r.waitPod("default", "deadline", 60*time.Second, "Running", running)
		if out, err := r.kubectl("", "patch", "pod", "deadline", "-p", `{"spec":{"activeDeadlineSeconds":900}}`); err == nil || !strings.Contains(out, "Invalid") {
			t.Errorf("raising activeDeadlineSeconds: %v %q", err, out)
		}
		r.must("", nil, "patch", "pod", "deadline", "-p", `{"spec":{"activeDeadlineSeconds":5}}`)
		p := r.waitPod("default", "deadline", 60*time.Second, "Failed with DeadlineExceeded", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodFailed && statusOf(p, "c").State.Terminated != nil
		})
		if p.Status.Reason != "DeadlineExceeded" || p.Status.Message != "Pod was active on the node longer than the specified deadline" {
			t.Errorf("reason %q message %q", p.Status.Reason, p.Status.Message)
		}
		// kubectl get shows the killed container's reason (Error), as with Kubernetes; describe
		// shows the pod's.
		r.must("", []string{"Status:", "Failed", "Reason:", "DeadlineExceeded", "Message:", "Pod was active on the node longer than the specified deadline"},
			"describe", "pod", "deadline")
		r.waitEvent("default", "deadline", "DeadlineExceeded", 10*time.Second)
		r.waitEvent("default", "deadline", "Killing", 10*time.Second)
	}
}
