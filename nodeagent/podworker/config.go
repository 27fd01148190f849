package podworker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/logplane/logplane/dataplane/atomicwriter"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// labelSpecHash keeps a hash of the container's spec on each instance, to
// restart it when the spec changes (a new image).
const labelSpecHash = runtimeapi.LabelPrefix + "container.hash"

func specHash(spec *corev1.Container) string {
	b, err := json.Marshal(spec)
	if err != nil {
		return "" // a corev1.Container always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func pullPolicy(spec *corev1.Container) runtimeapi.PullPolicy {
	switch spec.ImagePullPolicy {
	case corev1.PullAlways:
		return runtimeapi.PullAlways
	case corev1.PullNever:
		return runtimeapi.PullNever
	case corev1.PullIfNotPresent:
		return runtimeapi.PullIfNotPresent
	}
	// Kubernetes' default: Always for :latest or no tag, else IfNotPresent.
	ref := spec.Image
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return runtimeapi.PullIfNotPresent
	}
	slash := strings.LastIndex(ref, "/")
	colon := strings.LastIndex(ref, ":")
	if colon <= slash || strings.HasSuffix(ref, ":latest") {
		return runtimeapi.PullAlways
	}
	return runtimeapi.PullIfNotPresent
}

func (w *worker) sandboxConfig(pod *corev1.Pod) runtimeapi.SandboxConfig {
	hostname, _ := w.podHostnameAndDomain(pod)
	dns := w.podDNS(pod)
	cfg := runtimeapi.SandboxConfig{
		PodUID: string(pod.UID), PodName: pod.Name, PodNamespace: pod.Namespace,
		Hostname:    hostname,
		DNSServers:  dns.Nameservers,
		DNSSearches: dns.Searches,
		DNSOptions:  dns.Options,
		HostNetwork: pod.Spec.HostNetwork,
		Sysctls:     podSysctls(pod),
	}
	for _, s := range allContainers(pod) {
		for _, p := range s.spec.Ports {
			if p.HostPort != 0 {
				cfg.Ports = append(cfg.Ports, runtimeapi.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: string(p.Protocol), HostIP: p.HostIP})
			}
		}
	}
	return cfg
}

// containerConfig turns a container spec into the runtime's config:
// resolved env, volume mounts, security context (checked against the
// user of img, the container's image), resources.
func (w *worker) containerConfig(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, attempt int, img runtimeapi.Image) (runtimeapi.ContainerConfig, error) {
	env, err := w.env(ctx, pod, spec)
	if err != nil {
		return runtimeapi.ContainerConfig{}, err
	}
	mounts, err := w.mounts(ctx, pod, spec)
	if err != nil {
		return runtimeapi.ContainerConfig{}, err
	}
	security, err := w.securityContext(pod, spec, img)
	if err != nil {
		return runtimeapi.ContainerConfig{}, err
	}
	vars := map[string]string{}
	pairs := make([]string, 0, len(env))
	for _, e := range env {
		vars[e.name] = e.value
		pairs = append(pairs, e.name+"="+e.value)
	}
	expandAll := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = expand(s, vars)
		}
		return out
	}
	cfg := runtimeapi.ContainerConfig{
		Name:       spec.Name,
		Attempt:    attempt,
		Image:      spec.Image,
		Command:    expandAll(spec.Command),
		Args:       expandAll(spec.Args),
		WorkingDir: spec.WorkingDir,
		Env:        pairs,
		Mounts:     mounts,
		TTY:        spec.TTY,
		Stdin:      spec.Stdin,
		StdinOnce:  spec.StdinOnce,
		Labels:     map[string]string{labelSpecHash: specHash(spec)},
		Security:   security,
	}
	podMounts, labels, err := w.podMounts(pod, spec)
	if err != nil {
		return runtimeapi.ContainerConfig{}, err
	}
	cfg.Mounts = append(cfg.Mounts, podMounts...)
	maps.Copy(cfg.Labels, labels)
	if q, ok := spec.Resources.Limits[corev1.ResourceCPU]; ok {
		cfg.Resources.CPULimitMilli = q.MilliValue()
	}
	if q, ok := spec.Resources.Limits[corev1.ResourceMemory]; ok {
		cfg.Resources.MemoryLimitBytes = q.Value()
	}
	if q, ok := spec.Resources.Requests[corev1.ResourceCPU]; ok {
		cfg.Resources.CPURequestMilli = q.MilliValue()
	} else if cfg.Resources.CPULimitMilli > 0 {
		cfg.Resources.CPURequestMilli = cfg.Resources.CPULimitMilli
	}
	return cfg, nil
}

type envVar struct{ name, value string }

func isNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, runtimeapi.ErrNotFound) || apierrors.IsNotFound(err)
}

func (w *worker) configMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if w.m.cfg.Resolver == nil {
		return nil, fmt.Errorf("configmap %q not found: %w", name, ErrNotFound)
	}
	cm, err := w.m.cfg.Resolver.ConfigMap(ctx, ns, name)
	if err != nil && isNotFound(err) {
		return nil, fmt.Errorf("configmap %q not found: %w", name, ErrNotFound)
	}
	return cm, err
}

func (w *worker) secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	if w.m.cfg.Resolver == nil {
		return nil, fmt.Errorf("secret %q not found: %w", name, ErrNotFound)
	}
	s, err := w.m.cfg.Resolver.Secret(ctx, ns, name)
	if err != nil && isNotFound(err) {
		return nil, fmt.Errorf("secret %q not found: %w", name, ErrNotFound)
	}
	return s, err
}

// env resolves a container's environment as the kubelet does: envFrom
// first, then env, with $(VAR) references to earlier variables expanded.
func (w *worker) env(ctx context.Context, pod *corev1.Pod, spec *corev1.Container) ([]envVar, error) {
	var out []envVar
	idx := map[string]int{}
	set := func(k, v string) {
		if i, ok := idx[k]; ok {
			out[i].value = v
			return
		}
		idx[k] = len(out)
		out = append(out, envVar{k, v})
	}
	for _, from := range spec.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := w.configMap(ctx, pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if isNotFound(err) && from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
					continue
				}
				return nil, err
			}
			for _, k := range sortedKeys(cm.Data) {
				set(from.Prefix+k, cm.Data[k])
			}
		case from.SecretRef != nil:
			s, err := w.secret(ctx, pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if isNotFound(err) && from.SecretRef.Optional != nil && *from.SecretRef.Optional {
					continue
				}
				return nil, err
			}
			for _, k := range sortedKeys(s.Data) {
				set(from.Prefix+k, string(s.Data[k]))
			}
		}
	}
	svcEnv, err := w.serviceEnv(ctx, pod)
	if err != nil {
		return nil, err
	}
	// $(VAR) sees the container's own variables first, then the Services' (the kubelet's
	// expansion.MappingFuncFor(tmpEnv, serviceEnv)).
	vars := func() map[string]string {
		m := make(map[string]string, len(out)+len(svcEnv))
		for k, v := range svcEnv {
			m[k] = v
		}
		for _, e := range out {
			m[e.name] = e.value
		}
		return m
	}
	for _, e := range spec.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vars()))
			continue
		}
		v, skip, err := w.valueFrom(ctx, pod, spec, e.ValueFrom)
		if err != nil {
			return nil, err
		}
		if !skip {
			set(e.Name, v)
		}
	}
	// The Services' variables come last, where the container set none of the same name.
	for _, k := range sortedKeys(svcEnv) {
		if _, ok := idx[k]; !ok {
			set(k, svcEnv[k])
		}
	}
	return out, nil
}

func (w *worker) valueFrom(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, vf *corev1.EnvVarSource) (string, bool, error) {
	switch {
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, err := w.configMap(ctx, pod.Namespace, ref.Name)
		if err != nil {
			return "", optional && isNotFound(err), keepUnless(optional && isNotFound(err), err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			return "", optional, keepUnless(optional, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name))
		}
		return v, false, nil
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		s, err := w.secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			return "", optional && isNotFound(err), keepUnless(optional && isNotFound(err), err)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			return "", optional, keepUnless(optional, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name))
		}
		return string(v), false, nil
	case vf.FieldRef != nil:
		v, err := w.fieldRef(pod, vf.FieldRef.FieldPath)
		return v, false, err
	case vf.ResourceFieldRef != nil:
		// Limits not set read as the node's allocatable, as the kubelet's
		// defaultPodLimitsForDownwardAPI makes them.
		dpod, dspec := w.withDefaultLimits(pod, spec)
		v, err := containerResourceValue(vf.ResourceFieldRef, dpod, dspec)
		return v, false, err
	}
	return "", true, nil
}

func keepUnless(drop bool, err error) error {
	if drop {
		return nil
	}
	return err
}

func (w *worker) fieldRef(pod *corev1.Pod, path string) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	ip := w.podIP(pod)
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return w.m.cfg.NodeIP, nil
	case "status.podIP", "status.podIPs":
		return ip, nil
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

// expand replaces $(VAR) with the value of VAR when known, and leaves the
// reference as written when not; $$ escapes $ (the kubelet's expansion with
// MappingFuncFor).
func expand(s string, vars map[string]string) string {
	return expandWith(s, func(name string) string {
		if v, ok := vars[name]; ok {
			return v
		}
		return "$(" + name + ")"
	})
}

// expandWith is the kubelet's third_party expansion.Expand: $(VAR) is
// replaced by mapping(VAR), $$ by $, and anything else is kept.
func expandWith(s string, mapping func(string) string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			b.WriteString(mapping(s[i+2 : i+2+end]))
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// mounts prepares the pod's volumes that the container mounts and returns
// the bind mounts.
func (w *worker) mounts(ctx context.Context, pod *corev1.Pod, spec *corev1.Container) ([]runtimeapi.Mount, error) {
	vols := map[string]*corev1.Volume{}
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	var out []runtimeapi.Mount
	for _, vm := range spec.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume %q not found in pod spec", vm.Name)
		}
		host, ro, err := w.volume(ctx, pod, v)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			if sub, err = w.subPathExpr(ctx, pod, spec, vm); err != nil {
				return nil, err
			}
		}
		if sub != "" {
			if host, err = subPath(host, sub); err != nil {
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
		}
		out = append(out, runtimeapi.Mount{HostPath: host, ContainerPath: vm.MountPath, ReadOnly: ro || vm.ReadOnly})
	}
	return out, nil
}

// subPath resolves a volume mount's subPath inside the volume as the
// kubelet's PrepareSafeSubpath does: created as a directory when missing,
// symlinks resolved, and refused if it leads out of the volume. The mount
// is of what the path resolves to now: a subPath of a configMap or secret
// volume keeps the file of the version the container started with, as in
// Kubernetes, while the rest of the volume is updated.
func subPath(volume, sub string) (string, error) {
	host := filepath.Join(volume, filepath.Clean("/"+sub))
	if _, err := os.Lstat(host); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(host, 0o755); err != nil {
			return "", fmt.Errorf("subPath %q: %w", sub, err)
		}
	}
	root, err := filepath.EvalSymlinks(volume)
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	resolved, err := filepath.EvalSymlinks(host)
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	if resolved != root && !strings.HasPrefix(resolved, root+string(os.PathSeparator)) {
		return "", fmt.Errorf("subPath %q resolves outside the volume", sub)
	}
	return resolved, nil
}

// Volume plugin directories under <VolumeDir>/<pod UID>/volumes/, the kubelet's names.
const (
	emptyDirPlugin  = "kubernetes.io~empty-dir"
	configMapPlugin = "kubernetes.io~configmap"
	secretPlugin    = "kubernetes.io~secret"
)

func (w *worker) volumeDir(pod *corev1.Pod, plugin, name string) string {
	return filepath.Join(w.m.cfg.VolumeDir, string(pod.UID), "volumes", plugin, name)
}

// volume makes the volume ready on the node and returns its host path and
// whether it must be mounted read-only.
//
// With a pod fsGroup, the volume's files get its group and modes as the
// kubelet's volume plugins set them (setVolumeOwnership): an emptyDir once,
// when it is made; a configMap or secret volume each time a new version of
// its files is written, before the version is published.
func (w *worker) volume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (string, bool, error) {
	var fsGroup *int64
	if pod.Spec.SecurityContext != nil {
		fsGroup = pod.Spec.SecurityContext.FSGroup
	}
	// dir makes the volume's directory once, world-writable as the kubelet's
	// emptyDir (which configMap and secret volumes wrap): a later setup keeps
	// the modes and group that fsGroup gave it.
	dir := func(plugin string) (string, error) {
		d := w.volumeDir(pod, plugin, v.Name)
		if _, err := os.Stat(d); err == nil {
			return d, nil
		}
		if err := os.MkdirAll(d, 0o777); err != nil {
			return "", err
		}
		return d, os.Chmod(d, 0o777)
	}
	switch {
	case v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory:
		d, err := w.memoryEmptyDir(pod, v, fsGroup)
		return d, false, err
	case v.EmptyDir != nil && fsGroup != nil:
		d, err := w.emptyDirWithGroup(pod, v.Name, fsGroup)
		return d, false, err
	case v.EmptyDir != nil:
		d, err := dir(emptyDirPlugin)
		return d, false, err
	case v.DownwardAPI != nil || v.Projected != nil:
		return w.projectedVolume(ctx, pod, v, fsGroup)
	case v.PersistentVolumeClaim != nil:
		d, err := w.claimPath(ctx, pod.Namespace, v.PersistentVolumeClaim.ClaimName)
		return d, v.PersistentVolumeClaim.ReadOnly, err
	case v.HostPath != nil:
		p := v.HostPath.Path
		t := corev1.HostPathUnset
		if v.HostPath.Type != nil {
			t = *v.HostPath.Type
		}
		switch t {
		case corev1.HostPathDirectoryOrCreate:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return "", false, err
			}
		case corev1.HostPathFileOrCreate:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return "", false, err
			}
			f.Close() // only created
		case corev1.HostPathDirectory, corev1.HostPathFile, corev1.HostPathSocket:
			if _, err := os.Stat(p); err != nil {
				return "", false, err
			}
		}
		return p, false, nil
	case v.ConfigMap != nil:
		d, err := dir(configMapPlugin)
		if err != nil {
			return "", false, err
		}
		optional := v.ConfigMap.Optional != nil && *v.ConfigMap.Optional
		cm, err := w.configMap(ctx, pod.Namespace, v.ConfigMap.Name)
		if err != nil {
			if !isNotFound(err) || !optional {
				return "", false, err
			}
			cm = &corev1.ConfigMap{} // an optional ConfigMap that does not exist: an empty volume
		}
		payload, err := configMapPayload(v.ConfigMap.Items, cm, v.ConfigMap.DefaultMode, optional)
		if err != nil {
			return "", false, err
		}
		return d, true, w.project(d, payload, fsGroup)
	case v.Secret != nil:
		d, err := dir(secretPlugin)
		if err != nil {
			return "", false, err
		}
		optional := v.Secret.Optional != nil && *v.Secret.Optional
		s, err := w.secret(ctx, pod.Namespace, v.Secret.SecretName)
		if err != nil {
			if !isNotFound(err) || !optional {
				return "", false, err
			}
			s = &corev1.Secret{}
		}
		payload, err := secretPayload(v.Secret.Items, s, v.Secret.DefaultMode, optional)
		if err != nil {
			return "", false, err
		}
		return d, true, w.project(d, payload, fsGroup)
	}
	return "", false, errors.New("volume type not supported by logplane yet")
}

// emptyDirWithGroup makes an emptyDir volume owned by fsGroup: the directory
// is prepared under a temporary name and renamed into place, so that one
// that exists is complete (the kubelet's ready file), and is then left alone.
func (w *worker) emptyDirWithGroup(pod *corev1.Pod, name string, fsGroup *int64) (string, error) {
	d := w.volumeDir(pod, emptyDirPlugin, name)
	if _, err := os.Stat(d); err == nil {
		return d, nil
	}
	tmp := d + ".setup" // volume names have no dots: no volume is called that
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o777); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o777); err != nil {
		return "", err
	}
	if err := setVolumeOwnership(tmp, fsGroup, false, nil, w.report); err != nil {
		w.report(fmt.Errorf("podworker: emptyDir %q: %w", name, err)) // as the kubelet, which only logs it
	}
	return d, os.Rename(tmp, d)
}

// project writes a configMap or secret volume's files with the kubelet's
// AtomicWriter layout, so that an update is seen whole, and is seen at all
// through subdirectory-free bind mounts of the volume. With fsGroup, a new
// version's files (and the whole volume) get its group before they are
// published, as the kubelet's setPerms.
func (w *worker) project(dir string, payload map[string]atomicwriter.FileProjection, fsGroup *int64) error {
	if _, err := os.Lstat(filepath.Join(dir, atomicwriter.DataDirName)); errors.Is(err, os.ErrNotExist) {
		// Plain files written by an agent from before the AtomicWriter layout: start anew.
		es, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range es {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	aw, err := atomicwriter.New(dir, w.clock().Now)
	if err != nil {
		return err
	}
	var setPerms func(string) error
	if fsGroup != nil {
		// The whole volume, not only the new version: on the first write the
		// files outside it are new too.
		setPerms = func(string) error { return setVolumeOwnership(dir, fsGroup, true, nil, w.report) }
	}
	_, err = aw.WriteWith(payload, setPerms)
	return err
}

const defaultVolumeMode int32 = 0o644 // corev1's ConfigMapVolumeSourceDefaultMode and SecretVolumeSourceDefaultMode

// configMapPayload is the kubelet's configmap.MakePayload: every key (Data
// and BinaryData) as a file, or only the items, each with its mode or the
// default mode; an item whose key is missing fails unless optional.
func configMapPayload(items []corev1.KeyToPath, cm *corev1.ConfigMap, defaultMode *int32, optional bool) (map[string]atomicwriter.FileProjection, error) {
	mode := defaultVolumeMode
	if defaultMode != nil {
		mode = *defaultMode
	}
	payload := make(map[string]atomicwriter.FileProjection, len(cm.Data)+len(cm.BinaryData))
	if len(items) == 0 {
		for k, s := range cm.Data {
			payload[k] = atomicwriter.FileProjection{Data: []byte(s), Mode: mode}
		}
		for k, b := range cm.BinaryData {
			payload[k] = atomicwriter.FileProjection{Data: b, Mode: mode}
		}
		return payload, nil
	}
	for _, it := range items {
		var data []byte
		if s, ok := cm.Data[it.Key]; ok {
			data = []byte(s)
		} else if b, ok := cm.BinaryData[it.Key]; ok {
			data = b
		} else {
			if optional {
				continue
			}
			return nil, fmt.Errorf("configmap references non-existent config key: %s", it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		payload[it.Path] = atomicwriter.FileProjection{Data: data, Mode: m}
	}
	return payload, nil
}

// secretPayload is the kubelet's secret.MakePayload.
func secretPayload(items []corev1.KeyToPath, s *corev1.Secret, defaultMode *int32, optional bool) (map[string]atomicwriter.FileProjection, error) {
	mode := defaultVolumeMode
	if defaultMode != nil {
		mode = *defaultMode
	}
	payload := make(map[string]atomicwriter.FileProjection, len(s.Data))
	if len(items) == 0 {
		for k, b := range s.Data {
			payload[k] = atomicwriter.FileProjection{Data: b, Mode: mode}
		}
		return payload, nil
	}
	for _, it := range items {
		b, ok := s.Data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("references non-existent secret key: %s", it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		payload[it.Path] = atomicwriter.FileProjection{Data: b, Mode: m}
	}
	return payload, nil
}
