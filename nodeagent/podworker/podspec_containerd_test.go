package podworker_test

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/nodeagent/podworker"
)

// execIn runs cmd in the named container of pod and returns its output.
func execIn(t *testing.T, e *dataplanetest.Env, m *podworker.Manager, pod *corev1.Pod, name string, cmd ...string) string {
	t.Helper()
	ctx := t.Context()
	id, err := m.ContainerID(ctx, pod.UID, name, false)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code, err := e.Runtime.Exec(ctx, id, runtimeapi.ExecOptions{Cmd: cmd, Stdout: &out, Stderr: &out})
	if err != nil || code != 0 {
		t.Fatalf("exec %q: code %d err %v: %s", cmd, code, err, out.String())
	}
	return out.String()
}

func sleeper(e *dataplanetest.Env, name string) corev1.Container {
	return corev1.Container{Name: name, Image: e.Busybox, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "3600"}}
}

// mountsUnder lists this machine's mount points under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// TestPodSpecOnContainerd checks, on a real containerd, the pod fields the
// kubelet honours and the conformance suite found ignored: the Downward
// API (env with limits defaulted to the node's allocatable, volumes that
// follow the pod's labels), projected volumes, memory emptyDirs, subPathExpr,
// the managed /etc/hosts with hostAliases, dnsConfig, sysctls, hostNetwork,
// termination messages and lifecycle hooks.
func TestPodSpecOnContainerd(t *testing.T) {
	e := dataplanetest.New(t)
	rec := newRecorder()
	cfg := realConfig(t, e, e.Runtime, rec)
	cfg.SyncFrequency = time.Second
	cfg.NodeAllocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("3Gi")}
	m := startManager(t, cfg)
	running := func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning }

	t.Run("downward API, projected, tmpfs, subPathExpr, hosts, dns, sysctls", func(t *testing.T) {
		c := sleeper(e, "c")
		mode := int32(0o400)
		c.Env = []corev1.EnvVar{
			{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
			{Name: "MEM_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		}
		c.VolumeMounts = []corev1.VolumeMount{
			{Name: "podinfo", MountPath: "/etc/podinfo"},
			{Name: "all", MountPath: "/etc/all"},
			{Name: "mem", MountPath: "/mem"},
			{Name: "scratch", MountPath: "/sub", SubPathExpr: "$(POD_NAME)"},
		}
		pod := newPod("spec", c)
		pod.Annotations = map[string]string{"builder": "bar"}
		size := resource.MustParse("8Mi")
		pod.Spec.Volumes = []corev1.Volume{
			{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "podname", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}, Mode: &mode},
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
				{Path: "cpu_limit", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.cpu", Divisor: resource.MustParse("1m")}},
			}}}},
			{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "color", Path: "cfg/color"}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
			}}}},
			{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}
		pod.Spec.HostAliases = []corev1.HostAlias{{IP: "127.0.0.9", Hostnames: []string{"foo.local", "bar.local"}}}
		ndots := "2"
		pod.Spec.DNSPolicy = corev1.DNSNone
		pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"127.0.0.10"}, Searches: []string{"example.test"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &ndots}}}
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}, {Name: "net/ipv4/ip_local_port_range", Value: "20000 30000"}}}
		m.Sync(pod)
		st := rec.waitFor(t, pod, 30*time.Second, "Running", running)

		if got := execIn(t, e, m, pod, "c", "sh", "-c", "echo $CPU_LIMIT $MEM_LIMIT"); got != "2 3072\n" {
			t.Errorf("limits from the node's allocatable: %q, want %q", got, "2 3072\n")
		}
		got := execIn(t, e, m, pod, "c", "sh", "-c", `cat /etc/podinfo/podname; echo; cat /etc/podinfo/labels; echo; cat /etc/podinfo/annotations; echo; cat /etc/podinfo/cpu_limit; echo; stat -L -c %a /etc/podinfo/podname /etc/podinfo/labels; cat /etc/all/cfg/color /etc/all/password /etc/all/name`)
		want := "spec\napp=\"spec\"\nbuilder=\"bar\"\n2000\n400\n644\nblues3cretspec"
		if got != want {
			t.Errorf("downwardAPI and projected files:\n got %q\nwant %q", got, want)
		}
		if got := execIn(t, e, m, pod, "c", "sh", "-c", "grep ' /mem ' /proc/mounts"); !strings.HasPrefix(got, "tmpfs /mem tmpfs rw") || !strings.Contains(got, "size=8192k") {
			t.Errorf("memory emptyDir: %q", got)
		}
		execIn(t, e, m, pod, "c", "sh", "-c", "echo x > /sub/f")
		if b, err := os.ReadFile(filepath.Join(cfg.VolumeDir, string(pod.UID), "volumes", "kubernetes.io~empty-dir", "scratch", "spec", "f")); err != nil || string(b) != "x\n" {
			t.Errorf("subPathExpr $(POD_NAME): %q %v", b, err)
		}
		hosts := execIn(t, e, m, pod, "c", "cat", "/etc/hosts")
		wantHosts := "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n" +
			st.PodIP + "\tspec\n\n# Entries added by HostAliases.\n127.0.0.9\tfoo.local\tbar.local\n"
		if hosts != wantHosts {
			t.Errorf("/etc/hosts:\n got %q\nwant %q", hosts, wantHosts)
		}
		if got := execIn(t, e, m, pod, "c", "cat", "/etc/resolv.conf"); got != "search example.test\nnameserver 127.0.0.10\noptions ndots:2\n" {
			t.Errorf("resolv.conf: %q", got)
		}
		if got := execIn(t, e, m, pod, "c", "cat", "/proc/sys/kernel/shm_rmid_forced", "/proc/sys/net/ipv4/ip_local_port_range"); got != "1\n20000\t30000\n" {
			t.Errorf("sysctls: %q", got)
		}

		// Labels and annotations changed on the pod show in its files within a sync period.
		changed := pod.DeepCopy()
		changed.Labels["tier"] = "web"
		m.Sync(changed)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if got := execIn(t, e, m, pod, "c", "cat", "/etc/podinfo/labels"); got == "app=\"spec\"\ntier=\"web\"" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("labels file not updated")
			}
			time.Sleep(200 * time.Millisecond)
		}

		m.Sync(deleted(changed))
		rec.waitTerminated(t, pod, 20*time.Second)
		if ms := mountsUnder(t, filepath.Join(cfg.VolumeDir, string(pod.UID))); len(ms) != 0 {
			t.Errorf("left mounted after teardown: %v", ms)
		}
	})

	t.Run("hostNetwork", func(t *testing.T) {
		pod := newPod("hostnet", sleeper(e, "c"))
		pod.Spec.HostNetwork = true
		pod.Spec.HostAliases = []corev1.HostAlias{{IP: "127.0.0.9", Hostnames: []string{"foo.local"}}}
		m.Sync(pod)
		st := rec.waitFor(t, pod, 30*time.Second, "Running", running)
		if st.PodIP != "127.0.0.1" || len(st.PodIPs) != 1 || st.PodIPs[0].IP != "127.0.0.1" {
			t.Errorf("podIP %q %v, want the node's 127.0.0.1", st.PodIP, st.PodIPs)
		}
		self, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		if got := execIn(t, e, m, pod, "c", "readlink", "/proc/self/ns/net"); got != self+"\n" {
			t.Errorf("network namespace %q, want the node's %q", got, self)
		}
		host, err := os.Hostname()
		if err != nil {
			t.Fatal(err)
		}
		if got := execIn(t, e, m, pod, "c", "hostname"); got != host+"\n" {
			t.Errorf("hostname %q, want the node's %q", got, host)
		}
		node, err := os.ReadFile("/etc/hosts")
		if err != nil {
			t.Fatal(err)
		}
		want := "# Kubernetes-managed hosts file (host network).\n" + string(node) + "\n# Entries added by HostAliases.\n127.0.0.9\tfoo.local\n"
		if got := execIn(t, e, m, pod, "c", "cat", "/etc/hosts"); got != want {
			t.Errorf("/etc/hosts:\n got %q\nwant %q", got, want)
		}
		// Port-forward reaches the node's own loopback, where the pod listens.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		go func() {
			if c, err := lis.Accept(); err == nil {
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
		sbID, err := m.SandboxID(t.Context(), pod.UID)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := e.Runtime.PortForward(t.Context(), sbID, int32(lis.Addr().(*net.TCPAddr).Port))
		if err != nil {
			t.Fatalf("port-forward to a hostNetwork pod: %v", err)
		}
		b, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(b) != "hi" {
			t.Errorf("port-forward read %q %v", b, err)
		}
		m.Sync(deleted(pod))
		rec.waitTerminated(t, pod, 20*time.Second)
	})

	t.Run("termination messages", func(t *testing.T) {
		file := corev1.Container{Name: "c", Image: e.Busybox, ImagePullPolicy: corev1.PullIfNotPresent,
			Command:                []string{"sh", "-c", "printf OK > /dev/termination-custom-log"},
			TerminationMessagePath: "/dev/termination-custom-log", TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError}
		fromFile := newPod("tmfile", file)
		fromFile.Spec.RestartPolicy = corev1.RestartPolicyNever
		logs := corev1.Container{Name: "c", Image: e.Busybox, ImagePullPolicy: corev1.PullIfNotPresent,
			Command:                []string{"sh", "-c", "echo one; echo DONE; exit 1"},
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError}
		fromLogs := newPod("tmlogs", logs)
		fromLogs.Spec.RestartPolicy = corev1.RestartPolicyNever
		m.Sync(fromFile)
		m.Sync(fromLogs)
		for pod, want := range map[*corev1.Pod]string{fromFile: "OK", fromLogs: "one\nDONE\n"} {
			st := rec.waitFor(t, pod, 30*time.Second, "finished", func(st corev1.PodStatus) bool {
				return st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
			})
			if term := container(st, "c").State.Terminated; term == nil || term.Message != want {
				t.Errorf("%s: terminated %+v, want message %q", pod.Name, term, want)
			}
			// dnsPolicy ClusterFirst (the default) without cluster DNS: the kubelet's fallback and warning.
			if !strings.Contains(rec.eventList(pod), `MissingClusterDNS : pod: "default/`+pod.Name+`". kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" policy. Falling back to "Default" policy.`) {
				t.Errorf("%s: no MissingClusterDNS event:\n%s", pod.Name, rec.eventList(pod))
			}
			m.Sync(deleted(pod))
			rec.waitTerminated(t, pod, 20*time.Second)
		}
	})

	t.Run("lifecycle hooks", func(t *testing.T) {
		ctx := t.Context()
		handler := newPod("handler", helloContainer(e))
		m.Sync(handler)
		hst := rec.waitFor(t, handler, 30*time.Second, "Running", running)

		marks := t.TempDir()
		c := sleeper(e, "c")
		c.VolumeMounts = []corev1.VolumeMount{{Name: "marks", MountPath: "/marks"}}
		c.Lifecycle = &corev1.Lifecycle{
			PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo started > /marks/poststart"}}},
			PreStop:   &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Host: hst.PodIP, Port: intstr.FromInt(8080), Path: "/prestop"}},
		}
		hooked := newPod("hooked", c)
		hooked.Spec.Volumes = []corev1.Volume{{Name: "marks", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: marks}}}}
		m.Sync(hooked)
		rec.waitFor(t, hooked, 30*time.Second, "Running", running)
		if b, err := os.ReadFile(filepath.Join(marks, "poststart")); err != nil || string(b) != "started\n" {
			t.Errorf("postStart exec hook: %q %v", b, err)
		}
		m.Sync(deleted(hooked))
		rec.waitTerminated(t, hooked, 20*time.Second)
		hid, err := m.ContainerID(ctx, handler.UID, "web", false)
		if err != nil {
			t.Fatal(err)
		}
		// The handler's log line reaches its CRI log through the shim after it answered: look
		// for it a while.
		var hlogs bytes.Buffer
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			hlogs.Reset()
			err := e.Runtime.Logs(ctx, hid, runtimeapi.LogOptions{TailLines: -1}, &hlogs)
			if err == nil && strings.Contains(hlogs.String(), "GET /prestop") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("preStop httpGet hook not seen by the handler: %q %v", hlogs.String(), err)
				break
			}
		}

		bad := sleeper(e, "c")
		bad.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo nope >&2; exit 3"}}}}
		failing := newPod("badhook", bad)
		failing.Spec.RestartPolicy = corev1.RestartPolicyNever
		m.Sync(failing)
		st := rec.waitFor(t, failing, 30*time.Second, "killed", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodFailed })
		if term := container(st, "c").State.Terminated; term == nil || term.ExitCode != 137 {
			t.Errorf("container after a failed postStart: %s", describe(st))
		}
		if rec.countEvents(failing, podworker.EventFailedPostStartHook) != 1 || !strings.Contains(rec.eventList(failing), "Killing spec.containers{c}: FailedPostStartHook") {
			t.Errorf("events:\n%s", rec.eventList(failing))
		}
		for _, p := range []*corev1.Pod{failing, handler} {
			m.Sync(deleted(p))
			rec.waitTerminated(t, p, 20*time.Second)
		}
	})
}

// TestPostStartHookRestart checks that a container whose postStart hook
// fails waits to restart with PostStartHookError and the kubelet's message.
func TestPostStartHookRestart(t *testing.T) {
	e := dataplanetest.New(t)
	rec := newRecorder()
	m := startManager(t, realConfig(t, e, e.Runtime, rec))
	c := sleeper(e, "c")
	c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo out; echo nope >&2; exit 3"}}}}
	pod := newPod("hookerr", c)
	m.Sync(pod)
	want := `Exec lifecycle hook ([sh -c echo out; echo nope >&2; exit 3]) for Container "c" in Pod "hookerr_default(` + string(pod.UID) + `)" failed - error: command 'sh -c echo out; echo nope >&2; exit 3' exited with 3: nope` + "\n" + `, message: "out\nnope\n"`
	rec.waitEver(t, pod, 30*time.Second, "waiting with PostStartHookError and the kubelet's message", func(st corev1.PodStatus) bool {
		w := container(st, "c").State.Waiting
		return w != nil && w.Reason == podworker.ReasonPostStartHookError && w.Message == want
	})
	m.Sync(deleted(pod))
	rec.waitTerminated(t, pod, 20*time.Second)
}
