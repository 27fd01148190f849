package validation

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	supportedPortProtocols  = []corev1.Protocol{corev1.ProtocolSCTP, corev1.ProtocolTCP, corev1.ProtocolUDP}
	supportedRestartPolicy  = []corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}
	supportedPullPolicies   = []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}
	supportedDNSPolicies    = []corev1.DNSPolicy{corev1.DNSClusterFirstWithHostNet, corev1.DNSClusterFirst, corev1.DNSDefault, corev1.DNSNone}
	supportedTermMsgPolicy  = []corev1.TerminationMessagePolicy{corev1.TerminationMessageFallbackToLogsOnError, corev1.TerminationMessageReadFile}
	supportedTaintEffects   = []corev1.TaintEffect{corev1.TaintEffectNoExecute, corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule}
	supportedHTTPSchemes    = []corev1.URIScheme{corev1.URISchemeHTTP, corev1.URISchemeHTTPS}
	supportedMountPropModes = []corev1.MountPropagationMode{corev1.MountPropagationBidirectional, corev1.MountPropagationHostToContainer, corev1.MountPropagationNone}
	supportedEnvFieldPaths  = []string{"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
		"spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"}
	supportedResourceFieldRefs = []string{"limits.cpu", "limits.memory", "limits.ephemeral-storage",
		"requests.cpu", "requests.memory", "requests.ephemeral-storage"}
)

const isNegativeErrorMsg = apivalidation.IsNegativeErrorMsg

// Pod validates a new Pod: metadata and spec, as Kubernetes does on create.
func Pod(p *corev1.Pod) field.ErrorList {
	errs := objectMeta(&p.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	errs = append(errs, podSpec(&p.Spec, field.NewPath("spec"), podSpecOptions{isPod: true})...)
	if len(p.Spec.EphemeralContainers) > 0 {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "ephemeralContainers"), "cannot be set on create"))
	}
	return errs
}

// podTemplateSpec validates a pod template: its labels and annotations, and its pod spec, whose
// mounts may also name the claimVolumes (a StatefulSet's volume claim templates).
func podTemplateSpec(t *corev1.PodTemplateSpec, fldPath *field.Path, claimVolumes ...string) field.ErrorList {
	// Kubernetes names these spec.template.labels and .annotations (not .metadata.labels).
	errs := metav1validation.ValidateLabels(t.Labels, fldPath.Child("labels"))
	errs = append(errs, apivalidation.ValidateAnnotations(t.Annotations, fldPath.Child("annotations"))...)
	errs = append(errs, podSpec(&t.Spec, fldPath.Child("spec"), podSpecOptions{}, claimVolumes...)...)
	return errs
}

// podSpecOptions are the PodValidationOptions that logplane needs.
type podSpecOptions struct {
	// isPod: the spec is a pod's, not a template's.
	isPod bool
	// allowHostSysctls lets namespaced sysctls stand beside hostNetwork or hostIPC, for an update
	// of a pod that already had them (AllowNamespacedSysctlsForHostNetAndHostIPC).
	allowHostSysctls bool
}

// podSpec is ValidatePodSpec: containers, volumes, policies, scheduling fields.
func podSpec(s *corev1.PodSpec, fldPath *field.Path, opts podSpecOptions, claimVolumes ...string) field.ErrorList {
	isPod := opts.isPod
	var errs field.ErrorList
	volumes, volErrs := podVolumes(s.Volumes, fldPath.Child("volumes"))
	errs = append(errs, volErrs...)
	for _, name := range claimVolumes {
		if _, ok := volumes[name]; !ok {
			volumes[name] = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}
		}
	}

	names := sets.New[string]()
	errs = append(errs, containers(s.InitContainers, volumes, names, fldPath.Child("initContainers"), true)...)
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(fldPath.Child("containers"), ""))
	}
	errs = append(errs, containers(s.Containers, volumes, names, fldPath.Child("containers"), false)...)
	if len(s.EphemeralContainers) > 0 {
		ephemeral := make([]corev1.Container, len(s.EphemeralContainers))
		for i := range s.EphemeralContainers {
			ephemeral[i] = corev1.Container(s.EphemeralContainers[i].EphemeralContainerCommon)
		}
		errs = append(errs, containers(ephemeral, volumes, names, fldPath.Child("ephemeralContainers"), false)...)
	}
	errs = append(errs, hostPorts(s, fldPath)...)

	switch {
	case s.RestartPolicy == "":
		errs = append(errs, field.Required(fldPath.Child("restartPolicy"), ""))
	case !slices.Contains(supportedRestartPolicy, s.RestartPolicy):
		errs = append(errs, field.NotSupported(fldPath.Child("restartPolicy"), s.RestartPolicy, supportedRestartPolicy))
	}
	switch {
	case s.DNSPolicy == "":
		errs = append(errs, field.Required(fldPath.Child("dnsPolicy"), ""))
	case !slices.Contains(supportedDNSPolicies, s.DNSPolicy):
		errs = append(errs, field.NotSupported(fldPath.Child("dnsPolicy"), s.DNSPolicy, supportedDNSPolicies))
	}
	errs = append(errs, schedulingFields(s, fldPath)...)
	errs = append(errs, metav1validation.ValidateLabels(s.NodeSelector, fldPath.Child("nodeSelector"))...)
	if s.ServiceAccountName != "" {
		for _, msg := range apivalidation.ValidateServiceAccountName(s.ServiceAccountName, false) {
			errs = append(errs, field.Invalid(fldPath.Child("serviceAccountName"), s.ServiceAccountName, msg))
		}
	}
	if s.NodeName != "" {
		for _, msg := range apivalidation.NameIsDNSSubdomain(s.NodeName, false) {
			errs = append(errs, field.Invalid(fldPath.Child("nodeName"), s.NodeName, msg))
		}
	}
	if s.Hostname != "" {
		errs = append(errs, dns1123Label(s.Hostname, fldPath.Child("hostname"))...)
	}
	if s.Subdomain != "" {
		errs = append(errs, dns1123Label(s.Subdomain, fldPath.Child("subdomain"))...)
	}
	if s.ActiveDeadlineSeconds != nil {
		if v := *s.ActiveDeadlineSeconds; v < 1 || v > math.MaxInt32 {
			errs = append(errs, field.Invalid(fldPath.Child("activeDeadlineSeconds"), v, utilvalidation.InclusiveRangeError(1, math.MaxInt32)))
		}
	}
	if s.TerminationGracePeriodSeconds != nil && *s.TerminationGracePeriodSeconds < 0 && !isPod {
		errs = append(errs, field.Invalid(fldPath.Child("terminationGracePeriodSeconds"), *s.TerminationGracePeriodSeconds, isNegativeErrorMsg))
	}
	errs = append(errs, tolerations(s.Tolerations, fldPath.Child("tolerations"))...)
	for i, g := range s.ReadinessGates {
		for _, msg := range utilvalidation.IsQualifiedName(string(g.ConditionType)) {
			errs = append(errs, field.Invalid(fldPath.Child("readinessGates").Index(i).Child("conditionType"), string(g.ConditionType), msg))
		}
	}
	for i, sec := range s.ImagePullSecrets {
		if sec.Name == "" {
			errs = append(errs, field.Required(fldPath.Child("imagePullSecrets").Index(i).Child("name"), ""))
		}
	}
	if s.SchedulerName != "" {
		for _, msg := range utilvalidation.IsDNS1123Subdomain(s.SchedulerName) {
			errs = append(errs, field.Invalid(fldPath.Child("schedulerName"), s.SchedulerName, msg))
		}
	}
	errs = append(errs, podSecurityContext(s.SecurityContext, fldPath.Child("securityContext"))...)
	if sc := s.SecurityContext; sc != nil && len(sc.Sysctls) != 0 {
		errs = append(errs, sysctls(sc.Sysctls, s.HostNetwork, s.HostIPC, fldPath.Child("securityContext", "sysctls"), opts.allowHostSysctls)...)
	}
	if s.HostNetwork {
		for i, c := range s.Containers {
			for j, p := range c.Ports {
				if p.HostPort != p.ContainerPort {
					errs = append(errs, field.Invalid(fldPath.Child("containers").Index(i).Child("ports").Index(j).Child("containerPort"),
						p.ContainerPort, "must match `hostPort` when `hostNetwork` is true"))
				}
			}
		}
	}
	return errs
}

func idRange(id int64, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range utilvalidation.IsValidUserID(id) {
		errs = append(errs, field.Invalid(fldPath, id, msg))
	}
	return errs
}

func dns1123Label(v string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range utilvalidation.IsDNS1123Label(v) {
		errs = append(errs, field.Invalid(fldPath, v, msg))
	}
	return errs
}

func dns1123Subdomain(v string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range utilvalidation.IsDNS1123Subdomain(v) {
		errs = append(errs, field.Invalid(fldPath, v, msg))
	}
	return errs
}

func qualifiedName(v string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range utilvalidation.IsQualifiedName(v) {
		errs = append(errs, field.Invalid(fldPath, v, msg))
	}
	return errs
}

// containers validates a list of containers, adding their names to names (names are unique
// across init, regular and ephemeral containers).
func containers(cs []corev1.Container, volumes map[string]corev1.VolumeSource, names sets.Set[string], fldPath *field.Path, init bool) field.ErrorList {
	var errs field.ErrorList
	for i := range cs {
		c := &cs[i]
		idx := fldPath.Index(i)
		namePath := idx.Child("name")
		switch {
		case c.Name == "":
			errs = append(errs, field.Required(namePath, ""))
		default:
			errs = append(errs, dns1123Label(c.Name, namePath)...)
			if names.Has(c.Name) {
				errs = append(errs, field.Duplicate(namePath, c.Name))
			} else {
				names.Insert(c.Name)
			}
		}
		if c.Image == "" {
			errs = append(errs, field.Required(idx.Child("image"), ""))
		} else if strings.TrimSpace(c.Image) != c.Image {
			errs = append(errs, field.Invalid(idx.Child("image"), c.Image, "must not have leading or trailing whitespace"))
		}
		switch {
		case c.ImagePullPolicy == "":
			errs = append(errs, field.Required(idx.Child("imagePullPolicy"), ""))
		case !slices.Contains(supportedPullPolicies, c.ImagePullPolicy):
			errs = append(errs, field.NotSupported(idx.Child("imagePullPolicy"), c.ImagePullPolicy, supportedPullPolicies))
		}
		switch {
		case c.TerminationMessagePolicy == "":
			errs = append(errs, field.Required(idx.Child("terminationMessagePolicy"), ""))
		case !slices.Contains(supportedTermMsgPolicy, c.TerminationMessagePolicy):
			errs = append(errs, field.NotSupported(idx.Child("terminationMessagePolicy"), c.TerminationMessagePolicy, supportedTermMsgPolicy))
		}
		errs = append(errs, containerPorts(c.Ports, idx.Child("ports"))...)
		errs = append(errs, envVars(c.Env, idx.Child("env"))...)
		errs = append(errs, envFrom(c.EnvFrom, idx.Child("envFrom"))...)
		errs = append(errs, volumeMounts(c.VolumeMounts, volumes, idx.Child("volumeMounts"))...)
		errs = append(errs, resources(&c.Resources, idx.Child("resources"))...)

		sidecar := init && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if c.RestartPolicy != nil && !init {
			errs = append(errs, field.Forbidden(idx.Child("restartPolicy"), "may not be set for non-init containers"))
		}
		if init && !sidecar {
			if c.LivenessProbe != nil {
				errs = append(errs, field.Forbidden(idx.Child("livenessProbe"), "may not be set for init containers without restartPolicy=Always"))
			}
			if c.ReadinessProbe != nil {
				errs = append(errs, field.Forbidden(idx.Child("readinessProbe"), "may not be set for init containers without restartPolicy=Always"))
			}
			if c.StartupProbe != nil {
				errs = append(errs, field.Forbidden(idx.Child("startupProbe"), "may not be set for init containers without restartPolicy=Always"))
			}
			if c.Lifecycle != nil {
				errs = append(errs, field.Forbidden(idx.Child("lifecycle"), "may not be set for init containers without restartPolicy=Always"))
			}
		} else {
			errs = append(errs, probe(c.LivenessProbe, idx.Child("livenessProbe"), true)...)
			errs = append(errs, probe(c.ReadinessProbe, idx.Child("readinessProbe"), false)...)
			errs = append(errs, probe(c.StartupProbe, idx.Child("startupProbe"), true)...)
			if c.Lifecycle != nil {
				errs = append(errs, lifecycleHandler(c.Lifecycle.PostStart, idx.Child("lifecycle", "postStart"))...)
				errs = append(errs, lifecycleHandler(c.Lifecycle.PreStop, idx.Child("lifecycle", "preStop"))...)
			}
		}
		errs = append(errs, containerSecurityContext(c.SecurityContext, idx.Child("securityContext"))...)
	}
	return errs
}

func containerPorts(ports []corev1.ContainerPort, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, p := range ports {
		idx := fldPath.Index(i)
		if p.Name != "" {
			if msgs := utilvalidation.IsValidPortName(p.Name); len(msgs) != 0 {
				for _, msg := range msgs {
					errs = append(errs, field.Invalid(idx.Child("name"), p.Name, msg))
				}
			} else if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(idx.Child("name"), p.Name))
			} else {
				names.Insert(p.Name)
			}
		}
		if p.ContainerPort == 0 {
			errs = append(errs, field.Required(idx.Child("containerPort"), ""))
		} else {
			for _, msg := range utilvalidation.IsValidPortNum(int(p.ContainerPort)) {
				errs = append(errs, field.Invalid(idx.Child("containerPort"), p.ContainerPort, msg))
			}
		}
		if p.HostPort != 0 {
			for _, msg := range utilvalidation.IsValidPortNum(int(p.HostPort)) {
				errs = append(errs, field.Invalid(idx.Child("hostPort"), p.HostPort, msg))
			}
		}
		if p.HostIP != "" {
			errs = append(errs, utilvalidation.IsValidIP(idx.Child("hostIP"), p.HostIP)...)
		}
		switch {
		case p.Protocol == "":
			errs = append(errs, field.Required(idx.Child("protocol"), ""))
		case !slices.Contains(supportedPortProtocols, p.Protocol):
			errs = append(errs, field.NotSupported(idx.Child("protocol"), p.Protocol, supportedPortProtocols))
		}
	}
	return errs
}

// hostPorts rejects two containers of a pod asking for the same host port and protocol.
func hostPorts(s *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := sets.New[string]()
	check := func(cs []corev1.Container, p *field.Path) {
		for i, c := range cs {
			for j, port := range c.Ports {
				if port.HostPort == 0 {
					continue
				}
				key := fmt.Sprintf("%s/%s/%d", port.Protocol, port.HostIP, port.HostPort)
				if seen.Has(key) {
					errs = append(errs, field.Duplicate(p.Index(i).Child("ports").Index(j).Child("hostPort"), key))
				}
				seen.Insert(key)
			}
		}
	}
	check(s.Containers, fldPath.Child("containers"))
	check(s.InitContainers, fldPath.Child("initContainers"))
	return errs
}

func envVarName(name string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range utilvalidation.IsRelaxedEnvVarName(name) {
		errs = append(errs, field.Invalid(fldPath, name, msg))
	}
	return errs
}

func envVars(vars []corev1.EnvVar, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, ev := range vars {
		idx := fldPath.Index(i)
		if ev.Name == "" {
			errs = append(errs, field.Required(idx.Child("name"), ""))
		} else {
			errs = append(errs, envVarName(ev.Name, idx.Child("name"))...)
		}
		errs = append(errs, envVarSource(ev, idx.Child("valueFrom"))...)
	}
	return errs
}

func envVarSource(ev corev1.EnvVar, fldPath *field.Path) field.ErrorList {
	vf := ev.ValueFrom
	if vf == nil {
		return nil
	}
	var errs field.ErrorList
	n := 0
	if vf.FieldRef != nil {
		n++
		errs = append(errs, fieldRef(vf.FieldRef, supportedEnvFieldPaths, fldPath.Child("fieldRef"))...)
	}
	if vf.ResourceFieldRef != nil {
		n++
		errs = append(errs, resourceFieldRef(vf.ResourceFieldRef, fldPath.Child("resourceFieldRef"))...)
	}
	if vf.ConfigMapKeyRef != nil {
		n++
		errs = append(errs, keySelector(vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key, fldPath.Child("configMapKeyRef"))...)
	}
	if vf.SecretKeyRef != nil {
		n++
		errs = append(errs, keySelector(vf.SecretKeyRef.Name, vf.SecretKeyRef.Key, fldPath.Child("secretKeyRef"))...)
	}
	if vf.FileKeyRef != nil {
		n++
	}
	switch {
	case n == 0:
		errs = append(errs, field.Invalid(fldPath, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
	case n > 1:
		errs = append(errs, field.Invalid(fldPath, "", "may not have more than one field specified at a time"))
	case ev.Value != "":
		errs = append(errs, field.Invalid(fldPath, "", "may not be specified when `value` is not empty"))
	}
	return errs
}

var labelOrAnnotationPath = regexp.MustCompile(`^metadata\.(labels|annotations)\['(.+)'\]$`)

func fieldRef(r *corev1.ObjectFieldSelector, supported []string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r.APIVersion == "" {
		errs = append(errs, field.Required(fldPath.Child("apiVersion"), ""))
		return errs
	}
	if r.FieldPath == "" {
		errs = append(errs, field.Required(fldPath.Child("fieldPath"), ""))
		return errs
	}
	if r.APIVersion != "v1" {
		errs = append(errs, field.Invalid(fldPath.Child("apiVersion"), r.APIVersion, "unsupported pod version"))
		return errs
	}
	if m := labelOrAnnotationPath.FindStringSubmatch(r.FieldPath); m != nil {
		if m[1] == "labels" {
			errs = append(errs, qualifiedName(strings.ToLower(m[2]), fldPath.Child("fieldPath"))...)
		}
		return errs
	}
	if !slices.Contains(supported, r.FieldPath) {
		errs = append(errs, field.NotSupported(fldPath.Child("fieldPath"), r.FieldPath, supported))
	}
	return errs
}

func resourceFieldRef(r *corev1.ResourceFieldSelector, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case r.Resource == "":
		errs = append(errs, field.Required(fldPath.Child("resource"), ""))
	case !slices.Contains(supportedResourceFieldRefs, r.Resource) && !strings.HasPrefix(r.Resource, "limits.hugepages-") &&
		!strings.HasPrefix(r.Resource, "requests.hugepages-"):
		errs = append(errs, field.NotSupported(fldPath.Child("resource"), r.Resource, supportedResourceFieldRefs))
	}
	return errs
}

func keySelector(name, key string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range apivalidation.NameIsDNSSubdomain(name, false) {
		errs = append(errs, field.Invalid(fldPath.Child("name"), name, msg))
	}
	if key == "" {
		errs = append(errs, field.Required(fldPath.Child("key"), ""))
	} else {
		for _, msg := range utilvalidation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(fldPath.Child("key"), key, msg))
		}
	}
	return errs
}

func envFrom(srcs []corev1.EnvFromSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, src := range srcs {
		idx := fldPath.Index(i)
		if src.Prefix != "" {
			errs = append(errs, envVarName(src.Prefix, idx.Child("prefix"))...)
		}
		n := 0
		if src.ConfigMapRef != nil {
			n++
			for _, msg := range apivalidation.NameIsDNSSubdomain(src.ConfigMapRef.Name, false) {
				errs = append(errs, field.Invalid(idx.Child("configMapRef", "name"), src.ConfigMapRef.Name, msg))
			}
		}
		if src.SecretRef != nil {
			n++
			for _, msg := range apivalidation.NameIsDNSSubdomain(src.SecretRef.Name, false) {
				errs = append(errs, field.Invalid(idx.Child("secretRef", "name"), src.SecretRef.Name, msg))
			}
		}
		switch {
		case n == 0:
			errs = append(errs, field.Invalid(idx, "", "must specify one of: `configMapRef` or `secretRef`"))
		case n > 1:
			errs = append(errs, field.Invalid(idx, "", "may not have more than one field specified at a time"))
		}
	}
	return errs
}

func volumeMounts(mounts []corev1.VolumeMount, volumes map[string]corev1.VolumeSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	points := sets.New[string]()
	for i, m := range mounts {
		idx := fldPath.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(idx.Child("name"), ""))
		}
		if _, ok := volumes[m.Name]; !ok {
			errs = append(errs, field.NotFound(idx.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(idx.Child("mountPath"), ""))
		}
		if points.Has(m.MountPath) {
			errs = append(errs, field.Invalid(idx.Child("mountPath"), m.MountPath, "must be unique"))
		}
		points.Insert(m.MountPath)
		if m.SubPath != "" {
			errs = append(errs, localDescendingPath(m.SubPath, fldPath.Child("subPath"))...)
		}
		if m.SubPathExpr != "" {
			if m.SubPath != "" {
				errs = append(errs, field.Invalid(idx.Child("subPathExpr"), m.SubPathExpr, "subPathExpr and subPath are mutually exclusive"))
			}
			errs = append(errs, localDescendingPath(m.SubPathExpr, fldPath.Child("subPathExpr"))...)
		}
		if m.MountPropagation != nil && !slices.Contains(supportedMountPropModes, *m.MountPropagation) {
			errs = append(errs, field.NotSupported(idx.Child("mountPropagation"), *m.MountPropagation, supportedMountPropModes))
		}
	}
	return errs
}

// localDescendingPath rejects absolute paths and paths with a '..' element.
func localDescendingPath(p string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if path.IsAbs(p) {
		errs = append(errs, field.Invalid(fldPath, p, "must be a relative path"))
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			errs = append(errs, field.Invalid(fldPath, p, "must not contain '..'"))
			break
		}
	}
	return errs
}

// podVolumes validates volumes and returns them by name for the mounts to refer to.
func podVolumes(vols []corev1.Volume, fldPath *field.Path) (map[string]corev1.VolumeSource, field.ErrorList) {
	var errs field.ErrorList
	byName := map[string]corev1.VolumeSource{}
	for i, v := range vols {
		idx := fldPath.Index(i)
		namePath := idx.Child("name")
		errs = append(errs, volumeSource(&v.VolumeSource, idx)...)
		if v.Name == "" {
			errs = append(errs, field.Required(namePath, ""))
		} else {
			errs = append(errs, dns1123Label(v.Name, namePath)...)
		}
		if _, dup := byName[v.Name]; dup {
			errs = append(errs, field.Duplicate(namePath, v.Name))
		} else {
			byName[v.Name] = v.VolumeSource
		}
	}
	return byName, errs
}

func volumeSource(vs *corev1.VolumeSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	one := func(name string) bool {
		if n > 0 {
			errs = append(errs, field.Forbidden(fldPath.Child(name), "may not specify more than 1 volume type"))
			return false
		}
		n++
		return true
	}
	if vs.EmptyDir != nil && one("emptyDir") {
		if vs.EmptyDir.SizeLimit != nil && vs.EmptyDir.SizeLimit.Sign() < 0 {
			errs = append(errs, field.Forbidden(fldPath.Child("emptyDir", "sizeLimit"), "SizeLimit field must be a valid resource quantity"))
		}
	}
	if vs.HostPath != nil && one("hostPath") {
		if vs.HostPath.Path == "" {
			errs = append(errs, field.Required(fldPath.Child("hostPath", "path"), ""))
		}
	}
	if vs.Secret != nil && one("secret") {
		p := fldPath.Child("secret")
		if vs.Secret.SecretName == "" {
			errs = append(errs, field.Required(p.Child("secretName"), ""))
		} else {
			errs = append(errs, dns1123Subdomain(vs.Secret.SecretName, p.Child("secretName"))...)
		}
		errs = append(errs, fileMode(vs.Secret.DefaultMode, p.Child("defaultMode"))...)
		errs = append(errs, keyToPaths(vs.Secret.Items, p.Child("items"))...)
	}
	if vs.ConfigMap != nil && one("configMap") {
		p := fldPath.Child("configMap")
		if vs.ConfigMap.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		} else {
			errs = append(errs, dns1123Subdomain(vs.ConfigMap.Name, p.Child("name"))...)
		}
		errs = append(errs, fileMode(vs.ConfigMap.DefaultMode, p.Child("defaultMode"))...)
		errs = append(errs, keyToPaths(vs.ConfigMap.Items, p.Child("items"))...)
	}
	if vs.PersistentVolumeClaim != nil && one("persistentVolumeClaim") {
		if vs.PersistentVolumeClaim.ClaimName == "" {
			errs = append(errs, field.Required(fldPath.Child("persistentVolumeClaim", "claimName"), ""))
		}
	}
	if vs.NFS != nil && one("nfs") {
		if vs.NFS.Server == "" {
			errs = append(errs, field.Required(fldPath.Child("nfs", "server"), ""))
		}
		if vs.NFS.Path == "" {
			errs = append(errs, field.Required(fldPath.Child("nfs", "path"), ""))
		} else if !path.IsAbs(vs.NFS.Path) {
			errs = append(errs, field.Invalid(fldPath.Child("nfs", "path"), vs.NFS.Path, "must be an absolute path"))
		}
	}
	if vs.DownwardAPI != nil && one("downwardAPI") {
		p := fldPath.Child("downwardAPI")
		errs = append(errs, fileMode(vs.DownwardAPI.DefaultMode, p.Child("defaultMode"))...)
		for i, item := range vs.DownwardAPI.Items {
			errs = append(errs, downwardAPIFile(item, p.Child("items").Index(i))...)
		}
	}
	if vs.Projected != nil && one("projected") {
		p := fldPath.Child("projected")
		errs = append(errs, fileMode(vs.Projected.DefaultMode, p.Child("defaultMode"))...)
		for i, src := range vs.Projected.Sources {
			sp := p.Child("sources").Index(i)
			if src.Secret != nil {
				errs = append(errs, keyToPaths(src.Secret.Items, sp.Child("secret", "items"))...)
			}
			if src.ConfigMap != nil {
				errs = append(errs, keyToPaths(src.ConfigMap.Items, sp.Child("configMap", "items"))...)
			}
			if src.DownwardAPI != nil {
				for j, item := range src.DownwardAPI.Items {
					errs = append(errs, downwardAPIFile(item, sp.Child("downwardAPI", "items").Index(j))...)
				}
			}
			if src.ServiceAccountToken != nil {
				if src.ServiceAccountToken.Path == "" {
					errs = append(errs, field.Required(sp.Child("serviceAccountToken", "path"), ""))
				}
				if e := src.ServiceAccountToken.ExpirationSeconds; e != nil && *e < 600 {
					errs = append(errs, field.Invalid(sp.Child("serviceAccountToken", "expirationSeconds"), *e, "may not specify a duration less than 10 minutes"))
				}
			}
		}
	}
	// The remaining sources are counted, not examined.
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"awsElasticBlockStore", vs.AWSElasticBlockStore != nil}, {"azureDisk", vs.AzureDisk != nil},
		{"azureFile", vs.AzureFile != nil}, {"cephfs", vs.CephFS != nil}, {"cinder", vs.Cinder != nil},
		{"csi", vs.CSI != nil}, {"ephemeral", vs.Ephemeral != nil}, {"fc", vs.FC != nil},
		{"flexVolume", vs.FlexVolume != nil}, {"flocker", vs.Flocker != nil},
		{"gcePersistentDisk", vs.GCEPersistentDisk != nil}, {"gitRepo", vs.GitRepo != nil},
		{"glusterfs", vs.Glusterfs != nil}, {"image", vs.Image != nil}, {"iscsi", vs.ISCSI != nil},
		{"photonPersistentDisk", vs.PhotonPersistentDisk != nil}, {"portworxVolume", vs.PortworxVolume != nil},
		{"quobyte", vs.Quobyte != nil}, {"rbd", vs.RBD != nil}, {"scaleIO", vs.ScaleIO != nil},
		{"storageos", vs.StorageOS != nil}, {"vsphereVolume", vs.VsphereVolume != nil},
	} {
		if o.set {
			one(o.name)
		}
	}
	if n == 0 {
		errs = append(errs, field.Required(fldPath, "must specify a volume type"))
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func fileMode(mode *int32, fldPath *field.Path) field.ErrorList {
	if mode != nil && (*mode > 0o777 || *mode < 0) {
		return field.ErrorList{field.Invalid(fldPath, *mode, "must be a number between 0 and 0777 (octal), both inclusive")}
	}
	return nil
}

func keyToPaths(items []corev1.KeyToPath, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, kp := range items {
		idx := fldPath.Index(i)
		if kp.Key == "" {
			errs = append(errs, field.Required(idx.Child("key"), ""))
		}
		if kp.Path == "" {
			errs = append(errs, field.Required(idx.Child("path"), ""))
		} else {
			errs = append(errs, localNonReservedPath(kp.Path, idx.Child("path"))...)
		}
		errs = append(errs, fileMode(kp.Mode, idx.Child("mode"))...)
	}
	return errs
}

func localNonReservedPath(p string, fldPath *field.Path) field.ErrorList {
	errs := localDescendingPath(p, fldPath)
	if strings.HasPrefix(p, "..") && !strings.HasPrefix(p, "../") {
		errs = append(errs, field.Invalid(fldPath, p, "must not start with '..'"))
	}
	return errs
}

func downwardAPIFile(item corev1.DownwardAPIVolumeFile, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if item.Path == "" {
		errs = append(errs, field.Required(fldPath.Child("path"), ""))
	} else {
		errs = append(errs, localNonReservedPath(item.Path, fldPath.Child("path"))...)
	}
	if item.FieldRef != nil {
		supported := append([]string{"metadata.annotations", "metadata.labels"}, supportedEnvFieldPaths...)
		errs = append(errs, fieldRef(item.FieldRef, supported, fldPath.Child("fieldRef"))...)
		if item.ResourceFieldRef != nil {
			errs = append(errs, field.Invalid(fldPath, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
		}
	} else if item.ResourceFieldRef != nil {
		errs = append(errs, resourceFieldRef(item.ResourceFieldRef, fldPath.Child("resourceFieldRef"))...)
	} else {
		errs = append(errs, field.Required(fldPath, "one of fieldRef and resourceFieldRef is required"))
	}
	errs = append(errs, fileMode(item.Mode, fldPath.Child("mode"))...)
	return errs
}

// standardContainerResources are the resources a container may name without a domain prefix.
var standardContainerResources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage}

func containerResourceName(name corev1.ResourceName, fldPath *field.Path) field.ErrorList {
	errs := qualifiedName(string(name), fldPath)
	if len(errs) > 0 {
		return errs
	}
	if !strings.Contains(string(name), "/") {
		if !slices.Contains(standardContainerResources, name) && !strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix) {
			errs = append(errs, field.Invalid(fldPath, name, "must be a standard resource for containers"))
		}
	} else if !strings.Contains(string(name), "kubernetes.io/") && strings.HasPrefix(string(name), "requests.") {
		errs = append(errs, field.Invalid(fldPath, name, "doesn't follow extended resource name standard"))
	}
	return errs
}

// overcommitAllowed reports whether requests may be lower than limits (native resources other than
// hugepages).
func overcommitAllowed(name corev1.ResourceName) bool {
	native := !strings.Contains(string(name), "/") || strings.Contains(string(name), corev1.ResourceDefaultNamespacePrefix)
	return native && !strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix)
}

// integerResource reports whether quantities of the resource must be whole numbers (extended
// resources and hugepages are counted, not measured).
func integerResource(name corev1.ResourceName) bool {
	return !overcommitAllowed(name) && !strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix)
}

func quantityValue(name corev1.ResourceName, q resource.Quantity, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if q.Sign() < 0 {
		errs = append(errs, field.Invalid(fldPath, q.String(), isNegativeErrorMsg))
	}
	if integerResource(name) && q.MilliValue()%1000 != 0 {
		errs = append(errs, field.Invalid(fldPath, q.String(), "must be an integer"))
	}
	return errs
}

// resources is ValidateResourceRequirements: names, non-negative values, requests <= limits.
func resources(r *corev1.ResourceRequirements, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	limPath, reqPath := fldPath.Child("limits"), fldPath.Child("requests")
	for _, name := range sortedKeys(resourceMap(r.Limits)) {
		q := r.Limits[corev1.ResourceName(name)]
		p := limPath.Key(name)
		errs = append(errs, containerResourceName(corev1.ResourceName(name), p)...)
		errs = append(errs, quantityValue(corev1.ResourceName(name), q, p)...)
	}
	for _, name := range sortedKeys(resourceMap(r.Requests)) {
		rn := corev1.ResourceName(name)
		q := r.Requests[rn]
		p := reqPath.Key(name)
		errs = append(errs, containerResourceName(rn, p)...)
		errs = append(errs, quantityValue(rn, q, p)...)
		if lim, ok := r.Limits[rn]; ok {
			if q.Cmp(lim) != 0 && !overcommitAllowed(rn) {
				errs = append(errs, field.Invalid(reqPath, q.String(), fmt.Sprintf("must be equal to %s limit of %s", name, lim.String())))
			} else if q.Cmp(lim) > 0 {
				errs = append(errs, field.Invalid(reqPath, q.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
			}
		} else if !overcommitAllowed(rn) {
			errs = append(errs, field.Required(limPath, "Limit must be set for non overcommitable resources"))
		}
	}
	return errs
}

func resourceMap(l corev1.ResourceList) map[string]resource.Quantity {
	m := make(map[string]resource.Quantity, len(l))
	for k, v := range l {
		m[string(k)] = v
	}
	return m
}

func probe(p *corev1.Probe, fldPath *field.Path, successMustBeOne bool) field.ErrorList {
	if p == nil {
		return nil
	}
	errs := handler(p.Exec, p.HTTPGet, p.TCPSocket, p.GRPC, fldPath)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(p.InitialDelaySeconds), fldPath.Child("initialDelaySeconds"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(p.TimeoutSeconds), fldPath.Child("timeoutSeconds"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(p.PeriodSeconds), fldPath.Child("periodSeconds"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(p.SuccessThreshold), fldPath.Child("successThreshold"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(p.FailureThreshold), fldPath.Child("failureThreshold"))...)
	if p.TerminationGracePeriodSeconds != nil && *p.TerminationGracePeriodSeconds <= 0 {
		errs = append(errs, field.Invalid(fldPath.Child("terminationGracePeriodSeconds"), *p.TerminationGracePeriodSeconds, "must be greater than 0"))
	}
	if successMustBeOne && p.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(fldPath.Child("successThreshold"), p.SuccessThreshold, "must be 1"))
	}
	return errs
}

func lifecycleHandler(h *corev1.LifecycleHandler, fldPath *field.Path) field.ErrorList {
	if h == nil {
		return nil
	}
	errs := handler(h.Exec, h.HTTPGet, h.TCPSocket, nil, fldPath)
	if h.Sleep != nil && h.Sleep.Seconds < 0 {
		errs = append(errs, field.Invalid(fldPath.Child("sleep", "seconds"), h.Sleep.Seconds, isNegativeErrorMsg))
	}
	return errs
}

// handler checks that exactly one way to probe or hook is given, and that it is well formed.
func handler(exec *corev1.ExecAction, get *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction, grpc *corev1.GRPCAction, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if exec != nil {
		n++
		if len(exec.Command) == 0 {
			errs = append(errs, field.Required(fldPath.Child("exec", "command"), ""))
		}
	}
	if get != nil {
		if n > 0 {
			errs = append(errs, field.Forbidden(fldPath.Child("httpGet"), "may not specify more than 1 handler type"))
		}
		n++
		p := fldPath.Child("httpGet")
		if get.Path == "" {
			errs = append(errs, field.Required(p.Child("path"), ""))
		}
		errs = append(errs, portNumOrName(get.Port, p.Child("port"))...)
		if !slices.Contains(supportedHTTPSchemes, get.Scheme) {
			errs = append(errs, field.NotSupported(p.Child("scheme"), get.Scheme, supportedHTTPSchemes))
		}
		for i, h := range get.HTTPHeaders {
			for _, msg := range utilvalidation.IsHTTPHeaderName(h.Name) {
				errs = append(errs, field.Invalid(p.Child("httpHeaders").Index(i).Child("name"), h.Name, msg))
			}
		}
	}
	if tcp != nil {
		if n > 0 {
			errs = append(errs, field.Forbidden(fldPath.Child("tcpSocket"), "may not specify more than 1 handler type"))
		}
		n++
		errs = append(errs, portNumOrName(tcp.Port, fldPath.Child("tcpSocket", "port"))...)
	}
	if grpc != nil {
		if n > 0 {
			errs = append(errs, field.Forbidden(fldPath.Child("grpc"), "may not specify more than 1 handler type"))
		}
		n++
		for _, msg := range utilvalidation.IsValidPortNum(int(grpc.Port)) {
			errs = append(errs, field.Invalid(fldPath.Child("grpc", "port"), grpc.Port, msg))
		}
	}
	if n == 0 {
		errs = append(errs, field.Required(fldPath, "must specify a handler type"))
	}
	return errs
}

func portNumOrName(port intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch port.Type {
	case intstr.Int:
		for _, msg := range utilvalidation.IsValidPortNum(port.IntValue()) {
			errs = append(errs, field.Invalid(fldPath, port.IntValue(), msg))
		}
	case intstr.String:
		for _, msg := range utilvalidation.IsValidPortName(port.StrVal) {
			errs = append(errs, field.Invalid(fldPath, port.StrVal, msg))
		}
	default:
		errs = append(errs, field.InternalError(fldPath, fmt.Errorf("unknown type: %v", port.Type)))
	}
	return errs
}

func tolerations(ts []corev1.Toleration, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, t := range ts {
		idx := fldPath.Index(i)
		if t.Key != "" {
			errs = append(errs, metav1validation.ValidateLabelName(t.Key, idx.Child("key"))...)
		}
		if t.Key == "" && t.Operator != corev1.TolerationOpExists {
			errs = append(errs, field.Invalid(idx.Child("operator"), t.Operator,
				"operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			errs = append(errs, field.Invalid(idx.Child("effect"), t.Effect,
				"effect must be 'NoExecute' when `tolerationSeconds` is set"))
		}
		switch t.Operator {
		case corev1.TolerationOpEqual, "":
			for _, msg := range utilvalidation.IsValidLabelValue(t.Value) {
				errs = append(errs, field.Invalid(idx.Child("operator"), t.Value, msg))
			}
		case corev1.TolerationOpExists:
			if t.Value != "" {
				errs = append(errs, field.Invalid(idx.Child("operator"), t, "value must be empty when `operator` is 'Exists'"))
			}
		default:
			errs = append(errs, field.NotSupported(idx.Child("operator"), t.Operator,
				[]corev1.TolerationOperator{corev1.TolerationOpEqual, corev1.TolerationOpExists}))
		}
		if t.Effect != "" && !slices.Contains(supportedTaintEffects, t.Effect) {
			errs = append(errs, field.NotSupported(idx.Child("effect"), t.Effect, supportedTaintEffects))
		}
	}
	return errs
}
