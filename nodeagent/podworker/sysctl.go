package podworker

import (
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/version"
	utilsysctl "k8s.io/component-helpers/node/util/sysctl"
)

// ReasonSysctlForbidden is the reason of a pod the node rejects for its
// sysctls (the kubelet's sysctl.ForbiddenReason).
const ReasonSysctlForbidden = "SysctlForbidden"

// safeSysctls is the kubelet's safe sysctl list (pkg/kubelet/sysctl,
// v1.34), each with the kernel that namespaced it: namespaced in the pod and
// with no effect on other pods, so any pod may set them.
var safeSysctls = []struct{ name, kernel string }{
	{"kernel.shm_rmid_forced", ""},
	{"net.ipv4.ip_local_port_range", ""},
	{"net.ipv4.tcp_syncookies", ""},
	{"net.ipv4.ping_group_range", ""},
	{"net.ipv4.ip_unprivileged_port_start", ""},
	{"net.ipv4.ip_local_reserved_ports", "3.16"},
	{"net.ipv4.tcp_keepalive_time", "4.5"},
	{"net.ipv4.tcp_fin_timeout", "4.6"},
	{"net.ipv4.tcp_keepalive_intvl", "4.5"},
	{"net.ipv4.tcp_keepalive_probes", "4.5"},
	{"net.ipv4.tcp_rmem", "4.15"},
	{"net.ipv4.tcp_wmem", "4.15"},
}

// sysctlPattern is the policy validation's IsValidSysctlPattern (names
// with dots or slashes, a last segment that may be '*').
var sysctlPattern = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]$`)

// sysctlAllowlist is the kubelet's patternAllowlist, the pod admit handler
// of sysctls: the safe sysctls the kernel namespaces, and the unsafe ones
// allowed by flag.
type sysctlAllowlist struct {
	sysctls  map[string]utilsysctl.Namespace
	prefixes map[string]utilsysctl.Namespace
}

// newSysctlAllowlist is the kubelet's NewAllowlist of the safe sysctls
// (those this kernel namespaces) and the allowed unsafe ones.
func newSysctlAllowlist(unsafe []string) (*sysctlAllowlist, error) {
	var patterns []string
	kernel := kernelVersion()
	for _, s := range safeSysctls {
		if s.kernel == "" || (kernel != nil && kernel.AtLeast(version.MustParseGeneric(s.kernel))) {
			patterns = append(patterns, s.name)
		}
	}
	w := &sysctlAllowlist{sysctls: map[string]utilsysctl.Namespace{}, prefixes: map[string]utilsysctl.Namespace{}}
	for _, s := range append(patterns, unsafe...) {
		if len(s) > 253 || !sysctlPattern.MatchString(s) {
			return nil, fmt.Errorf("sysctl %q must have at most 253 characters and match regex %s", s, sysctlPattern)
		}
		ns, sysctlOrPrefix, prefixed := utilsysctl.GetNamespace(s)
		if ns == utilsysctl.UnknownNamespace {
			return nil, fmt.Errorf("the sysctls %q are not known to be namespaced", sysctlOrPrefix)
		}
		if prefixed {
			w.prefixes[sysctlOrPrefix] = ns
		} else {
			w.sysctls[sysctlOrPrefix] = ns
		}
	}
	return w, nil
}

// kernelVersion is this machine's kernel release; nil when unreadable (then
// only the sysctls safe on every kernel are, as with the kubelet).
func kernelVersion() *version.Version {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil
	}
	v, err := version.ParseGeneric(unix.ByteSliceToString(u.Release[:]))
	if err != nil {
		return nil
	}
	return v
}

// validate is the kubelet's validateSysctl.
func (w *sysctlAllowlist) validate(sysctl string, hostNet, hostIPC bool) error {
	sysctl = utilsysctl.NormalizeName(sysctl)
	check := func(ns utilsysctl.Namespace) error {
		if (ns == utilsysctl.IPCNamespace && hostIPC) || (ns == utilsysctl.NetNamespace && hostNet) {
			return fmt.Errorf("%q not allowed with host %s enabled", sysctl, ns)
		}
		return nil
	}
	if ns, ok := w.sysctls[sysctl]; ok {
		return check(ns)
	}
	for p, ns := range w.prefixes {
		if strings.HasPrefix(sysctl, p) {
			return check(ns)
		}
	}
	return fmt.Errorf("%q not allowlisted", sysctl)
}

// admit is the kubelet's patternAllowlist.Admit: the message of a pod whose
// sysctls are not all allowed, or "".
func (w *sysctlAllowlist) admit(pod *corev1.Pod) string {
	if pod.Spec.SecurityContext == nil {
		return ""
	}
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		if err := w.validate(s.Name, pod.Spec.HostNetwork, pod.Spec.HostIPC); err != nil {
			return fmt.Sprintf("forbidden sysctl: %v", err)
		}
	}
	return ""
}

// podSysctls are the pod's sysctls by their dotted names, as the kubelet
// hands them to the runtime (ConvertPodSysctlsVariableToDotsSeparator).
func podSysctls(pod *corev1.Pod) map[string]string {
	if pod.Spec.SecurityContext == nil || len(pod.Spec.SecurityContext.Sysctls) == 0 {
		return nil
	}
	out := make(map[string]string, len(pod.Spec.SecurityContext.Sysctls))
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		out[utilsysctl.NormalizeName(s.Name)] = s.Value
	}
	return out
}

// admit runs the node's pod admission checks once, as the kubelet's
// HandlePodAdditions does for a pod it has not started: a pod whose sysctls
// are not allowed is rejected (the kubelet's rejectPod: a Warning event with
// the reason and message, phase Failed with "Pod was rejected: " and the
// message) and nothing of it is started. A pod that already runs on the
// node (adopted) or has finished is not checked again.
func (w *worker) admit(pod *corev1.Pod) {
	w.admitted = true
	if w.sandbox != nil || w.evictReason != "" || isTerminal(pod.Status.Phase) {
		return
	}
	if msg := w.m.sysctls.admit(pod); msg != "" {
		w.event(pod, "", EventWarning, ReasonSysctlForbidden, msg)
		w.evictReason, w.evictMessage = ReasonSysctlForbidden, "Pod was rejected: "+msg
	}
}
