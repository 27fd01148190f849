package podworker

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// This file ports the kubelet's side of a container's securityContext:
// pkg/securitycontext's DetermineEffectiveSecurityContext (the pod's
// defaults under the container's own settings) and AddNoNewPrivileges, and
// pkg/kubelet/kuberuntime's determineEffectiveSecurityContext (what the CRI
// is given), getSeccompProfile and verifyRunAsNonRoot.

// securityContext returns what the runtime is given for a container of pod,
// whose image runs as img.UID/img.Username: the kubelet's generateContainerConfig
// checks runAsNonRoot against the image's user, then synthesizes the
// runtime's security context. An error is the container's
// CreateContainerConfigError.
func (w *worker) securityContext(pod *corev1.Pod, spec *corev1.Container, img runtimeapi.Image) (runtimeapi.SecurityContext, error) {
	uid, username := img.UID, img.Username
	if uid == nil && username == "" {
		uid = new(int64) // the kubelet's getImageUser: an image that names no user runs as root
	}
	if err := verifyRunAsNonRoot(pod, spec, uid, username); err != nil {
		return runtimeapi.SecurityContext{}, err
	}
	effective := effectiveSecurityContext(pod, spec)
	sc := runtimeapi.SecurityContext{
		RunAsUser:  effective.RunAsUser,
		RunAsGroup: effective.RunAsGroup,
		NoNewPrivs: addNoNewPrivileges(effective),
	}
	if effective.Privileged != nil {
		sc.Privileged = *effective.Privileged
	}
	if effective.ReadOnlyRootFilesystem != nil {
		sc.ReadonlyRootfs = *effective.ReadOnlyRootFilesystem
	}
	if c := effective.Capabilities; c != nil {
		sc.Capabilities = &runtimeapi.Capabilities{Add: make([]string, len(c.Add)), Drop: make([]string, len(c.Drop))}
		for i, v := range c.Add {
			sc.Capabilities.Add[i] = string(v)
		}
		for i, v := range c.Drop {
			sc.Capabilities.Drop[i] = string(v)
		}
	}
	var err error
	if sc.Seccomp, err = w.seccompProfile(pod.Spec.SecurityContext, spec.SecurityContext); err != nil {
		return runtimeapi.SecurityContext{}, err
	}
	if sc.RunAsUser == nil {
		sc.RunAsUser = uid
		sc.RunAsUsername = username
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
		sc.SupplementalGroups = append(sc.SupplementalGroups, psc.SupplementalGroups...)
		if p := psc.SupplementalGroupsPolicy; p != nil {
			switch *p {
			case corev1.SupplementalGroupsPolicyMerge:
				sc.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsMerge
			case corev1.SupplementalGroupsPolicyStrict:
				sc.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsStrict
			default:
				return runtimeapi.SecurityContext{}, fmt.Errorf("unsupported supplementalGroupsPolicy: %s", *p)
			}
		}
	}
	return sc, nil
}

// effectiveSecurityContext is Kubernetes' DetermineEffectiveSecurityContext:
// the pod's runAsUser, runAsGroup, runAsNonRoot (and SELinux and Windows
// options), each overridden by the container's when it sets it, and the
// container's own settings. It never returns nil.
func effectiveSecurityContext(pod *corev1.Pod, c *corev1.Container) *corev1.SecurityContext {
	var eff *corev1.SecurityContext
	if psc := pod.Spec.SecurityContext; psc != nil {
		eff = &corev1.SecurityContext{
			SELinuxOptions: psc.SELinuxOptions.DeepCopy(),
			WindowsOptions: psc.WindowsOptions.DeepCopy(),
			RunAsUser:      copyPtr(psc.RunAsUser),
			RunAsGroup:     copyPtr(psc.RunAsGroup),
			RunAsNonRoot:   copyPtr(psc.RunAsNonRoot),
		}
	}
	csc := c.SecurityContext
	switch {
	case eff == nil && csc == nil:
		return &corev1.SecurityContext{}
	case csc == nil:
		return eff
	case eff == nil:
		return csc
	}
	if csc.SELinuxOptions != nil {
		eff.SELinuxOptions = csc.SELinuxOptions.DeepCopy()
	}
	if csc.Capabilities != nil {
		eff.Capabilities = csc.Capabilities.DeepCopy()
	}
	if csc.Privileged != nil {
		eff.Privileged = copyPtr(csc.Privileged)
	}
	if csc.RunAsUser != nil {
		eff.RunAsUser = copyPtr(csc.RunAsUser)
	}
	if csc.RunAsGroup != nil {
		eff.RunAsGroup = copyPtr(csc.RunAsGroup)
	}
	if csc.RunAsNonRoot != nil {
		eff.RunAsNonRoot = copyPtr(csc.RunAsNonRoot)
	}
	if csc.ReadOnlyRootFilesystem != nil {
		eff.ReadOnlyRootFilesystem = copyPtr(csc.ReadOnlyRootFilesystem)
	}
	if csc.AllowPrivilegeEscalation != nil {
		eff.AllowPrivilegeEscalation = copyPtr(csc.AllowPrivilegeEscalation)
	}
	if csc.ProcMount != nil {
		eff.ProcMount = copyPtr(csc.ProcMount)
	}
	return eff
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// addNoNewPrivileges is Kubernetes' AddNoNewPrivileges: no_new_privs only
// when allowPrivilegeEscalation is set to false.
func addNoNewPrivileges(sc *corev1.SecurityContext) bool {
	return sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
}

// podDesc is the kubelet's format.Pod: name_namespace(uid).
func podDesc(pod *corev1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}

// verifyRunAsNonRoot is the kubelet's: with runAsNonRoot, a runAsUser of 0
// is refused, and so is an image that runs as root, or as a user named
// without a number (which cannot be checked).
func verifyRunAsNonRoot(pod *corev1.Pod, c *corev1.Container, uid *int64, username string) error {
	eff := effectiveSecurityContext(pod, c)
	if eff.RunAsNonRoot == nil || !*eff.RunAsNonRoot {
		return nil
	}
	if eff.RunAsUser != nil {
		if *eff.RunAsUser == 0 {
			return fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podDesc(pod), c.Name)
		}
		return nil
	}
	switch {
	case uid == nil && len(username) > 0:
		return fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)", username, podDesc(pod), c.Name)
	case uid != nil:
		if *uid == 0 {
			return fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podDesc(pod), c.Name)
		}
		if errs := validation.IsValidUserID(*uid); len(errs) > 0 {
			return fmt.Errorf("container has runAsNonRoot and image has an invalid user id (%d). (Must be 1-(%d)): %s (pod: %q, container: %s)",
				*uid, math.MaxInt32, strings.Join(errs, "; "), podDesc(pod), c.Name)
		}
	}
	return nil
}

// seccompProfile is the kubelet's getSeccompProfile: the container's
// seccompProfile, else the pod's, else RuntimeDefault when SeccompDefault is
// on (the kubelet's --seccomp-default, off by default) and Unconfined
// otherwise. A Localhost profile is a file under SeccompProfileRoot.
func (w *worker) seccompProfile(psc *corev1.PodSecurityContext, csc *corev1.SecurityContext) (runtimeapi.SecurityProfile, error) {
	var p *corev1.SeccompProfile
	switch {
	case csc != nil && csc.SeccompProfile != nil:
		p = csc.SeccompProfile
	case psc != nil && psc.SeccompProfile != nil:
		p = psc.SeccompProfile
	}
	switch {
	case p == nil && w.m.cfg.SeccompDefault, p != nil && p.Type == corev1.SeccompProfileTypeRuntimeDefault:
		return runtimeapi.SecurityProfile{Type: runtimeapi.ProfileRuntimeDefault}, nil
	case p != nil && p.Type == corev1.SeccompProfileTypeLocalhost:
		if p.LocalhostProfile == nil || *p.LocalhostProfile == "" {
			return runtimeapi.SecurityProfile{}, fmt.Errorf("localhostProfile must be set if seccompProfile type is Localhost.")
		}
		return runtimeapi.SecurityProfile{Type: runtimeapi.ProfileLocalhost, LocalhostRef: filepath.Join(w.m.cfg.SeccompProfileRoot, *p.LocalhostProfile)}, nil
	}
	return runtimeapi.SecurityProfile{Type: runtimeapi.ProfileUnconfined}, nil
}
