package nodefeed

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/eventlog"
)

// podRefs returns the objects a pod uses that its node must read: the Secrets, ConfigMaps and
// PersistentVolumeClaims its volumes (projected ones included), environment and image pull
// secrets name, and its ServiceAccount. A port of Kubernetes' VisitPodSecretNames and
// VisitPodConfigmapNames (pkg/api/v1/pod/util.go) and of the Node authorizer's graph populator
// (plugin/pkg/auth/authorizer/node/graph_populator.go, AddPod), which walk the same fields.
func podRefs(pod *corev1.Pod) []eventlog.Key {
	ns := pod.Namespace
	seen := map[eventlog.Key]bool{}
	var out []eventlog.Key
	add := func(resource, name string) {
		if name == "" {
			return
		}
		k := eventlog.Key{Resource: resource, Namespace: ns, Name: name}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	secret := func(name string) { add("secrets", name) }
	secretRef := func(r *corev1.LocalObjectReference) {
		if r != nil {
			secret(r.Name)
		}
	}
	configMap := func(name string) { add("configmaps", name) }
	for _, s := range pod.Spec.ImagePullSecrets {
		secret(s.Name)
	}
	add("serviceaccounts", pod.Spec.ServiceAccountName)
	env := func(from []corev1.EnvFromSource, vars []corev1.EnvVar) {
		for _, f := range from {
			if f.SecretRef != nil {
				secret(f.SecretRef.Name)
			}
			if f.ConfigMapRef != nil {
				configMap(f.ConfigMapRef.Name)
			}
		}
		for _, v := range vars {
			if v.ValueFrom == nil {
				continue
			}
			if v.ValueFrom.SecretKeyRef != nil {
				secret(v.ValueFrom.SecretKeyRef.Name)
			}
			if v.ValueFrom.ConfigMapKeyRef != nil {
				configMap(v.ValueFrom.ConfigMapKeyRef.Name)
			}
		}
	}
	for _, c := range pod.Spec.InitContainers {
		env(c.EnvFrom, c.Env)
	}
	for _, c := range pod.Spec.Containers {
		env(c.EnvFrom, c.Env)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		env(c.EnvFrom, c.Env)
	}
	for _, v := range pod.Spec.Volumes {
		src := v.VolumeSource
		switch {
		case src.Secret != nil:
			secret(src.Secret.SecretName)
		case src.ConfigMap != nil:
			configMap(src.ConfigMap.Name)
		case src.Projected != nil:
			for _, p := range src.Projected.Sources {
				if p.Secret != nil {
					secret(p.Secret.Name)
				}
				if p.ConfigMap != nil {
					configMap(p.ConfigMap.Name)
				}
			}
		case src.PersistentVolumeClaim != nil:
			add("persistentvolumeclaims", src.PersistentVolumeClaim.ClaimName)
		case src.Ephemeral != nil:
			// The claim of a generic ephemeral volume is named <pod>-<volume>.
			add("persistentvolumeclaims", pod.Name+"-"+v.Name)
		case src.AzureFile != nil:
			secret(src.AzureFile.SecretName)
		case src.CephFS != nil:
			secretRef(src.CephFS.SecretRef)
		case src.Cinder != nil:
			secretRef(src.Cinder.SecretRef)
		case src.FlexVolume != nil:
			secretRef(src.FlexVolume.SecretRef)
		case src.RBD != nil:
			secretRef(src.RBD.SecretRef)
		case src.ScaleIO != nil:
			secretRef(src.ScaleIO.SecretRef)
		case src.ISCSI != nil:
			secretRef(src.ISCSI.SecretRef)
		case src.StorageOS != nil:
			secretRef(src.StorageOS.SecretRef)
		case src.CSI != nil:
			secretRef(src.CSI.NodePublishSecretRef)
		}
	}
	return out
}
