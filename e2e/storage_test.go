package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func claimPodManifest(name, script string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: logplane.local/busybox:latest
    command: [sh, -c, %q]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
`, name, script)
}

// TestClaimOnUp: on `logplane up`, a claim that names no class gets the default class `local`;
// a pod using it runs once the node's agent has provisioned the volume (a node write the control
// plane checks) and the binder has bound it; the data outlives the pod; deleting the claim
// deletes the volume (reclaimPolicy Delete).
func TestClaimOnUp(t *testing.T) {
	m := newMachine(t)
	m.loadImages()
	up := m.up()
	m.waitAPI()
	m.waitNodeReady()
	m.waitRootCA("default")

	if out := m.k("get", "sc"); !strings.Contains(out, "local (default)") || !strings.Contains(out, "WaitForFirstConsumer") {
		t.Fatalf("kubectl get sc:\n%s", out)
	}
	m.apply(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 32Mi}}
`)
	m.apply(claimPodManifest("writer", "echo hello > /data/file; sleep 3600"))
	if out := m.k("wait", "--for=condition=Ready", "pod/writer", "--timeout=120s"); out != "pod/writer condition met\n" {
		t.Fatalf("kubectl wait printed %q", out)
	}
	pvc := m.get("pvc")
	expect(t, pvc, pvc.row(t, "data"), map[string]string{"STATUS": "Bound", "CAPACITY": "32Mi", "ACCESS MODES": "RWO", "STORAGECLASS": "local"})
	if out := m.k("describe", "pvc", "data"); !strings.Contains(out, "ProvisioningSucceeded") || !strings.Contains(out, "WaitForFirstConsumer") && !strings.Contains(out, "ExternalProvisioning") {
		t.Errorf("kubectl describe pvc:\n%s", out)
	}
	if out := m.k("exec", "writer", "--", "cat", "/data/file"); out != "hello\n" {
		t.Errorf("the file reads %q", out)
	}
	m.k("delete", "pod", "writer")
	m.apply(claimPodManifest("reader", "sleep 3600"))
	m.k("wait", "--for=condition=Ready", "pod/reader", "--timeout=120s")
	if out := m.k("exec", "reader", "--", "cat", "/data/file"); out != "hello\n" {
		t.Errorf("after the pod was made again, the file reads %q", out)
	}
	m.k("delete", "pod", "reader")
	m.k("delete", "pvc", "data")
	eventually(t, 60*time.Second, func() error {
		if out := m.kubectl("get", "pv").String(); !strings.Contains(out, "No resources found") {
			return fmt.Errorf("kubectl get pv: %s", out)
		}
		return nil
	})
	up.stop(t)
}
