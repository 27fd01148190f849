package builtin

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// pod is core/v1 Pod. A new pod is Pending with its QoS class; a pod bound to a node is deleted
// gracefully (its node agent removes it once its containers stopped). Binding and eviction are
// the registry's (registry.Bind, registry.Evict).
func pod() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "Pod"), Resource: "pods", Singular: "pod", ShortNames: []string{"po"}, Categories: all,
		Namespaced: true, Subresources: []string{"status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy"},
		Strategy: kinds.Typed[*corev1.Pod]{
			PrepareForCreate: func(p *corev1.Pod) {
				p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: podQOS(p)}
			},
			PrepareForUpdate: func(p, old *corev1.Pod, sub string) {
				if sub == "status" && p.Status.QOSClass == "" {
					// The QoS class is set at creation; old kubelets dropped it from their reports.
					p.Status.QOSClass = old.Status.QOSClass
				}
			},
			StatusResetsMetadata: []string{"ownerReferences"},
			Default:              defaults.Pod,
			Validate:             validation.Pod,
			ValidateUpdate:       validation.PodUpdate,
			ValidateStatusUpdate: validation.PodStatusUpdate,
			Table:                printers.PodTable,
			Fields:               podFields,
			ReturnDeletedObject:  true,
			GracePeriod: func(p *corev1.Pod) int64 {
				if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
					return 0 // nothing runs it: it goes at once
				}
				if g := p.Spec.TerminationGracePeriodSeconds; g != nil {
					return *g
				}
				return corev1.DefaultTerminationGracePeriodSeconds
			},
		}.Strategy(),
	}
}

func podFields(p *corev1.Pod, s fields.Set) {
	s["spec.nodeName"] = p.Spec.NodeName
	s["spec.restartPolicy"] = string(p.Spec.RestartPolicy)
	s["spec.schedulerName"] = p.Spec.SchedulerName
	s["spec.serviceAccountName"] = p.Spec.ServiceAccountName
	s["spec.hostNetwork"] = strconv.FormatBool(p.Spec.HostNetwork)
	s["status.phase"] = string(p.Status.Phase)
	s["status.podIP"] = p.Status.PodIP
	s["status.nominatedNodeName"] = p.Status.NominatedNodeName
}

// podQOS computes a pod's quality-of-service class the way the kubelet does, for containers
// and init containers: BestEffort with no requests or limits, Guaranteed when every container
// limits cpu and memory with requests equal to limits, Burstable otherwise.
func podQOS(p *corev1.Pod) corev1.PodQOSClass {
	any, guaranteed := false, true
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
			any = true
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			lim, ok := c.Resources.Limits[res]
			if !ok {
				guaranteed = false
				continue
			}
			if req, ok := c.Resources.Requests[res]; ok && req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
