package podworker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// workerResyncJitter is the kubelet pod workers' workerResyncIntervalJitterFactor.
const workerResyncJitter = 0.5

// refreshedVolume tells whether a volume's files follow its object while
// the pod runs: configMap, secret, downwardAPI and projected volumes, which
// the kubelet's volume manager sets up again at every pod sync
// (RequiresRemount).
func refreshedVolume(v *corev1.Volume) (plugin string, ok bool) {
	switch {
	case v.ConfigMap != nil:
		return configMapPlugin, true
	case v.Secret != nil:
		return secretPlugin, true
	case v.DownwardAPI != nil:
		return downwardAPIPlugin, true
	case v.Projected != nil:
		return projectedPlugin, true
	}
	return "", false
}

// refreshVolumes writes the pod's configMap and secret volumes again from
// the current objects once every SyncFrequency (jittered), as the kubelet's
// periodic pod sync does, and returns when it is next due (0: the pod has
// no such volume). A volume's files change atomically (atomicwriter);
// subPath mounts keep what they were started with. A volume that cannot be
// set up (its ConfigMap deleted) keeps its files and gets a FailedMount
// event, as in Kubernetes.
func (w *worker) refreshVolumes(ctx context.Context, pod *corev1.Pod) time.Duration {
	has := false
	for i := range pod.Spec.Volumes {
		if _, ok := refreshedVolume(&pod.Spec.Volumes[i]); ok {
			has = true
		}
	}
	if !has || w.sandbox == nil {
		return 0
	}
	now := w.clock().Now()
	if w.volumesDue.IsZero() || now.Before(w.volumesDue) {
		if w.volumesDue.IsZero() {
			w.volumesDue = now.Add(wait.Jitter(w.m.cfg.SyncFrequency, workerResyncJitter))
		}
		return w.volumesDue.Sub(now)
	}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		plugin, ok := refreshedVolume(v)
		if !ok {
			continue
		}
		if _, err := os.Stat(w.volumeDir(pod, plugin, v.Name)); errors.Is(err, os.ErrNotExist) {
			continue // no container has mounted it yet: set up at its start
		}
		if _, _, err := w.volume(ctx, pod, v); err != nil {
			w.event(pod, "", EventWarning, "FailedMount", fmt.Sprintf("MountVolume.SetUp failed for volume %q : %v", v.Name, err))
		}
	}
	w.volumesDue = now.Add(wait.Jitter(w.m.cfg.SyncFrequency, workerResyncJitter))
	return w.volumesDue.Sub(now)
}
