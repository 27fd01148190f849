package podworker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/nodeagent/podworker"
)

// configRuntime is the simulated runtime, remembering the config of every
// container it creates.
type configRuntime struct {
	*sim.Runtime
	mu   sync.Mutex
	cfgs map[string]runtimeapi.ContainerConfig // by container name
}

func (r *configRuntime) CreateContainer(ctx context.Context, sandboxID string, cfg runtimeapi.ContainerConfig) (string, error) {
	r.mu.Lock()
	r.cfgs[cfg.Name] = cfg
	r.mu.Unlock()
	return r.Runtime.CreateContainer(ctx, sandboxID, cfg)
}

func (r *configRuntime) config(name string) (runtimeapi.ContainerConfig, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, ok := r.cfgs[name]
	return cfg, ok
}

// TestSecurityContextGivenToTheRuntime checks what the pod worker asks of the
// runtime for a pod's and its containers' securityContext, as the kubelet's
// determineEffectiveSecurityContext synthesizes the CRI's
// LinuxContainerSecurityContext.
func TestSecurityContextGivenToTheRuntime(t *testing.T) {
	root := int64(0)
	tests := []struct {
		name           string
		pod            *corev1.PodSecurityContext
		container      *corev1.SecurityContext
		seccompDefault bool
		want           runtimeapi.SecurityContext
	}{
		{name: "none: the image's user (root), escalation allowed, Unconfined",
			want: runtimeapi.SecurityContext{RunAsUser: &root, Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileUnconfined}}},
		{name: "SeccompDefault gives RuntimeDefault to containers that ask for nothing", seccompDefault: true,
			want: runtimeapi.SecurityContext{RunAsUser: &root, Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileRuntimeDefault}}},
		{name: "SeccompDefault leaves an explicit Unconfined", seccompDefault: true,
			container: &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}},
			want:      runtimeapi.SecurityContext{RunAsUser: &root, Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileUnconfined}}},
		{name: "pod defaults, fsGroup and supplemental groups",
			pod: &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(3000)), FSGroup: ptr(int64(2000)),
				SupplementalGroups: []int64{4000, 5000}, SupplementalGroupsPolicy: ptr(corev1.SupplementalGroupsPolicyStrict),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			want: runtimeapi.SecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(3000)), SupplementalGroups: []int64{2000, 4000, 5000},
				SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsStrict, Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileRuntimeDefault}}},
		{name: "the container's settings win over the pod's",
			pod: &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(3000)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			container: &corev1.SecurityContext{RunAsUser: ptr(int64(2000)), ReadOnlyRootFilesystem: ptr(true), AllowPrivilegeEscalation: ptr(false),
				Capabilities:   &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"ALL"}},
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr("profiles/audit.json")}},
			want: runtimeapi.SecurityContext{RunAsUser: ptr(int64(2000)), RunAsGroup: ptr(int64(3000)), ReadonlyRootfs: true, NoNewPrivs: true,
				Capabilities: &runtimeapi.Capabilities{Add: []string{"NET_ADMIN"}, Drop: []string{"ALL"}},
				Seccomp:      runtimeapi.SecurityProfile{Type: runtimeapi.ProfileLocalhost, LocalhostRef: "/seccomp-root/profiles/audit.json"}}},
		{name: "allowPrivilegeEscalation true, privileged",
			container: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(true), Privileged: ptr(true)},
			want:      runtimeapi.SecurityContext{RunAsUser: &root, Privileged: true, Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileUnconfined}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srt, err := sim.New(sim.Config{})
			if err != nil {
				t.Fatal(err)
			}
			rt := &configRuntime{Runtime: srt, cfgs: map[string]runtimeapi.ContainerConfig{}}
			rec := newRecorder()
			cfg := simConfig(t, srt, rec)
			cfg.Runtime, cfg.SeccompDefault, cfg.SeccompProfileRoot = rt, tt.seccompDefault, "/seccomp-root"
			m := startManager(t, cfg)
			pod := newPod("p", corev1.Container{Name: "c", Image: "busybox", SecurityContext: tt.container})
			pod.Spec.SecurityContext = tt.pod
			m.Sync(pod)
			rec.waitFor(t, pod, 5*time.Second, "Running", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning })
			got, _ := rt.config("c")
			if !reflect.DeepEqual(got.Security, tt.want) {
				t.Errorf("security context\n got %+v\nwant %+v", got.Security, tt.want)
			}
		})
	}
}

// TestRunAsNonRoot checks the kubelet's verifyRunAsNonRoot: the container
// waits with CreateContainerConfigError and the kubelet's message, and a
// Failed event says it.
func TestRunAsNonRoot(t *testing.T) {
	rt, err := sim.New(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	m := startManager(t, simConfig(t, rt, rec))
	for _, tt := range []struct {
		name      string
		pod       *corev1.PodSecurityContext
		container *corev1.SecurityContext
		want      string // %s: the pod as the kubelet names it
	}{
		// The simulated runtime's images name no user: they run as root.
		{"image-root", &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)}, nil,
			`container has runAsNonRoot and image will run as root (pod: "%s", container: c)`},
		{"uid-zero", &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)}, &corev1.SecurityContext{RunAsUser: ptr(int64(0))},
			`container's runAsUser breaks non-root policy (pod: "%s", container: c)`},
		{"container-says-so", nil, &corev1.SecurityContext{RunAsNonRoot: ptr(true)},
			`container has runAsNonRoot and image will run as root (pod: "%s", container: c)`},
		{"non-root-user", &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(1000))}, nil, ""},
		{"container-allows-root", &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)}, &corev1.SecurityContext{RunAsNonRoot: ptr(false)}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := newPod(tt.name, corev1.Container{Name: "c", Image: "busybox", SecurityContext: tt.container})
			pod.Spec.SecurityContext = tt.pod
			m.Sync(pod)
			if tt.want == "" {
				rec.waitFor(t, pod, 5*time.Second, "Running", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning })
				return
			}
			want := fmt.Sprintf(tt.want, pod.Name+"_default("+string(pod.UID)+")")
			st := rec.waitFor(t, pod, 5*time.Second, "CreateContainerConfigError", func(st corev1.PodStatus) bool {
				w := container(st, "c").State.Waiting
				return w != nil && w.Reason == podworker.ReasonCreateContainerConfigError
			})
			if w := container(st, "c").State.Waiting; w.Message != want || st.Phase != corev1.PodPending {
				t.Errorf("status:\n%s\nwant message %q", describe(st), want)
			}
			if !strings.Contains(rec.eventList(pod), "Error: "+want) {
				t.Errorf("no Failed event with the message:\n%s", rec.eventList(pod))
			}
		})
	}
}

// TestSimFSGroupVolumes checks the kubelet's volume ownership with a pod
// fsGroup: an emptyDir made group-owned and setgid once (a second container
// mounting it leaves it so), and a configMap volume whose every new version
// gets the group and group-read before it is published.
func TestSimFSGroupVolumes(t *testing.T) {
	dataplanetest.RequireRoot(t) // chown to a group this process is not in
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rt, err := sim.New(sim.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	objs := &objects{r: resolver{configMaps: map[string]*corev1.ConfigMap{"default/cfg": {Data: map[string]string{"color": "blue"}}}}}
	cfg := simConfig(t, rt, rec)
	cfg.Clock, cfg.Resolver = clk, objs
	m := startManager(t, cfg)
	mounts := []corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/cfg"}, {Name: "data", MountPath: "/data"}}
	pod := newPod("fsgroup", corev1.Container{Name: "a", Image: "busybox:1", VolumeMounts: mounts}, corev1.Container{Name: "b", Image: "busybox:1", VolumeMounts: mounts})
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr(int64(2000))}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, DefaultMode: ptr(int32(0o400))}}},
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	m.Sync(pod)
	rec.waitFor(t, pod, 5*time.Second, "Running", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning })
	vols := filepath.Join(cfg.VolumeDir, string(pod.UID), "volumes")
	owner := func(p string) string {
		fi, err := os.Stat(p)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%d %v", fi.Sys().(*syscall.Stat_t).Gid, fi.Mode())
	}
	for p, want := range map[string]string{
		filepath.Join(vols, "kubernetes.io~empty-dir", "data"):         "2000 dgrwxrwxrwx",
		filepath.Join(vols, "kubernetes.io~configmap", "cfg"):          "2000 dgrwxrwxrwx",
		filepath.Join(vols, "kubernetes.io~configmap", "cfg", "color"): "2000 -r--r-----",
	} {
		if got := owner(p); got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
	}
	objs.set(func(r resolver) {
		r.configMaps["default/cfg"] = &corev1.ConfigMap{Data: map[string]string{"color": "red", "size": "M"}}
	})
	stepWhenWaiting(t, clk, podworker.DefaultSyncFrequency*3/2)
	size := filepath.Join(vols, "kubernetes.io~configmap", "cfg", "size")
	deadline := time.Now().Add(5 * time.Second)
	for owner(size) != "2000 -r--r-----" {
		if time.Now().After(deadline) {
			t.Fatalf("a new key of the ConfigMap: %s", owner(size))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
