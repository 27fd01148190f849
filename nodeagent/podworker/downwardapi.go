package podworker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/logplane/logplane/dataplane/atomicwriter"
)

// Volume plugin directories of the Downward API and projected volumes, the kubelet's names.
const (
	downwardAPIPlugin = "kubernetes.io~downward-api"
	projectedPlugin   = "kubernetes.io~projected"
)

// withDefaultLimits is the kubelet's defaultPodLimitsForDownwardAPI: a copy
// of the pod whose containers (and of the container, when given) without a
// cpu, memory or ephemeral-storage limit have the node's allocatable as
// their limit, which is what the Downward API reports for them.
func (w *worker) withDefaultLimits(pod *corev1.Pod, spec *corev1.Container) (*corev1.Pod, *corev1.Container) {
	out := pod.DeepCopy()
	for i := range out.Spec.Containers {
		mergeResourceLimits(&out.Spec.Containers[i], w.m.cfg.NodeAllocatable)
	}
	var c *corev1.Container
	if spec != nil {
		c = spec.DeepCopy()
		mergeResourceLimits(c, w.m.cfg.NodeAllocatable)
	}
	return out, c
}

// mergeResourceLimits is k8s.io/kubernetes pkg/api/v1/resource's MergeContainerResourceLimits.
func mergeResourceLimits(c *corev1.Container, allocatable corev1.ResourceList) {
	if c.Resources.Limits == nil {
		c.Resources.Limits = corev1.ResourceList{}
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if q, ok := c.Resources.Limits[name]; !ok || q.IsZero() {
			if a, ok := allocatable[name]; ok {
				c.Resources.Limits[name] = a.DeepCopy()
			}
		}
	}
}

// containerResourceValue is the kubelet's containerResourceRuntimeValue: the
// resource of the named container of the pod, or of c when the selector
// names none; pod and c have their limits defaulted (withDefaultLimits).
func containerResourceValue(fs *corev1.ResourceFieldSelector, pod *corev1.Pod, c *corev1.Container) (string, error) {
	if fs.ContainerName == "" {
		return extractResourceValue(fs, c)
	}
	for _, s := range allContainers(pod) {
		if s.spec.Name == fs.ContainerName {
			return extractResourceValue(fs, s.spec)
		}
	}
	return "", fmt.Errorf("container %s not found", fs.ContainerName)
}

// extractResourceValue is pkg/api/v1/resource's ExtractContainerResourceValue:
// the quantity divided by the divisor (1 when unset), rounded up.
func extractResourceValue(fs *corev1.ResourceFieldSelector, c *corev1.Container) (string, error) {
	divisor := resource.MustParse("1")
	if !fs.Divisor.IsZero() {
		divisor = fs.Divisor
	}
	lim, req := c.Resources.Limits, c.Resources.Requests
	cpu := func(q *resource.Quantity) (string, error) {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	bytes := func(q *resource.Quantity) (string, error) {
		return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
	}
	switch fs.Resource {
	case "limits.cpu":
		return cpu(lim.Cpu())
	case "limits.memory":
		return bytes(lim.Memory())
	case "limits.ephemeral-storage":
		return bytes(lim.StorageEphemeral())
	case "requests.cpu":
		return cpu(req.Cpu())
	case "requests.memory":
		return bytes(req.Memory())
	case "requests.ephemeral-storage":
		return bytes(req.StorageEphemeral())
	}
	if name, ok := strings.CutPrefix(fs.Resource, "requests."); ok && strings.HasPrefix(name, corev1.ResourceHugePagesPrefix) {
		return bytes(req.Name(corev1.ResourceName(name), resource.BinarySI))
	}
	if name, ok := strings.CutPrefix(fs.Resource, "limits."); ok && strings.HasPrefix(name, corev1.ResourceHugePagesPrefix) {
		return bytes(lim.Name(corev1.ResourceName(name), resource.BinarySI))
	}
	return "", fmt.Errorf("unsupported container resource : %v", fs.Resource)
}

// formatMap is k8s.io/kubernetes pkg/fieldpath's FormatMap: one key="value"
// line per entry, sorted, the value quoted as Go does.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for _, k := range keys {
		if len(b) > 0 {
			b = append(b, '\n')
		}
		b = append(b, k...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, m[k])
	}
	return string(b)
}

// fieldPathValue is pkg/fieldpath's ExtractFieldPathAsString for a pod: what
// a downwardAPI volume file holds.
func fieldPathValue(pod *corev1.Pod, fieldPath string) (string, error) {
	if strings.HasSuffix(fieldPath, "']") {
		if path, sub, ok := strings.Cut(strings.TrimSuffix(fieldPath, "']"), "['"); ok {
			switch path {
			case "metadata.annotations":
				if errs := validation.IsQualifiedName(strings.ToLower(sub)); len(errs) != 0 {
					return "", fmt.Errorf("invalid key subscript in %s: %s", fieldPath, strings.Join(errs, ";"))
				}
				return pod.Annotations[sub], nil
			case "metadata.labels":
				if errs := validation.IsQualifiedName(sub); len(errs) != 0 {
					return "", fmt.Errorf("invalid key subscript in %s: %s", fieldPath, strings.Join(errs, ";"))
				}
				return pod.Labels[sub], nil
			default:
				return "", fmt.Errorf("fieldPath %q does not support subscript", fieldPath)
			}
		}
	}
	switch fieldPath {
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	}
	return "", fmt.Errorf("unsupported fieldPath: %v", fieldPath)
}

// downwardAPIPayload is the kubelet's downwardapi.CollectData: one file per
// item, from a field of the pod or a resource of one of its containers
// (limits defaulted to the node's allocatable), with the item's mode or the
// default mode; the errors of all items are returned together.
func (w *worker) downwardAPIPayload(items []corev1.DownwardAPIVolumeFile, pod *corev1.Pod, defaultMode *int32) (map[string]atomicwriter.FileProjection, error) {
	mode := corev1.DownwardAPIVolumeSourceDefaultMode
	if defaultMode != nil {
		mode = *defaultMode
	}
	var errs []error
	defaulted, _ := w.withDefaultLimits(pod, nil)
	data := make(map[string]atomicwriter.FileProjection, len(items))
	for _, it := range items {
		fp := atomicwriter.FileProjection{Mode: mode}
		if it.Mode != nil {
			fp.Mode = *it.Mode
		}
		switch {
		case it.FieldRef != nil:
			v, err := fieldPathValue(pod, it.FieldRef.FieldPath)
			if err != nil {
				errs = append(errs, err)
			} else {
				fp.Data = []byte(v)
			}
		case it.ResourceFieldRef != nil:
			v, err := containerResourceValue(it.ResourceFieldRef, defaulted, nil)
			if err != nil {
				errs = append(errs, err)
			} else {
				fp.Data = []byte(v)
			}
		}
		data[filepath.Clean(it.Path)] = fp
	}
	return data, errors.Join(errs...)
}

// projectedPayload is the kubelet's projected volume collectData: the files
// of each source (configMap, secret, downwardAPI, serviceAccountToken: a
// token bound to the pod, from the token manager) with the volume's default
// mode; a source that fails is skipped and its error returned with the others.
func (w *worker) projectedPayload(ctx context.Context, pod *corev1.Pod, src *corev1.ProjectedVolumeSource) (map[string]atomicwriter.FileProjection, error) {
	mode := corev1.ProjectedVolumeSourceDefaultMode
	if src.DefaultMode != nil {
		mode = *src.DefaultMode
	}
	var errs []error
	payload := map[string]atomicwriter.FileProjection{}
	add := func(p map[string]atomicwriter.FileProjection, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		for k, v := range p {
			payload[k] = v
		}
	}
	for _, s := range src.Sources {
		switch {
		case s.Secret != nil:
			optional := s.Secret.Optional != nil && *s.Secret.Optional
			sec, err := w.secret(ctx, pod.Namespace, s.Secret.Name)
			if err != nil {
				if !isNotFound(err) || !optional {
					errs = append(errs, err)
					continue
				}
				sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: s.Secret.Name}}
			}
			add(secretPayload(s.Secret.Items, sec, &mode, optional))
		case s.ConfigMap != nil:
			optional := s.ConfigMap.Optional != nil && *s.ConfigMap.Optional
			cm, err := w.configMap(ctx, pod.Namespace, s.ConfigMap.Name)
			if err != nil {
				if !isNotFound(err) || !optional {
					errs = append(errs, err)
					continue
				}
				cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: s.ConfigMap.Name}}
			}
			add(configMapPayload(s.ConfigMap.Items, cm, &mode, optional))
		case s.DownwardAPI != nil:
			add(w.downwardAPIPayload(s.DownwardAPI.Items, pod, &mode))
		case s.ServiceAccountToken != nil:
			tp := s.ServiceAccountToken
			tr, err := w.m.tokens.token(ctx, pod.Namespace, pod.Spec.ServiceAccountName, tokenRequest(pod, tp))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			payload[tp.Path] = atomicwriter.FileProjection{Data: []byte(tr.Status.Token), Mode: mode}
		case s.ClusterTrustBundle != nil:
			errs = append(errs, errors.New("clusterTrustBundle projections are not supported by logplane"))
		case s.PodCertificate != nil:
			errs = append(errs, errors.New("podCertificate projections are not supported by logplane"))
		}
	}
	return payload, errors.Join(errs...)
}

// projectedVolume sets up a downwardAPI or projected volume: its files
// written with the AtomicWriter, read-only in the containers, and written
// again every sync period (refreshVolumes), so that a change of the pod's
// labels or annotations shows in them as with the kubelet; with a pod
// fsGroup, each version gets its group as configMap and secret volumes do.
func (w *worker) projectedVolume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, fsGroup *int64) (string, bool, error) {
	plugin := projectedPlugin
	if v.DownwardAPI != nil {
		plugin = downwardAPIPlugin
	}
	d := w.volumeDir(pod, plugin, v.Name)
	if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
		// World-writable, as the kubelet's emptyDir that these volumes wrap.
		if err := os.MkdirAll(d, 0o777); err != nil {
			return "", false, err
		}
		if err := os.Chmod(d, 0o777); err != nil {
			return "", false, err
		}
	}
	var payload map[string]atomicwriter.FileProjection
	var err error
	if v.DownwardAPI != nil {
		payload, err = w.downwardAPIPayload(v.DownwardAPI.Items, pod, v.DownwardAPI.DefaultMode)
	} else {
		payload, err = w.projectedPayload(ctx, pod, v.Projected)
	}
	if err != nil {
		return "", false, err
	}
	return d, true, w.project(d, payload, fsGroup)
}
