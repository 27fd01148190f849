package volumebinding_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/localvolume"
	"github.com/logplane/logplane/nodeagent"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
	"github.com/logplane/logplane/reconcilers/volumebinding"
)

func claimPod(name, image, script string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: %s
    command: [sh, -c, %q]
    volumeMounts:
    - {name: data, mountPath: /data, subPath: app}
    - {name: data, mountPath: /ro, readOnly: true}
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
`, name, image, script)
}

// TestLocalVolumeOnContainerd, on a node running real containers: `kubectl apply` a claim of
// the default class `local` (WaitForFirstConsumer: it waits, with Kubernetes' event) and a pod
// writing a file to it through a subPath mount, with a read-only mount of the whole volume
// beside; the scheduler selects the node, the node's agent provisions the directory and writes
// the volume, the binder binds, the pod runs and the file is in the node's volume directory;
// the pod deleted and made again finds the data; a pod whose claim is never bound waits in
// ContainerCreating with a FailedMount event; the claim deleted, reclaimPolicy Delete removes
// the directory and the volume.
func TestLocalVolumeOnContainerd(t *testing.T) {
	env := dataplanetest.New(t) // skips without root and containerd, fails under LOGPLANE_REQUIRE_ROOT_TESTS=1
	c := reconcilerstest.Start(t, reconcilerstest.Options{})
	vols, err := localvolume.New(t.Context(), localvolume.Config{Dir: filepath.Join(env.Dir, "localvolumes"), Backend: localvolume.Dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vols.Close() })
	metrics := prometheus.NewRegistry()
	node, err := c.Nodes.AddContainerdWith(env, func(cfg *nodeagent.Config) { cfg.LocalVolumes, cfg.Metrics = vols, metrics })
	if err != nil {
		t.Fatal(err)
	}

	c.MustApply(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  storageClassName: local
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
`)
	c.Eventually(30*time.Second, hasEvent(t, c, "data", volumebinding.ReasonWaitForFirstConsumer, "waiting for first consumer to be created before binding"))
	c.MustApply(claimPod("writer", env.Busybox, `echo hello > /data/file && (touch /ro/x 2>/dev/null && echo writable || echo readonly) > /data/ro-check; sleep 3600`))
	waitRunning := func(name string) {
		t.Helper()
		c.Eventually(120*time.Second, func() (bool, string) {
			p, err := c.Client.CoreV1().Pods("default").Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return p.Status.Phase == "Running", fmt.Sprintf("pod %s is %s on %q: %+v", name, p.Status.Phase, p.Spec.NodeName, p.Status.ContainerStatuses)
		})
	}
	waitRunning("writer")
	claim, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(t.Context(), "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvName := "pvc-" + string(claim.UID)
	if claim.Spec.VolumeName != pvName || claim.Status.Phase != "Bound" || claim.Annotations["volume.kubernetes.io/selected-node"] != node {
		t.Fatalf("claim: volume %q, phase %s, annotations %v", claim.Spec.VolumeName, claim.Status.Phase, claim.Annotations)
	}
	c.Eventually(30*time.Second, hasEvent(t, c, "data", nodeagent.ReasonProvisioningSucceeded, "Successfully provisioned volume "+pvName))
	dir, err := vols.Path(t.Context(), pvName)
	if err != nil {
		t.Fatal(err)
	}
	readFile := func(name string) string {
		t.Helper()
		var got string
		c.Eventually(60*time.Second, func() (bool, string) {
			b, err := os.ReadFile(filepath.Join(dir, "app", name))
			got = strings.TrimSpace(string(b))
			return err == nil && got != "", fmt.Sprintf("%s: %v %q", name, err, got)
		})
		return got
	}
	if got := readFile("file"); got != "hello" {
		t.Errorf("the file on the node's volume holds %q", got)
	}
	if got := readFile("ro-check"); got != "readonly" {
		t.Errorf("the read-only mount is %s", got)
	}
	out := c.MustKubectl("get", "pv", pvName)
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 7 || strings.Join(f[1:7], " ") != "64Mi RWO Delete Bound default/data local" {
		t.Errorf("kubectl get pv:\n%s", out)
	}

	// The pod deleted and made again: the data is there.
	c.MustKubectl("delete", "pod", "writer", "--wait=true", "--timeout=60s")
	c.MustApply(claimPod("reader", env.Busybox, `cat /data/file > /data/seen; sleep 3600`))
	waitRunning("reader")
	if got := readFile("seen"); got != "hello" {
		t.Errorf("the new pod read %q", got)
	}

	// The kubelet's volume metrics.
	stat := func(name string) float64 {
		t.Helper()
		mfs, err := metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "kubelet_volume_stats_"+name {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["namespace"] == "default" && labels["persistentvolumeclaim"] == "data" && labels["node"] == node {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no kubelet_volume_stats_%s for default/data", name)
		return 0
	}
	if capacity, used := stat("capacity_bytes"), stat("used_bytes"); capacity < 64<<20 || used <= 0 || used > capacity {
		t.Errorf("volume stats: capacity %v, used %v", capacity, used)
	}

	// Growing the claim (the class allows expansion) grows the volume.
	c.MustKubectl("patch", "pvc", "data", "-p", `{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}`)
	c.Eventually(60*time.Second, func() (bool, string) {
		got, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(t.Context(), "data", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		q := got.Status.Capacity["storage"]
		v, verr := vols.Get(pvName)
		return q.String() == "128Mi" && verr == nil && v.SizeBytes == 128<<20, fmt.Sprintf("claim capacity %s, volume %+v %v", q.String(), v, verr)
	})
	c.Eventually(30*time.Second, hasEvent(t, c, "data", nodeagent.ReasonVolumeResizeSucceeded, "succeeded"))

	// An agent killed after making a volume and before writing its PersistentVolume: the next
	// pass finds the volume made and writes the PersistentVolume once, nothing twice.
	c.MustApply(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: crash}
spec:
  storageClassName: local
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
`)
	crash, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(t.Context(), "crash", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crashPV := "pvc-" + string(crash.UID)
	if _, err := vols.Create(t.Context(), crashPV, 1<<20); err != nil {
		t.Fatal(err)
	}
	before := len(vols.List())
	c.MustKubectl("annotate", "pvc", "crash", "volume.kubernetes.io/selected-node="+node)
	waitClaim(t, c, "crash", "Bound", crashPV)
	if after := len(vols.List()); after != before {
		t.Errorf("%d volumes after provisioning a claim whose volume was made, %d before", after, before)
	}
	c.MustKubectl("delete", "pvc", "crash", "--wait=true", "--timeout=60s")

	// A hand-written hostPath volume, claimed and mounted.
	hostDir := filepath.Join(env.Dir, "by-hand")
	c.MustApply(fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: by-hand}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: %s, type: DirectoryOrCreate}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: manual}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
`, hostDir))
	waitClaim(t, c, "manual", "Bound", "by-hand")
	c.MustApply(strings.Replace(claimPod("by-hand", env.Busybox, `echo by-hand > /data/file; sleep 3600`), "claimName: data", "claimName: manual", 1))
	waitRunning("by-hand")
	c.Eventually(60*time.Second, func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(hostDir, "app", "file"))
		return strings.TrimSpace(string(b)) == "by-hand", fmt.Sprintf("%v %q", err, b)
	})
	c.MustKubectl("delete", "pod", "by-hand", "--wait=true", "--timeout=60s")

	// A pod on the node whose claim is never bound waits in ContainerCreating.
	c.MustApply(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: never}
spec:
  storageClassName: local
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
`)
	c.MustApply(strings.Replace(strings.Replace(claimPod("stuck", env.Busybox, "sleep 3600"), "claimName: data", "claimName: never", 1),
		"spec:\n", "spec:\n  nodeName: "+node+"\n", 1))
	c.Eventually(60*time.Second, hasEvent(t, c, "stuck", "FailedMount", "error processing PVC default/never: PVC is not bound"))
	p, err := c.Client.CoreV1().Pods("default").Get(t.Context(), "stuck", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != "Pending" || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil ||
		p.Status.ContainerStatuses[0].State.Waiting.Reason != "ContainerCreating" {
		t.Errorf("stuck: phase %s, containers %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}
	c.MustKubectl("delete", "pod", "stuck", "reader", "--wait=true", "--timeout=60s")

	// The claim deleted: Released, then the directory and the volume are gone.
	c.MustKubectl("delete", "pvc", "data", "--wait=true", "--timeout=60s")
	c.Eventually(60*time.Second, func() (bool, string) {
		_, err := c.Client.CoreV1().PersistentVolumes().Get(t.Context(), pvName, metav1.GetOptions{})
		_, gerr := vols.Get(pvName)
		_, serr := os.Stat(dir)
		return err != nil && errors.Is(gerr, localvolume.ErrNotFound) && errors.Is(serr, os.ErrNotExist),
			fmt.Sprintf("volume object: %v; manager: %v; directory: %v", err, gerr, serr)
	})
}
