package placement

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// Pod is what placement needs to know of a pod, worked out once: its requests, host ports,
// node affinity, inter-pod affinity, topology spread constraints and spreading group. It is
// immutable once made.
type Pod struct {
	Pod *corev1.Pod
	// Key is namespace/name.
	Key string
	// Requests is what the pod takes from a node's allocatable.
	Requests Resources
	// Group names the pods that the default topology spreading spreads together: the pods of
	// one controller (owner reference with controller=true), or else of one namespace with the
	// same labels. Empty: the pod spreads with nothing.
	Group    string
	Priority int32

	nonZeroCPU, nonZeroMem int64
	ports                  []hostPort
	required               nodeaffinity.RequiredNodeAffinity
	preferred              *nodeaffinity.PreferredSchedulingTerms
	preferTolerations      []corev1.Toleration
	affinity               *podAffinity // nil: no inter-pod (anti-)affinity
	spread                 *podSpread   // nil: no topologySpreadConstraints
	// invalid says why the pod's inter-pod affinity or spread constraints cannot be read (an
	// invalid label selector, which validation keeps out): it then fits nowhere.
	invalid error
	// volumes is the VolumeBinding filter the caller worked out from the pod's claims (nil:
	// none): why the pod's volumes cannot be on a node, or nil.
	volumes func(n *corev1.Node) *Status
}

// SetVolumes gives the pod the VolumeBinding plug-in's answers, which the caller works out from
// the claims, volumes and classes that placement does not see: prefilter, if not nil, is why the
// pod fits nowhere (a claim missing or not bound while its class binds at once); filter says
// whether the pod's volumes can be on a node.
func (p *Pod) SetVolumes(prefilter error, filter func(n *corev1.Node) *Status) {
	if prefilter != nil && p.invalid == nil {
		p.invalid = prefilter
	}
	p.volumes = filter
}

// NewPod works out what placement needs of p, which it keeps and must not change afterwards.
func NewPod(p *corev1.Pod) *Pod {
	pi := &Pod{
		Pod:      p,
		Key:      p.Namespace + "/" + p.Name,
		Group:    groupOf(p),
		Priority: corev1helpers.PodPriority(p),
		ports:    podHostPorts(p),
		required: nodeaffinity.GetRequiredNodeAffinity(p),
	}
	pi.Requests, pi.nonZeroCPU, pi.nonZeroMem = podRequests(p)
	if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil && len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
		// An invalid term makes the preference count for nothing; validation keeps them out.
		if terms, err := nodeaffinity.NewPreferredSchedulingTerms(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution); err == nil {
			pi.preferred = terms
		}
	}
	for _, t := range p.Spec.Tolerations {
		if t.Effect == "" || t.Effect == corev1.TaintEffectPreferNoSchedule {
			pi.preferTolerations = append(pi.preferTolerations, t)
		}
	}
	var err error
	if pi.affinity, err = newPodAffinity(p); err != nil {
		pi.invalid = fmt.Errorf("parsing pod: %w", err)
	}
	if pi.spread, err = newPodSpread(p); err != nil && pi.invalid == nil {
		pi.invalid = fmt.Errorf("parsing pod: %w", err)
	}
	return pi
}

// HasPodConstraints reports whether where the pod may go depends on the pods placed elsewhere
// (required inter-pod affinity, topology spread constraints): placing or relabelling a pod
// may then let it in.
func (p *Pod) HasPodConstraints() bool {
	return (p.affinity != nil && len(p.affinity.required) > 0) || (p.spread != nil && len(p.spread.hard) > 0)
}

func groupOf(p *corev1.Pod) string {
	if c := metav1.GetControllerOfNoCopy(p); c != nil && c.UID != "" {
		return "owner:" + string(c.UID)
	}
	if len(p.Labels) == 0 {
		return ""
	}
	return "labels:" + p.Namespace + "/" + labels.Set(p.Labels).String()
}

// hostPort is one port a pod takes on its node's addresses.
type hostPort struct {
	IP       string // 0.0.0.0: every address
	Protocol corev1.Protocol
	Port     int32
}

// protoPort is a hostPort without its address.
type protoPort struct {
	Protocol corev1.Protocol
	Port     int32
}

const anyIP = "0.0.0.0"

// podHostPorts returns the host ports of a pod's containers and sidecars (restartable init
// containers), with the defaults the API gives: every address, TCP.
func podHostPorts(p *corev1.Pod) []hostPort {
	var out []hostPort
	add := func(c *corev1.Container) {
		for _, cp := range c.Ports {
			if cp.HostPort <= 0 {
				continue
			}
			hp := hostPort{IP: cp.HostIP, Protocol: cp.Protocol, Port: cp.HostPort}
			if hp.IP == "" {
				hp.IP = anyIP
			}
			if hp.Protocol == "" {
				hp.Protocol = corev1.ProtocolTCP
			}
			out = append(out, hp)
		}
	}
	for i := range p.Spec.InitContainers {
		if c := &p.Spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	for i := range p.Spec.Containers {
		add(&p.Spec.Containers[i])
	}
	return out
}

// Terminated reports whether a pod has finished for good: it holds no resources on its node.
func Terminated(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
