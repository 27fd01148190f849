package podworker_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/nodeagent/podworker"
)

// TestSimPodSpecFields runs a pod that uses every field the node honours
// on the simulated runtime, which makes nothing on the machine (a memory
// emptyDir is a directory there), and checks the kubelet's admission of
// sysctls: an unsafe one not allowed by flag rejects the pod.
func TestSimPodSpecFields(t *testing.T) {
	rt, err := sim.New(sim.Config{Subnet: "10.244.7.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := simConfig(t, rt, rec)
	cfg.Simulated = true
	cfg.NodeAllocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}
	cfg.AllowedUnsafeSysctls = []string{"kernel.msg*"}
	m := startManager(t, cfg)

	svc := "liveness"
	c := corev1.Container{Name: "c", Image: "logplane/hello:1",
		Env:                    []corev1.EnvVar{{Name: "DIR", Value: "d"}},
		VolumeMounts:           []corev1.VolumeMount{{Name: "mem", MountPath: "/mem", SubPathExpr: "$(DIR)"}, {Name: "info", MountPath: "/info"}, {Name: "all", MountPath: "/all"}},
		LivenessProbe:          &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 5000, Service: &svc}}},
		Lifecycle:              &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 0}}, PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Host: "127.0.0.1", Port: intstr.FromInt(1)}}},
		TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	pod := newPod("all", c)
	pod.Spec.HostNetwork = true
	pod.Spec.HostAliases = []corev1.HostAlias{{IP: "127.0.0.9", Hostnames: []string{"foo"}}}
	pod.Spec.DNSPolicy = corev1.DNSNone
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"127.0.0.10"}}
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}, {Name: "kernel.msgmax", Value: "8192"}}}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "cpu", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.cpu"}}}}}},
		{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}}}}},
	}
	m.Sync(pod)
	st := rec.waitFor(t, pod, 5*time.Second, "Running", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning })
	if st.PodIP != cfg.NodeIP {
		t.Errorf("hostNetwork pod IP %q, want the node's %q", st.PodIP, cfg.NodeIP)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.VolumeDir, string(pod.UID), "volumes", "kubernetes.io~downward-api", "info", "cpu")); err != nil || string(b) != "4" {
		t.Errorf("downwardAPI limits.cpu from the node's allocatable: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.VolumeDir, string(pod.UID), "volumes", "kubernetes.io~empty-dir", "mem", "d")); err != nil {
		t.Errorf("subPathExpr in a memory emptyDir: %v", err)
	}

	// An unsafe sysctl that is not allowed: the kubelet's rejection.
	bad := newPod("unsafe", corev1.Container{Name: "c", Image: "logplane/hello:1"})
	bad.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.sem", Value: "1 2 3 4"}}}
	m.Sync(bad)
	st = rec.waitFor(t, bad, 5*time.Second, "rejected", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodFailed })
	if st.Reason != podworker.ReasonSysctlForbidden || st.Message != `Pod was rejected: forbidden sysctl: "kernel.sem" not allowlisted` {
		t.Errorf("rejection: %q %q", st.Reason, st.Message)
	}
	if container(st, "c").State.Running != nil || rec.countEvents(bad, "Started") != 0 || rec.countEvents(bad, podworker.ReasonSysctlForbidden) != 1 {
		t.Errorf("rejected pod started or no event:\n%s\n%s", describe(st), rec.eventList(bad))
	}
	// A net.* sysctl on the host network is refused too.
	hostNet := newPod("hostnet", corev1.Container{Name: "c", Image: "logplane/hello:1"})
	hostNet.Spec.HostNetwork = true
	hostNet.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "net.ipv4.tcp_syncookies", Value: "1"}}}
	m.Sync(hostNet)
	st = rec.waitFor(t, hostNet, 5*time.Second, "rejected", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodFailed })
	if !strings.Contains(st.Message, `"net.ipv4.tcp_syncookies" not allowed with host Net enabled`) {
		t.Errorf("host network sysctl: %q", st.Message)
	}

	// A simulated node records no DNS warning (kwok records none): ClusterFirst
	// without cluster DNS is checked on containerd (TestPodSpecOnContainerd).
	plain := newPod("plain", corev1.Container{Name: "c", Image: "logplane/hello:1"})
	m.Sync(plain)
	rec.waitFor(t, plain, 5*time.Second, "Running", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning })
	if n := rec.countEvents(plain, "MissingClusterDNS"); n != 0 {
		t.Errorf("MissingClusterDNS on a simulated node:\n%s", rec.eventList(plain))
	}
}
