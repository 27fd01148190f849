package placement

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
)

// Code says whether a node that does not fit a pod could fit it if other pods left it.
type Code int

const (
	// Unschedulable: the node lacks room (resources, host ports) that removing pods could free.
	Unschedulable Code = iota + 1
	// UnschedulableAndUnresolvable: nothing short of changing the node or the pod helps.
	UnschedulableAndUnresolvable
)

// Status is why one node does not fit a pod: one or more reasons, worded as Kubernetes' scheduler
// words them, since users search for these words.
type Status struct {
	Code    Code
	Reasons []string
}

// The reasons of the filters, as kube-scheduler's plugins word them.
const (
	ReasonUnschedulable   = "node(s) were unschedulable"                                 // NodeUnschedulable
	ReasonNodeName        = "node(s) didn't match the requested node name"               // NodeName
	ReasonNodeAffinity    = "node(s) didn't match Pod's node affinity/selector"          // NodeAffinity
	ReasonHostPorts       = "node(s) didn't have free ports for the requested pod ports" // NodePorts
	ReasonTooManyPods     = "Too many pods"                                              // NodeResourcesFit
	ReasonUnknownNode     = "node(s) had unknown conditions"
	reasonUntoleratedFmt  = "node(s) had untolerated taint {%s: %s}" // TaintToleration
	reasonInsufficientFmt = "Insufficient %s"                        // NodeResourcesFit
)

// UntoleratedTaint is the reason of a node with a taint the pod does not tolerate.
func UntoleratedTaint(t corev1.Taint) string {
	return fmt.Sprintf(reasonUntoleratedFmt, t.Key, t.Value)
}

// Insufficient is the reason of a node without enough of a resource left.
func Insufficient(name corev1.ResourceName) string { return fmt.Sprintf(reasonInsufficientFmt, name) }

var unschedulableTaint = corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}

// toleratesLog is the logger the toleration helpers want; they log nothing we need.
var toleratesLog = klog.Background()

// filterNode returns why pod p does not fit on node nd, or nil if it does, by what the node
// alone says (the cycle adds the filters that look at other nodes' pods). It checks what
// kube-scheduler's default filters check, in their order, and stops at the first that fails:
// cordon (spec.unschedulable, unless the pod tolerates node.kubernetes.io/unschedulable),
// spec.nodeName, NoSchedule and NoExecute taints (a node that is not Ready counts as tainted
// not-ready or unreachable), nodeSelector and required node affinity, host ports, and resource
// requests (cpu, memory, ephemeral-storage, extended resources, pod count) against what is left
// of the node's allocatable; then the pod's volumes (Pod.SetVolumes).
func filterNode(nd *Node, p *Pod) *Status {
	if nd.Node == nil {
		return &Status{UnschedulableAndUnresolvable, []string{ReasonUnknownNode}}
	}
	tolerations := p.Pod.Spec.Tolerations
	if nd.Node.Spec.Unschedulable && !corev1helpers.TolerationsTolerateTaint(toleratesLog, tolerations, &unschedulableTaint, false) {
		return &Status{UnschedulableAndUnresolvable, []string{ReasonUnschedulable}}
	}
	if p.Pod.Spec.NodeName != "" && p.Pod.Spec.NodeName != nd.Name {
		return &Status{UnschedulableAndUnresolvable, []string{ReasonNodeName}}
	}
	for i := range nd.noSchedule {
		if !corev1helpers.TolerationsTolerateTaint(toleratesLog, tolerations, &nd.noSchedule[i], false) {
			return &Status{UnschedulableAndUnresolvable, []string{UntoleratedTaint(nd.noSchedule[i])}}
		}
	}
	if ok, err := p.required.Match(nd.Node); err != nil || !ok {
		return &Status{UnschedulableAndUnresolvable, []string{ReasonNodeAffinity}}
	}
	if nd.portsConflict(p) {
		return &Status{Unschedulable, []string{ReasonHostPorts}}
	}
	if reasons := insufficient(nd, p); len(reasons) > 0 {
		return &Status{Unschedulable, reasons}
	}
	if p.volumes != nil {
		return p.volumes(nd.Node)
	}
	return nil
}

// insufficient lists the resources the node has not enough of left for p, as
// NodeResourcesFit does: the pod count first, then cpu, memory, ephemeral-storage and the
// others; a resource the pod does not request is never insufficient.
func insufficient(nd *Node, p *Pod) []string {
	var reasons []string
	if int64(len(nd.pods))+1 > nd.AllowedPods {
		reasons = append(reasons, ReasonTooManyPods)
	}
	req, alloc, used := p.Requests, nd.Allocatable, nd.Requested
	if req.IsZero() {
		return reasons
	}
	if req.MilliCPU > 0 && req.MilliCPU > alloc.MilliCPU-used.MilliCPU {
		reasons = append(reasons, Insufficient(corev1.ResourceCPU))
	}
	if req.Memory > 0 && req.Memory > alloc.Memory-used.Memory {
		reasons = append(reasons, Insufficient(corev1.ResourceMemory))
	}
	if req.EphemeralStorage > 0 && req.EphemeralStorage > alloc.EphemeralStorage-used.EphemeralStorage {
		reasons = append(reasons, Insufficient(corev1.ResourceEphemeralStorage))
	}
	if len(req.Scalar) > 0 {
		names := make([]corev1.ResourceName, 0, len(req.Scalar))
		for name := range req.Scalar {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if q := req.Scalar[name]; q > 0 && q > alloc.Scalar[name]-used.Scalar[name] {
				reasons = append(reasons, Insufficient(name))
			}
		}
	}
	return reasons
}
