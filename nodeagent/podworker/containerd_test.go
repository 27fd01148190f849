package podworker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/nodeagent/podworker"
)

func realConfig(t *testing.T, e *dataplanetest.Env, rt *containerd.Runtime, rec *recorder) podworker.Config {
	return podworker.Config{
		NodeName: "n1", NodeIP: "127.0.0.1", Runtime: rt, Status: rec, Events: rec,
		VolumeDir: filepath.Join(e.Dir, "volumes"), OnError: rec.onError,
		BackOff: 300 * time.Millisecond, MaxBackOff: 2 * time.Second,
		Resolver: resolver{
			configMaps: map[string]*corev1.ConfigMap{"default/cfg": {Data: map[string]string{"color": "blue", "app.conf": "debug=true\n"}}},
			secrets:    map[string]*corev1.Secret{"default/creds": {Data: map[string][]byte{"password": []byte("s3cret")}}},
		},
	}
}

// post sends an empty POST, retrying for a few seconds while the server
// is not listening yet (a pod is Running before its process listens).
func post(ctx context.Context, url string) error {
	var err error
	for range 50 {
		if err = post1(ctx, url); err == nil || !strings.Contains(err.Error(), "connection refused") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func post1(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func httpProbe(path string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
		PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 1,
	}
}

func helloContainer(e *dataplanetest.Env, env ...corev1.EnvVar) corev1.Container {
	return corev1.Container{
		Name: "web", Image: e.Hello, ImagePullPolicy: corev1.PullIfNotPresent, Env: env,
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
	}
}

// TestPodsOnContainerd runs pods on a real containerd with real CNI and
// images pulled from a registry on 127.0.0.1.
func TestPodsOnContainerd(t *testing.T) {
	e := dataplanetest.New(t)
	rec := newRecorder()
	m := startManager(t, realConfig(t, e, e.Runtime, rec))
	running := func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning && ready(st) }

	t.Run("running, probes, env and volumes", func(t *testing.T) {
		ctx := t.Context()
		web := helloContainer(e,
			corev1.EnvVar{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "color"}}},
			corev1.EnvVar{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
			corev1.EnvVar{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			corev1.EnvVar{Name: "HELLO_GREETING", Value: "Hello $(COLOR)"},
		)
		web.ReadinessProbe = httpProbe("/healthz", 1, 1)
		web.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(8080)}}, PeriodSeconds: 1}
		web.VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/cfg"}, {Name: "creds", MountPath: "/etc/creds"}, {Name: "scratch", MountPath: "/scratch"}}
		pod := newPod("web", web)
		pod.Spec.Volumes = []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
			{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}
		m.Sync(pod)
		st := rec.waitFor(t, pod, 30*time.Second, "Running and Ready", running)
		if st.PodIP == "" || st.HostIP != "127.0.0.1" || st.StartTime == nil || !strings.HasPrefix(container(st, "web").ContainerID, "containerd://") {
			t.Fatalf("status:\n%s", describe(st))
		}
		body, err := get(ctx, "http://"+st.PodIP+":8080/")
		if err != nil || body != "Hello blue from web\n" {
			t.Fatalf("GET /: %q %v", body, err)
		}
		for _, r := range []string{"Pulling", "Pulled", "Created", "Started"} {
			if rec.countEvents(pod, r) == 0 {
				t.Errorf("no %s event:\n%s", r, rec.eventList(pod))
			}
		}
		id, err := m.ContainerID(ctx, pod.UID, "web", false)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		code, err := e.Runtime.Exec(ctx, id, runtimeapi.ExecOptions{
			Cmd:    []string{"sh", "-c", `cat /etc/cfg/color /etc/creds/password; echo " $PASSWORD $POD_IP"; echo x > /scratch/f && cat /scratch/f; touch /etc/cfg/nope 2>/dev/null || echo ro`},
			Stdout: &out, Stderr: &out,
		})
		want := "blues3cret s3cret " + st.PodIP + "\nx\nro\n"
		if err != nil || code != 0 || out.String() != want {
			t.Fatalf("exec: code %d err %v\n got %q\nwant %q", code, err, out.String(), want)
		}
		var logs bytes.Buffer
		if err := e.Runtime.Logs(ctx, id, runtimeapi.LogOptions{TailLines: -1}, &logs); err != nil || !strings.Contains(logs.String(), "GET /healthz") {
			t.Fatalf("logs: %q %v", logs.String(), err)
		}

		// Readiness follows /healthz; liveness (TCP) keeps passing.
		if err := post(ctx, "http://"+st.PodIP+":8080/fail"); err != nil {
			t.Fatal(err)
		}
		rec.waitFor(t, pod, 10*time.Second, "not Ready", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning && !ready(st) })
		if rec.countEvents(pod, "Unhealthy") == 0 {
			t.Errorf("no Unhealthy event")
		}
		if err := post(ctx, "http://"+st.PodIP+":8080/heal"); err != nil {
			t.Fatal(err)
		}
		st = rec.waitFor(t, pod, 10*time.Second, "Ready again", running)
		if c := container(st, "web"); c.RestartCount != 0 {
			t.Fatalf("restarted: %s", describe(st))
		}
	})

	t.Run("liveness restarts, then graceful deletion", func(t *testing.T) {
		ctx := t.Context()
		web := helloContainer(e)
		web.LivenessProbe = httpProbe("/healthz", 1, 2)
		pod := newPod("live", web)
		m.Sync(pod)
		st := rec.waitFor(t, pod, 30*time.Second, "Running", running)
		first := container(st, "web").ContainerID
		if err := post(ctx, "http://"+st.PodIP+":8080/fail"); err != nil {
			t.Fatal(err)
		}
		st = rec.waitFor(t, pod, 20*time.Second, "restarted", func(st corev1.PodStatus) bool {
			c := container(st, "web")
			return c.RestartCount == 1 && c.State.Running != nil && c.LastTerminationState.Terminated != nil
		})
		if container(st, "web").ContainerID == first {
			t.Fatal("same container after restart")
		}
		if rec.countEvents(pod, "Killing") != 1 || rec.countEvents(pod, "Unhealthy") < 2 {
			t.Fatalf("events:\n%s", rec.eventList(pod))
		}
		// hello stops on SIGTERM at once: deletion is quick.
		start := time.Now()
		m.Sync(deleted(pod))
		at := rec.waitTerminated(t, pod, 10*time.Second)
		if d := at.Sub(start); d > 3*time.Second {
			t.Fatalf("deletion took %s", d)
		}
	})

	t.Run("crash loop back-off", func(t *testing.T) {
		pod := newPod("crash", corev1.Container{Name: "c", Image: e.Busybox, Command: []string{"sh", "-c", "echo crashing; exit 2"}})
		m.Sync(pod)
		st := rec.waitFor(t, pod, 30*time.Second, "CrashLoopBackOff after 3 restarts", func(st corev1.PodStatus) bool {
			c := container(st, "c")
			return c.RestartCount >= 3 && c.State.Waiting != nil && c.State.Waiting.Reason == podworker.ReasonCrashLoopBackOff
		})
		c := container(st, "c")
		if st.Phase != corev1.PodRunning || ready(st) || c.LastTerminationState.Terminated == nil || c.LastTerminationState.Terminated.ExitCode != 2 || c.LastTerminationState.Terminated.Reason != "Error" {
			t.Fatalf("status:\n%s", describe(st))
		}
		if rec.countEvents(pod, "BackOff") == 0 {
			t.Fatalf("no BackOff event:\n%s", rec.eventList(pod))
		}
		// logs --previous reads the instance before the current one.
		prev, err := m.ContainerID(t.Context(), pod.UID, "c", true)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		if err := e.Runtime.Logs(t.Context(), prev, runtimeapi.LogOptions{TailLines: -1}, &logs); err != nil || logs.String() != "crashing\n" {
			t.Fatalf("previous logs: %q %v", logs.String(), err)
		}
		m.Sync(deleted(pod))
		rec.waitTerminated(t, pod, 10*time.Second)
	})

	t.Run("OOMKilled and restartPolicy", func(t *testing.T) {
		oom := helloContainer(e, corev1.EnvVar{Name: "HELLO_ALLOC_MB", Value: "64"})
		oom.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi"), corev1.ResourceCPU: resource.MustParse("500m")}
		pod := newPod("oom", oom)
		pod.Spec.RestartPolicy = corev1.RestartPolicyNever
		m.Sync(pod)
		rec.waitFor(t, pod, 30*time.Second, "Failed with OOMKilled", func(st corev1.PodStatus) bool {
			term := container(st, "web").State.Terminated
			return st.Phase == corev1.PodFailed && term != nil && term.Reason == "OOMKilled" && term.ExitCode == 137
		})
		rec.mu.Lock()
		history := slices.Clone(rec.history[pod.UID])
		rec.mu.Unlock()
		for _, st := range history {
			if term := container(st, "web").State.Terminated; term != nil && term.Reason != "OOMKilled" {
				t.Fatalf("reported an exit without its reason first:\n%s", describe(st))
			}
		}
		done := newPod("done", corev1.Container{Name: "c", Image: e.Busybox, Command: []string{"true"}})
		done.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		m.Sync(done)
		st := rec.waitFor(t, done, 30*time.Second, "Succeeded", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodSucceeded })
		if term := container(st, "c").State.Terminated; term == nil || term.Reason != "Completed" || container(st, "c").RestartCount != 0 {
			t.Fatalf("status:\n%s", describe(st))
		}
	})

	t.Run("graceful deletion waits for the grace period", func(t *testing.T) {
		// The container ignores SIGTERM (an ignored signal stays ignored across exec): it is
		// killed when the 1s grace ends. It is deleted only once it is ready, that is once the
		// trap is set: a SIGTERM that came while runc's init was still PID 1 would end it at
		// once (seen under load).
		pod := newPod("stubborn", corev1.Container{Name: "c", Image: e.Busybox,
			Command: []string{"sh", "-c", `trap "" TERM; touch /tmp/ready; exec sleep 1000`},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/ready"}}},
				PeriodSeconds: 1}})
		one := int64(1)
		pod.Spec.TerminationGracePeriodSeconds = &one
		m.Sync(pod)
		rec.waitFor(t, pod, 30*time.Second, "Ready", ready)
		start := time.Now()
		m.Sync(deleted(pod))
		at := rec.waitTerminated(t, pod, 10*time.Second)
		if d := at.Sub(start); d < time.Second || d > 4*time.Second {
			t.Fatalf("deletion took %s, want about 1s", d)
		}
		st := rec.last(pod)
		if term := container(st, "c").State.Terminated; term == nil || term.ExitCode != 137 {
			t.Fatalf("last status:\n%s", describe(st))
		}
		if rec.countEvents(pod, "Killing") != 1 {
			t.Fatalf("events:\n%s", rec.eventList(pod))
		}
	})

	t.Run("pull errors", func(t *testing.T) {
		pod := newPod("missing", corev1.Container{Name: "c", Image: e.Registry.Ref("logplane/missing:1")})
		m.Sync(pod)
		rec.waitEver(t, pod, 30*time.Second, "ErrImagePull", func(st corev1.PodStatus) bool {
			w := container(st, "c").State.Waiting
			return st.Phase == corev1.PodPending && w != nil && w.Reason == podworker.ReasonErrImagePull
		})
		rec.waitFor(t, pod, 30*time.Second, "ImagePullBackOff", func(st corev1.PodStatus) bool {
			w := container(st, "c").State.Waiting
			return w != nil && w.Reason == podworker.ReasonImagePullBackOff
		})
		never := newPod("never", corev1.Container{Name: "c", Image: e.Registry.Ref("logplane/absent:1"), ImagePullPolicy: corev1.PullNever})
		m.Sync(never)
		rec.waitFor(t, never, 30*time.Second, "ErrImageNeverPull", func(st corev1.PodStatus) bool {
			w := container(st, "c").State.Waiting
			return w != nil && w.Reason == podworker.ReasonErrImageNeverPull
		})
		missing := helloContainer(e, corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}})
		cfgErr := newPod("cfgerr", missing)
		m.Sync(cfgErr)
		rec.waitFor(t, cfgErr, 30*time.Second, "CreateContainerConfigError", func(st corev1.PodStatus) bool {
			w := container(st, "web").State.Waiting
			return w != nil && w.Reason == podworker.ReasonCreateContainerConfigError && strings.Contains(w.Message, `configmap "nope" not found`)
		})
		for _, p := range []*corev1.Pod{pod, never, cfgErr} {
			m.Sync(deleted(p))
			rec.waitTerminated(t, p, 10*time.Second)
		}
	})

	t.Run("adoption by a new node agent", func(t *testing.T) {
		ctx := t.Context()
		pod := newPod("adopt", helloContainer(e))
		pod.Spec.Containers[0].ReadinessProbe = httpProbe("/healthz", 1, 1)
		mctx, stop := context.WithCancel(ctx)
		m1, err := podworker.New(realConfig(t, e, e.Runtime, rec))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- m1.Start(mctx) }()
		m1.Sync(pod)
		st := rec.waitFor(t, pod, 30*time.Second, "Running", running)
		stop() // the node agent goes away; its containers stay
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, err := get(ctx, "http://"+st.PodIP+":8080/"); err != nil {
			t.Fatalf("pod stopped with its agent: %v", err)
		}

		rec2 := newRecorder()
		rt2 := e.NewRuntime(t)
		m2 := startManager(t, realConfig(t, e, rt2, rec2))
		m2.Sync(withStatus(pod, st))
		if err := m2.RemoveOrphans(ctx); err != nil {
			t.Fatal(err)
		}
		st2 := rec2.waitFor(t, pod, 30*time.Second, "adopted", running)
		c1, c2 := container(st, "web"), container(st2, "web")
		if c1.ContainerID != c2.ContainerID || c2.RestartCount != 0 || st2.PodIP != st.PodIP || !st2.StartTime.Equal(st.StartTime) {
			t.Fatalf("not adopted as it was:\nbefore %s\nafter %s", describe(st), describe(st2))
		}
		if n := rec2.countEvents(pod, "Started"); n != 0 {
			t.Fatalf("adoption started containers:\n%s", rec2.eventList(pod))
		}
		// The adopted container is still watched: a crash is seen and restarted.
		if err := post(ctx, "http://"+st.PodIP+":8080/crash"); err == nil {
			t.Log("crash request answered")
		}
		rec2.waitFor(t, pod, 30*time.Second, "restarted after crash", func(st corev1.PodStatus) bool {
			c := container(st, "web")
			return c.RestartCount == 1 && c.State.Running != nil
		})
		m2.Sync(deleted(pod))
		rec2.waitTerminated(t, pod, 10*time.Second)
	})

	t.Run("pod to pod", func(t *testing.T) {
		ctx := t.Context()
		a := newPod("a", helloContainer(e))
		b := newPod("b", corev1.Container{Name: "c", Image: e.Busybox, Command: []string{"sleep", "1000"}})
		m.Sync(a)
		m.Sync(b)
		sa := rec.waitFor(t, a, 30*time.Second, "Running", running)
		rec.waitFor(t, b, 30*time.Second, "Running", running)
		id, err := m.ContainerID(ctx, b.UID, "c", false)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		var code int
		for range 50 {
			out.Reset()
			code, err = e.Runtime.Exec(ctx, id, runtimeapi.ExecOptions{Cmd: []string{"wget", "-qO-", "http://" + sa.PodIP + ":8080/"}, Stdout: &out})
			if err == nil && code == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code != 0 || out.String() != "Hello from a\n" {
			t.Fatalf("b -> a: code %d err %v out %q", code, err, out.String())
		}
		sbID, err := m.SandboxID(ctx, a.UID)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := e.Runtime.PortForward(ctx, sbID, 8080)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := io.ReadAll(conn)
		if err != nil || !strings.HasSuffix(string(resp), "Hello from a\n") {
			t.Fatalf("port-forward: %q %v", resp, err)
		}
	})
}
