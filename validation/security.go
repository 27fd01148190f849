package validation

import (
	"fmt"
	"regexp"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-helpers/node/util/sysctl"
)

var (
	supportedSeccompTypes = []corev1.SeccompProfileType{corev1.SeccompProfileTypeLocalhost,
		corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeUnconfined}
	supportedAppArmorTypes = []corev1.AppArmorProfileType{corev1.AppArmorProfileTypeLocalhost,
		corev1.AppArmorProfileTypeRuntimeDefault, corev1.AppArmorProfileTypeUnconfined}
	supportedFSGroupPolicies = []corev1.PodFSGroupChangePolicy{corev1.FSGroupChangeOnRootMismatch, corev1.FSGroupChangeAlways}
	supportedProcMounts      = []corev1.ProcMountType{corev1.DefaultProcMount, corev1.UnmaskedProcMount}
)

// podSecurityContext checks ids, the fsGroup change policy and the seccomp and AppArmor profiles.
func podSecurityContext(sc *corev1.PodSecurityContext, fldPath *field.Path) field.ErrorList {
	if sc == nil {
		return nil
	}
	var errs field.ErrorList
	if sc.RunAsUser != nil {
		errs = append(errs, idRange(*sc.RunAsUser, fldPath.Child("runAsUser"))...)
	}
	if sc.RunAsGroup != nil {
		errs = append(errs, idRange(*sc.RunAsGroup, fldPath.Child("runAsGroup"))...)
	}
	if sc.FSGroup != nil {
		errs = append(errs, idRange(*sc.FSGroup, fldPath.Child("fsGroup"))...)
	}
	for i, g := range sc.SupplementalGroups {
		errs = append(errs, idRange(g, fldPath.Child("supplementalGroups").Index(i))...)
	}
	if p := sc.FSGroupChangePolicy; p != nil && !contains(supportedFSGroupPolicies, *p) {
		errs = append(errs, field.NotSupported(fldPath.Child("fsGroupChangePolicy"), *p, supportedFSGroupPolicies))
	}
	errs = append(errs, seccompProfile(sc.SeccompProfile, fldPath.Child("seccompProfile"))...)
	errs = append(errs, appArmorProfile(sc.AppArmorProfile, fldPath.Child("appArmorProfile"))...)
	return errs
}

// containerSecurityContext checks ids, privilege escalation, /proc mounts and profiles.
func containerSecurityContext(sc *corev1.SecurityContext, fldPath *field.Path) field.ErrorList {
	if sc == nil {
		return nil
	}
	var errs field.ErrorList
	if sc.RunAsUser != nil {
		errs = append(errs, idRange(*sc.RunAsUser, fldPath.Child("runAsUser"))...)
	}
	if sc.RunAsGroup != nil {
		errs = append(errs, idRange(*sc.RunAsGroup, fldPath.Child("runAsGroup"))...)
	}
	if sc.ProcMount != nil && !contains(supportedProcMounts, *sc.ProcMount) {
		errs = append(errs, field.NotSupported(fldPath.Child("procMount"), *sc.ProcMount, supportedProcMounts))
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		if sc.Privileged != nil && *sc.Privileged {
			errs = append(errs, field.Invalid(fldPath, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
		}
		if sc.Capabilities != nil {
			for _, c := range sc.Capabilities.Add {
				if c == "CAP_SYS_ADMIN" || c == "SYS_ADMIN" {
					errs = append(errs, field.Invalid(fldPath, sc, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"))
					break
				}
			}
		}
	}
	errs = append(errs, seccompProfile(sc.SeccompProfile, fldPath.Child("seccompProfile"))...)
	errs = append(errs, appArmorProfile(sc.AppArmorProfile, fldPath.Child("appArmorProfile"))...)
	return errs
}

func seccompProfile(p *corev1.SeccompProfile, fldPath *field.Path) field.ErrorList {
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	switch {
	case p.Type == "":
		errs = append(errs, field.Required(fldPath.Child("type"), "type is required when seccompProfile is set"))
	case !contains(supportedSeccompTypes, p.Type):
		errs = append(errs, field.NotSupported(fldPath.Child("type"), p.Type, supportedSeccompTypes))
	}
	if p.Type == corev1.SeccompProfileTypeLocalhost {
		if p.LocalhostProfile == nil {
			errs = append(errs, field.Required(fldPath.Child("localhostProfile"), "must be set when seccomp type is Localhost"))
		} else {
			errs = append(errs, localDescendingPath(*p.LocalhostProfile, fldPath.Child("localhostProfile"))...)
		}
	} else if p.LocalhostProfile != nil {
		errs = append(errs, field.Invalid(fldPath.Child("localhostProfile"), p, "can only be set when seccomp type is Localhost"))
	}
	return errs
}

func appArmorProfile(p *corev1.AppArmorProfile, fldPath *field.Path) field.ErrorList {
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	switch {
	case p.Type == "":
		errs = append(errs, field.Required(fldPath.Child("type"), "type is required when appArmorProfile is set"))
	case !contains(supportedAppArmorTypes, p.Type):
		errs = append(errs, field.NotSupported(fldPath.Child("type"), p.Type, supportedAppArmorTypes))
	}
	if p.Type == corev1.AppArmorProfileTypeLocalhost {
		if p.LocalhostProfile == nil || *p.LocalhostProfile == "" {
			errs = append(errs, field.Required(fldPath.Child("localhostProfile"), "must be set when AppArmor type is Localhost"))
		}
	} else if p.LocalhostProfile != nil {
		errs = append(errs, field.Invalid(fldPath.Child("localhostProfile"), p, "can only be set when AppArmor type is Localhost"))
	}
	return errs
}

// Sysctl names, as Kubernetes' validation has them: segments of lower-case letters, digits, '-'
// and '_', separated by '.' or '/', at most 253 characters.
const (
	sysctlSegmentFmt      = "[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
	sysctlContainSlashFmt = "(" + sysctlSegmentFmt + "[\\./])*" + sysctlSegmentFmt
	sysctlMaxLength       = 253
)

var sysctlContainSlashRegexp = regexp.MustCompile("^" + sysctlContainSlashFmt + "$")

// validSysctlName is IsValidSysctlName.
func validSysctlName(name string) bool {
	return len(name) <= sysctlMaxLength && sysctlContainSlashRegexp.MatchString(name)
}

// sysctls is validateSysctls: names valid and unique, and no sysctl of the network (IPC)
// namespace when the pod shares the host's, unless allowHost.
func sysctls(ss []corev1.Sysctl, hostNetwork, hostIPC bool, fldPath *field.Path, allowHost bool) field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	for i, s := range ss {
		namePath := fldPath.Index(i).Child("name")
		switch {
		case s.Name == "":
			errs = append(errs, field.Required(namePath, ""))
		case !validSysctlName(s.Name):
			errs = append(errs, field.Invalid(namePath, s.Name,
				fmt.Sprintf("must have at most %d characters and match regex %s", sysctlMaxLength, sysctlContainSlashRegexp)))
		case names[s.Name]:
			errs = append(errs, field.Duplicate(namePath, s.Name))
		}
		if !allowHost {
			if err := hostSysctl(s.Name, hostNetwork, hostIPC, namePath); err != nil {
				errs = append(errs, err)
			}
		}
		names[s.Name] = true
	}
	return errs
}

// hostSysctl is ValidateHostSysctl: a namespaced sysctl may not be set in a namespace shared
// with the host.
func hostSysctl(name string, hostNetwork, hostIPC bool, fldPath *field.Path) *field.Error {
	ns, _, _ := sysctl.GetNamespace(name)
	switch {
	case hostNetwork && ns == sysctl.NetNamespace:
		return field.Invalid(fldPath, name, "may not be specified when 'hostNetwork' is true")
	case hostIPC && ns == sysctl.IPCNamespace:
		return field.Invalid(fldPath, name, "may not be specified when 'hostIPC' is true")
	}
	return nil
}

// hasHostSysctls reports whether a pod spec already breaks hostSysctl, which its updates may then
// keep doing.
func hasHostSysctls(s *corev1.PodSpec) bool {
	if s.SecurityContext == nil {
		return false
	}
	for _, sc := range s.SecurityContext.Sysctls {
		if hostSysctl(sc.Name, s.HostNetwork, s.HostIPC, nil) != nil {
			return true
		}
	}
	return false
}
