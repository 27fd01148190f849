package nodeagent_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRealPodSpecAsKubectlShowsIt checks, through kubectl on real
// containerd, pod fields the conformance suite found ignored: a
// downwardAPI volume whose labels file follows `kubectl label`, the
// container's limits defaulted to the node's allocatable, hostAliases in
// /etc/hosts, a termination message from the logs, and a failed postStart
// hook as `kubectl describe` shows it.
func TestRealPodSpecAsKubectlShowsIt(t *testing.T) {
	r := newRealCluster(t)
	r.startAgent(t, func(p *agentProcess) { p.SyncFrequency = time.Second })

	r.must(`apiVersion: v1
kind: Pod
metadata: {name: info, labels: {app: info}}
spec:
  terminationGracePeriodSeconds: 1
  hostAliases:
  - {ip: 127.0.0.9, hostnames: [foo.local, bar.local]}
  containers:
  - name: c
    image: `+r.env.Busybox+`
    command: [sleep, "3600"]
    env:
    - name: CPU_LIMIT
      valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    volumeMounts:
    - {name: podinfo, mountPath: /etc/podinfo}
  volumes:
  - name: podinfo
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
`, []string{"pod/info created"}, "apply", "-f", "-")
	r.waitPod("default", "info", 60*time.Second, "Running", running)
	node, err := r.client.CoreV1().Nodes().Get(t.Context(), "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cpu := node.Status.Allocatable.Cpu().String()
	r.must("", []string{"CPU_LIMIT=" + cpu + "\n"}, "exec", "info", "--", "sh", "-c", "echo CPU_LIMIT=$CPU_LIMIT")
	r.must("", []string{"# Kubernetes-managed hosts file.\n", "\n# Entries added by HostAliases.\n127.0.0.9\tfoo.local\tbar.local\n"}, "exec", "info", "--", "cat", "/etc/hosts")
	r.must("", []string{`app="info"`}, "exec", "info", "--", "cat", "/etc/podinfo/labels")
	r.must("", nil, "label", "pod", "info", "tier=web")
	r.eventually(30*time.Second, []string{`app="info"` + "\n" + `tier="web"`}, "exec", "info", "--", "cat", "/etc/podinfo/labels")

	r.must(`apiVersion: v1
kind: Pod
metadata: {name: done}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: `+r.env.Busybox+`
    command: [sh, -c, "echo DONE; exit 1"]
    terminationMessagePolicy: FallbackToLogsOnError
---
apiVersion: v1
kind: Pod
metadata: {name: hook}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: `+r.env.Busybox+`
    command: [sleep, "3600"]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, "exit 7"]}
`, []string{"pod/done created", "pod/hook created"}, "apply", "-f", "-")
	failed := func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed }
	r.waitPod("default", "done", 60*time.Second, "Failed", failed)
	r.must("", []string{"DONE"}, "get", "pod", "done", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.message}")
	r.waitPod("default", "hook", 60*time.Second, "Failed", failed)
	r.waitEvent("default", "hook", "FailedPostStartHook", 10*time.Second)
	out := r.must("", []string{"FailedPostStartHook", "PostStartHook failed"}, "describe", "pod", "hook")
	if !strings.Contains(out, "Exit Code:    137") {
		t.Errorf("describe: the container killed after its hook failed should show exit code 137:\n%s", out)
	}
}
