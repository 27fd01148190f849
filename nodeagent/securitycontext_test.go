package nodeagent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestRealSecurityContextWithKubectl: a pod's securityContext, seen as a
// user sees it with kubectl: exec shows the user, groups, capabilities,
// no_new_privs and seccomp asked for; describe shows the kubelet's refusal
// of a root image under runAsNonRoot.
func TestRealSecurityContextWithKubectl(t *testing.T) {
	r := newRealCluster(t)
	r.startAgent(t)
	r.must(`apiVersion: v1
kind: Pod
metadata: {name: locked}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], fsGroup: 2000}
  containers:
  - name: c
    image: `+r.env.Busybox+`
    command: [sleep, "3600"]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
    volumeMounts: [{name: data, mountPath: /data}]
  - name: admin
    image: `+r.env.Busybox+`
    command: [sleep, "3600"]
    securityContext: {runAsUser: 0, capabilities: {add: [NET_ADMIN]}}
  - name: privileged
    image: `+r.env.Busybox+`
    command: [sleep, "3600"]
    securityContext: {runAsUser: 0, privileged: true}
  volumes: [{name: data, emptyDir: {}}]
`, []string{"pod/locked created"}, "apply", "-f", "-")
	r.waitPod("default", "locked", 60*time.Second, "Running", running)

	r.must("", []string{"uid=1000 gid=3000 groups=2000,3000,4000\n"}, "exec", "locked", "-c", "c", "--", "id")
	r.must("", []string{"CapEff:\t0000000000000000\n", "NoNewPrivs:\t1\n", "Seccomp:\t2\n"}, "exec", "locked", "-c", "c", "--", "cat", "/proc/self/status")
	r.must("", []string{"touch: /x: Read-only file system\n", "2000 2777\n1000 2000\n"},
		"exec", "locked", "-c", "c", "--", "sh", "-c", "touch /x 2>&1; stat -c '%g %a' /data; touch /data/f && stat -c '%u %g' /data/f")
	// Without capabilities, not even root in the container could do this; the user is not root anyway.
	r.must("", []string{"chown: /data/f: Operation not permitted"}, "exec", "locked", "-c", "c", "--", "sh", "-c", "chown 0 /data/f 2>&1; true")
	r.must("", []string{`{"gid":3000,"supplementalGroups":[2000,3000,4000],"uid":1000}`},
		"get", "pod", "locked", "-o", "jsonpath={.status.containerStatuses[?(@.name==\"c\")].user.linux}")

	// The default capabilities plus NET_ADMIN (bit 12), no seccomp, privilege escalation allowed.
	r.must("", []string{"CapEff:\t00000000a80435fb\n", "NoNewPrivs:\t0\n", "Seccomp:\t0\n"}, "exec", "locked", "-c", "admin", "--", "cat", "/proc/self/status")
	r.must("", []string{"ok"}, "exec", "locked", "-c", "admin", "--", "sh", "-c", "ip link set lo mtu 1500 && echo ok")
	// Privileged: every capability this machine has.
	r.must("", []string{"CapEff:\t000001ff"}, "exec", "locked", "-c", "privileged", "--", "cat", "/proc/self/status")

	// runAsNonRoot with an image that runs as root: the kubelet refuses to start it.
	r.must(`apiVersion: v1
kind: Pod
metadata: {name: nonroot}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: c, image: `+r.env.Busybox+`, command: [sleep, "3600"]}
`, []string{"pod/nonroot created"}, "apply", "-f", "-")
	p := r.waitPod("default", "nonroot", 60*time.Second, "CreateContainerConfigError", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "CreateContainerConfigError"
	})
	msg := fmt.Sprintf(`container has runAsNonRoot and image will run as root (pod: "nonroot_default(%s)", container: c)`, p.UID)
	r.must("", []string{"nonroot", "0/1", "CreateContainerConfigError"}, "get", "pod", "nonroot")
	out := r.must("", []string{"State:", "Waiting", "Reason:", "CreateContainerConfigError", "Failed", "Error: " + msg}, "describe", "pod", "nonroot")
	if strings.Contains(out, "Started container") {
		t.Errorf("the container started:\n%s", out)
	}
}
