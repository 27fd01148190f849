package podworker_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/ociimage"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/nodeagent/podworker"
)

func ptr[T any](v T) *T { return &v }

// TestSecurityContextOnContainerd runs pods with securityContext on a real
// containerd and looks from inside, as `kubectl exec` would.
func TestSecurityContextOnContainerd(t *testing.T) {
	e := dataplanetest.New(t)
	rec := newRecorder()
	cfg := realConfig(t, e, e.Runtime, rec)
	m := startManager(t, cfg)
	// Localhost seccomp profiles are found under <dir of VolumeDir>/seccomp, as the kubelet's under <root-dir>/seccomp.
	profiles := filepath.Join(filepath.Dir(cfg.VolumeDir), "seccomp")
	running := func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning }
	sh := func(t *testing.T, pod *corev1.Pod, container, script string) string {
		t.Helper()
		id, err := m.ContainerID(t.Context(), pod.UID, container, false)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := e.Runtime.Exec(t.Context(), id, runtimeapi.ExecOptions{Cmd: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out}); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	sleeper := func(name string, sc *corev1.SecurityContext, mounts ...corev1.VolumeMount) corev1.Container {
		return corev1.Container{Name: name, Image: e.Busybox, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "3600"},
			SecurityContext: sc, VolumeMounts: mounts}
	}

	t.Run("user, groups and fsGroup volumes", func(t *testing.T) {
		pod := newPod("ids", sleeper("c", nil,
			corev1.VolumeMount{Name: "data", MountPath: "/data"},
			corev1.VolumeMount{Name: "creds", MountPath: "/etc/creds"}))
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{
			RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(3000)), SupplementalGroups: []int64{4000}, FSGroup: ptr(int64(2000)),
		}
		pod.Spec.Volumes = []corev1.Volume{
			{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds", DefaultMode: ptr(int32(0o400))}}},
		}
		m.Sync(pod)
		st := rec.waitFor(t, pod, 30*time.Second, "Running", running)
		if got := sh(t, pod, "c", "id"); got != "uid=1000 gid=3000 groups=2000,3000,4000\n" {
			t.Errorf("id: %q", got)
		}
		// The emptyDir belongs to the fsGroup, setgid, group-writable: the
		// non-root user writes there and its files get the group.
		if got := sh(t, pod, "c", "stat -c '%g %a' /data; touch /data/f && stat -c '%u %g' /data/f"); got != "2000 2777\n1000 2000\n" {
			t.Errorf("emptyDir: %q", got)
		}
		// The secret's 0400 file is group-readable by the fsGroup: the user can read it.
		if got := sh(t, pod, "c", "stat -L -c '%g %a' /etc/creds/password; cat /etc/creds/password"); got != "2000 440\ns3cret" {
			t.Errorf("secret volume: %q", got)
		}
		u := container(st, "c").User
		if u == nil || u.Linux == nil || u.Linux.UID != 1000 || u.Linux.GID != 3000 || !reflect.DeepEqual(u.Linux.SupplementalGroups, []int64{2000, 3000, 4000}) {
			t.Errorf("status user: %+v", u)
		}
	})

	t.Run("runAsNonRoot and the image's user", func(t *testing.T) {
		bb, _ := dataplanetest.Images(t)
		image := func(user string) string {
			img, err := ociimage.WithUser(bb, user, "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\n", "root:x:0:\napp:x:1000:\nextra:x:3000:app\n")
			if err != nil {
				t.Fatal(err)
			}
			ref, err := e.Registry.Push(t.Context(), "logplane/busybox-user:"+user, img)
			if err != nil {
				t.Fatal(err)
			}
			return ref
		}
		nonRoot := &corev1.SecurityContext{RunAsNonRoot: ptr(true)}
		root := newPod("root", sleeper("c", nonRoot))
		named := newPod("named", sleeper("c", nonRoot))
		named.Spec.Containers[0].Image = image("app")
		numeric := newPod("numeric", sleeper("c", nonRoot))
		numeric.Spec.Containers[0].Image = image("1000")
		strict := newPod("strict", sleeper("c", nil))
		strict.Spec.Containers[0].Image = numeric.Spec.Containers[0].Image
		strict.Spec.SecurityContext = &corev1.PodSecurityContext{SupplementalGroupsPolicy: ptr(corev1.SupplementalGroupsPolicyStrict)}
		for _, p := range []*corev1.Pod{root, named, numeric, strict} {
			m.Sync(p)
		}
		for _, c := range []struct {
			pod  *corev1.Pod
			want string
		}{
			{root, `container has runAsNonRoot and image will run as root (pod: "%s", container: c)`},
			{named, `container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: "%s", container: c)`},
		} {
			want := fmt.Sprintf(c.want, c.pod.Name+"_default("+string(c.pod.UID)+")")
			rec.waitFor(t, c.pod, 30*time.Second, "CreateContainerConfigError: "+want, func(st corev1.PodStatus) bool {
				w := container(st, "c").State.Waiting
				return w != nil && w.Reason == podworker.ReasonCreateContainerConfigError && w.Message == want
			})
		}
		// The image's numeric user passes; its groups from the image's /etc/group are merged in,
		// unless the pod's supplementalGroupsPolicy is Strict.
		rec.waitFor(t, numeric, 30*time.Second, "Running", running)
		if got := sh(t, numeric, "c", "id"); got != "uid=1000(app) gid=1000(app) groups=1000(app),3000(extra)\n" {
			t.Errorf("numeric image user: id %q", got)
		}
		rec.waitFor(t, strict, 30*time.Second, "Running", running)
		if got := sh(t, strict, "c", "id"); got != "uid=1000(app) gid=1000(app) groups=1000(app)\n" {
			t.Errorf("Strict: id %q", got)
		}
	})

	t.Run("read-only root, capabilities, privilege escalation, seccomp, privileged", func(t *testing.T) {
		if err := os.MkdirAll(profiles, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(profiles, "no-mkdir.json"),
			[]byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		pod := newPod("locked",
			sleeper("plain", nil),
			sleeper("locked", &corev1.SecurityContext{
				ReadOnlyRootFilesystem: ptr(true), AllowPrivilegeEscalation: ptr(false),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			}, corev1.VolumeMount{Name: "scratch", MountPath: "/scratch"}),
			sleeper("netadmin", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}},
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}),
			sleeper("local", &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr("no-mkdir.json")}}),
			sleeper("privileged", &corev1.SecurityContext{Privileged: ptr(true)}),
		)
		// RuntimeDefault for every container of the pod that does not say otherwise.
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
		pod.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		m.Sync(pod)
		rec.waitFor(t, pod, 30*time.Second, "Running and Ready", func(st corev1.PodStatus) bool { return running(st) && ready(st) })
		status := "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\\t' | tr '\\n' ' '"
		for _, c := range []struct{ container, want string }{
			{"plain", "CapEff:00000000a80425fb NoNewPrivs:0 Seccomp:2 "},
			{"locked", "CapEff:0000000000000000 NoNewPrivs:1 Seccomp:2 "},
			{"netadmin", "CapEff:00000000a80435fb NoNewPrivs:0 Seccomp:0 "},
		} {
			if got := sh(t, pod, c.container, status); got != c.want {
				t.Errorf("%s: %q, want %q", c.container, got, c.want)
			}
		}
		if got := sh(t, pod, "locked", "touch /f 2>&1; touch /scratch/f && echo scratch ok; touch /tmp/f 2>&1; chown 1 /scratch/f 2>&1"); got !=
			"touch: /f: Read-only file system\nscratch ok\ntouch: /tmp/f: Read-only file system\nchown: /scratch/f: Operation not permitted\n" {
			t.Errorf("locked: %q", got)
		}
		// The default profile refuses unshare(2), which needs no capability for a user namespace.
		if got := sh(t, pod, "plain", "unshare -U true 2>&1"); !strings.Contains(got, "Operation not permitted") {
			t.Errorf("RuntimeDefault: unshare %q", got)
		}
		if got := sh(t, pod, "netadmin", "unshare -U true && ip link set lo mtu 1500 && echo ok"); got != "ok\n" {
			t.Errorf("netadmin: %q", got)
		}
		if got := sh(t, pod, "local", "mkdir /tmp/d 2>&1"); !strings.Contains(got, "Operation not permitted") {
			t.Errorf("Localhost profile: mkdir %q", got)
		}
		if got := sh(t, pod, "privileged", "grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -d '\\t' | tr '\\n' ' '"); !strings.HasPrefix(got, "CapEff:000001ff") || !strings.HasSuffix(got, "Seccomp:0 ") {
			t.Errorf("privileged: %q", got)
		}
	})
}
