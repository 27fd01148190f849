package podworker_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/dataplane/sim"
	"github.com/logplane/logplane/nodeagent/podworker"
)

// objects is a Resolver whose objects the test changes, as the API would.
type objects struct {
	mu sync.Mutex
	r  resolver
}

func (o *objects) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.r.ConfigMap(ctx, ns, name)
}

func (o *objects) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.r.Secret(ctx, ns, name)
}

func (o *objects) set(f func(r resolver)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o.r)
}

// TestSimVolumesRefresh changes a pod's ConfigMap and Secret and steps a
// fake clock through the sync period: the files of its volumes follow, in
// the kubelet's ..data layout; a Secret deleted meanwhile leaves its files
// and a FailedMount event.
func TestSimVolumesRefresh(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rt, err := sim.New(sim.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	objs := &objects{r: resolver{
		configMaps: map[string]*corev1.ConfigMap{"default/cfg": {Data: map[string]string{"color": "blue", "size": "M"}}},
		secrets:    map[string]*corev1.Secret{"default/creds": {Data: map[string][]byte{"password": []byte("s3cret")}}},
	}}
	cfg := simConfig(t, rt, rec)
	cfg.Clock, cfg.Resolver = clk, objs
	m := startManager(t, cfg)

	c := corev1.Container{Name: "c", Image: "busybox:1", VolumeMounts: []corev1.VolumeMount{
		{Name: "cfg", MountPath: "/etc/cfg"}, {Name: "creds", MountPath: "/etc/creds"},
	}}
	pod := newPod("refresh", c)
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
	}
	m.Sync(pod)
	rec.waitFor(t, pod, 5*time.Second, "Running", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodRunning })
	cfgDir := filepath.Join(cfg.VolumeDir, string(pod.UID), "volumes", "kubernetes.io~configmap", "cfg")
	credsDir := filepath.Join(cfg.VolumeDir, string(pod.UID), "volumes", "kubernetes.io~secret", "creds")
	file := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	if got := file(filepath.Join(cfgDir, "color")); got != "blue" {
		t.Fatalf("color: %q", got)
	}
	if link, err := os.Readlink(filepath.Join(cfgDir, "color")); err != nil || link != "..data/color" {
		t.Fatalf("color is not the kubelet's symlink through ..data: %q %v", link, err)
	}

	objs.set(func(r resolver) {
		r.configMaps["default/cfg"] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"color": "red"}}
		r.secrets["default/creds"] = &corev1.Secret{Data: map[string][]byte{"password": []byte("n3w")}}
	})
	// Within one sync period and its jitter (1 minute, up to half more).
	stepWhenWaiting(t, clk, podworker.DefaultSyncFrequency*3/2)
	waitFile := func(p, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for file(p) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q, want %q", p, file(p), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFile(filepath.Join(cfgDir, "color"), "red")
	waitFile(filepath.Join(credsDir, "password"), "n3w")
	if _, err := os.Lstat(filepath.Join(cfgDir, "size")); !os.IsNotExist(err) {
		t.Errorf("a key removed from the ConfigMap is still a file: %v", err)
	}

	// The Secret deleted: its files stay, a FailedMount event says why.
	objs.set(func(r resolver) { delete(r.secrets, "default/creds") })
	stepWhenWaiting(t, clk, podworker.DefaultSyncFrequency*3/2)
	deadline := time.Now().Add(5 * time.Second)
	for rec.countEvents(pod, "FailedMount") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no FailedMount event:\n%s", rec.eventList(pod))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := file(filepath.Join(credsDir, "password")); got != "n3w" {
		t.Errorf("password after the Secret was deleted: %q", got)
	}
	if st := rec.last(pod); st.Phase != corev1.PodRunning {
		t.Errorf("pod: %s", describe(st))
	}
}
