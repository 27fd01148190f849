package defaults

import (
	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// defaultTolerationSeconds is what the DefaultTolerationSeconds admission plugin of Kubernetes
// gives pods that do not tolerate not-ready and unreachable nodes themselves.
const defaultTolerationSeconds int64 = 300

// Pod is SetDefaults_Pod plus the pod spec defaults, the v1 conversion of the deprecated fields,
// and what Kubernetes' default admission plugins (ServiceAccount, Priority,
// DefaultTolerationSeconds) set on every pod.
func Pod(p *corev1.Pod) {
	// Requests default to limits on pods, not on templates.
	for i := range p.Spec.Containers {
		requestsFromLimits(&p.Spec.Containers[i].Resources)
	}
	for i := range p.Spec.InitContainers {
		requestsFromLimits(&p.Spec.InitContainers[i].Resources)
	}
	if p.Spec.EnableServiceLinks == nil {
		p.Spec.EnableServiceLinks = ptr.To(corev1.DefaultEnableServiceLinks)
	}
	podSpec(&p.Spec)

	// Admission: ServiceAccount, Priority, DefaultTolerationSeconds.
	if p.Spec.ServiceAccountName == "" {
		p.Spec.ServiceAccountName = p.Spec.DeprecatedServiceAccount
	}
	if p.Spec.ServiceAccountName == "" {
		p.Spec.ServiceAccountName = "default"
	}
	p.Spec.DeprecatedServiceAccount = p.Spec.ServiceAccountName
	if p.Spec.Priority == nil && p.Spec.PriorityClassName == "" {
		p.Spec.Priority = ptr.To[int32](0)
	}
	if p.Spec.PreemptionPolicy == nil {
		pp := corev1.PreemptLowerPriority
		p.Spec.PreemptionPolicy = &pp
	}
	p.Spec.Tolerations = defaultTolerations(p.Spec.Tolerations)

	// Conversion keeps the singular and plural status IPs in step.
	if p.Status.PodIP != "" && len(p.Status.PodIPs) == 0 {
		p.Status.PodIPs = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	if p.Status.PodIP == "" && len(p.Status.PodIPs) > 0 {
		p.Status.PodIP = p.Status.PodIPs[0].IP
	}
	if p.Status.HostIP != "" && len(p.Status.HostIPs) == 0 {
		p.Status.HostIPs = []corev1.HostIP{{IP: p.Status.HostIP}}
	}
	if p.Status.HostIP == "" && len(p.Status.HostIPs) > 0 {
		p.Status.HostIP = p.Status.HostIPs[0].IP
	}
}

// defaultTolerations adds the not-ready and unreachable NoExecute tolerations for 300s unless
// the pod already tolerates those taints.
func defaultTolerations(ts []corev1.Toleration) []corev1.Toleration {
	tolerates := func(key string) bool {
		for _, t := range ts {
			if (t.Key == key || (t.Key == "" && t.Operator == corev1.TolerationOpExists)) &&
				(t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") {
				return true
			}
		}
		return false
	}
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		if !tolerates(key) {
			ts = append(ts, corev1.Toleration{
				Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute,
				TolerationSeconds: ptr.To(defaultTolerationSeconds),
			})
		}
	}
	return ts
}

func requestsFromLimits(r *corev1.ResourceRequirements) {
	if r.Limits == nil {
		return
	}
	if r.Requests == nil {
		r.Requests = corev1.ResourceList{}
	}
	for name, q := range r.Limits {
		if _, ok := r.Requests[name]; !ok {
			r.Requests[name] = q.DeepCopy()
		}
	}
}

func podTemplateSpec(t *corev1.PodTemplateSpec) { podSpec(&t.Spec) }

// podSpec is SetDefaults_PodSpec and the defaults of everything a pod spec holds.
func podSpec(s *corev1.PodSpec) {
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.HostNetwork {
		hostNetworkPorts(s.Containers)
		hostNetworkPorts(s.InitContainers)
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = ptr.To[int64](corev1.DefaultTerminationGracePeriodSeconds)
	}
	if s.SchedulerName == "" {
		s.SchedulerName = corev1.DefaultSchedulerName
	}
	for i := range s.Volumes {
		volume(&s.Volumes[i])
	}
	for i := range s.InitContainers {
		container(&s.InitContainers[i])
	}
	for i := range s.Containers {
		container(&s.Containers[i])
	}
	for i := range s.EphemeralContainers {
		c := corev1.Container(s.EphemeralContainers[i].EphemeralContainerCommon)
		container(&c)
		s.EphemeralContainers[i].EphemeralContainerCommon = corev1.EphemeralContainerCommon(c)
	}
}

func hostNetworkPorts(cs []corev1.Container) {
	for i := range cs {
		for j := range cs[i].Ports {
			if cs[i].Ports[j].HostPort == 0 {
				cs[i].Ports[j].HostPort = cs[i].Ports[j].ContainerPort
			}
		}
	}
}

// container is SetDefaults_Container with the defaults of its ports, env, probes and lifecycle.
func container(c *corev1.Container) {
	if c.ImagePullPolicy == "" {
		if imageTag(c.Image) == "latest" {
			c.ImagePullPolicy = corev1.PullAlways
		} else {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	for i := range c.Env {
		if vf := c.Env[i].ValueFrom; vf != nil && vf.FieldRef != nil && vf.FieldRef.APIVersion == "" {
			vf.FieldRef.APIVersion = "v1"
		}
	}
	probe(c.LivenessProbe)
	probe(c.ReadinessProbe)
	probe(c.StartupProbe)
	if c.Lifecycle != nil {
		lifecycleHandler(c.Lifecycle.PostStart)
		lifecycleHandler(c.Lifecycle.PreStop)
	}
}

// imageTag is the tag Kubernetes' ParseImageName finds: the image's tag, "latest" when it has
// neither tag nor digest, and "" when it has only a digest or cannot be parsed.
func imageTag(image string) string {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return ""
	}
	if t, ok := named.(reference.Tagged); ok {
		return t.Tag()
	}
	if _, ok := named.(reference.Digested); ok {
		return ""
	}
	return "latest"
}

func probe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	httpGet(p.HTTPGet)
	if p.GRPC != nil && p.GRPC.Service == nil {
		p.GRPC.Service = ptr.To("")
	}
}

func lifecycleHandler(h *corev1.LifecycleHandler) {
	if h != nil {
		httpGet(h.HTTPGet)
	}
}

func httpGet(a *corev1.HTTPGetAction) {
	if a == nil {
		return
	}
	if a.Path == "" {
		a.Path = "/"
	}
	if a.Scheme == "" {
		a.Scheme = corev1.URISchemeHTTP
	}
}

// mode0644 is the default mode of files projected from configMaps, secrets and the downward API.
const mode0644 int32 = 0o644

func volume(v *corev1.Volume) {
	vs := &v.VolumeSource
	if emptyVolumeSource(vs) {
		vs.EmptyDir = &corev1.EmptyDirVolumeSource{}
	}
	switch {
	case vs.Secret != nil:
		if vs.Secret.DefaultMode == nil {
			vs.Secret.DefaultMode = ptr.To(mode0644)
		}
	case vs.ConfigMap != nil:
		if vs.ConfigMap.DefaultMode == nil {
			vs.ConfigMap.DefaultMode = ptr.To(mode0644)
		}
	case vs.DownwardAPI != nil:
		if vs.DownwardAPI.DefaultMode == nil {
			vs.DownwardAPI.DefaultMode = ptr.To(mode0644)
		}
		downwardAPIItems(vs.DownwardAPI.Items)
	case vs.Projected != nil:
		if vs.Projected.DefaultMode == nil {
			vs.Projected.DefaultMode = ptr.To(mode0644)
		}
		for i := range vs.Projected.Sources {
			src := &vs.Projected.Sources[i]
			if src.ServiceAccountToken != nil && src.ServiceAccountToken.ExpirationSeconds == nil {
				src.ServiceAccountToken.ExpirationSeconds = ptr.To[int64](3600)
			}
			if src.DownwardAPI != nil {
				downwardAPIItems(src.DownwardAPI.Items)
			}
		}
	case vs.HostPath != nil:
		if vs.HostPath.Type == nil {
			t := corev1.HostPathUnset
			vs.HostPath.Type = &t
		}
	case vs.ISCSI != nil:
		if vs.ISCSI.ISCSIInterface == "" {
			vs.ISCSI.ISCSIInterface = "default"
		}
	case vs.RBD != nil:
		if vs.RBD.RBDPool == "" {
			vs.RBD.RBDPool = "rbd"
		}
		if vs.RBD.RadosUser == "" {
			vs.RBD.RadosUser = "admin"
		}
		if vs.RBD.Keyring == "" {
			vs.RBD.Keyring = "/etc/ceph/keyring"
		}
	case vs.Ephemeral != nil && vs.Ephemeral.VolumeClaimTemplate != nil:
		pvcSpec(&vs.Ephemeral.VolumeClaimTemplate.Spec)
	}
}

func pvcSpec(s *corev1.PersistentVolumeClaimSpec) {
	if s.VolumeMode == nil {
		m := corev1.PersistentVolumeFilesystem
		s.VolumeMode = &m
	}
}

func downwardAPIItems(items []corev1.DownwardAPIVolumeFile) {
	for i := range items {
		if items[i].FieldRef != nil && items[i].FieldRef.APIVersion == "" {
			items[i].FieldRef.APIVersion = "v1"
		}
	}
}

// emptyVolumeSource reports whether no source is set: Kubernetes then defaults to an emptyDir.
func emptyVolumeSource(vs *corev1.VolumeSource) bool {
	return *vs == corev1.VolumeSource{}
}

// intOrZero reports whether v is unset (0 or "").
func intOrZero(v intstr.IntOrString) bool {
	return v == intstr.FromInt32(0) || v == intstr.FromString("")
}
