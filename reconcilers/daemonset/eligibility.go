package daemonset

// Ported from k8s.io/kubernetes pkg/controller/daemon (daemon_controller.go: NodeShouldRunDaemonPod,
// predicates, NewPod, podByCreationTimestampAndPhase) and pkg/controller/daemon/util
// (daemonset_util.go), v1.34.4; Copyright The Kubernetes Authors, Apache License 2.0.

import (
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	extensionsv1beta1 "k8s.io/api/extensions/v1beta1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	intstrutil "k8s.io/apimachinery/pkg/util/intstr"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// toleratesLog is the logger the toleration helpers want; they log nothing we need.
var toleratesLog = klog.Background()

// NodeShouldRunDaemonPod says whether a daemon set's pod should run on node: shouldRun when a
// pod should be created there, shouldContinueRunning when a pod already there may stay (it
// tolerates the node's NoExecute taints, though not its NoSchedule ones).
func NodeShouldRunDaemonPod(node *corev1.Node, ds *appsv1.DaemonSet) (shouldRun, shouldContinueRunning bool) {
	pod := newPod(ds, node.Name)
	if !(ds.Spec.Template.Spec.NodeName == "" || ds.Spec.Template.Spec.NodeName == node.Name) {
		return false, false
	}
	taints := node.Spec.Taints
	fitsNodeName, fitsNodeAffinity, fitsTaints := predicates(pod, node, taints)
	if !fitsNodeName || !fitsNodeAffinity {
		return false, false
	}
	if !fitsTaints {
		// Scheduled daemon pods keep running if they tolerate the NoExecute taints.
		_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(toleratesLog, taints, pod.Spec.Tolerations, func(t *corev1.Taint) bool {
			return t.Effect == corev1.TaintEffectNoExecute
		}, false)
		return false, !untolerated
	}
	return true, true
}

// predicates checks whether a daemon set's pod can run on a node.
func predicates(pod *corev1.Pod, node *corev1.Node, taints []corev1.Taint) (fitsNodeName, fitsNodeAffinity, fitsTaints bool) {
	fitsNodeName = len(pod.Spec.NodeName) == 0 || pod.Spec.NodeName == node.Name
	// Parsing errors are ignored, for backwards compatibility (as Kubernetes).
	fitsNodeAffinity, _ = nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(toleratesLog, taints, pod.Spec.Tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoExecute || t.Effect == corev1.TaintEffectNoSchedule
	}, false)
	fitsTaints = !untolerated
	return
}

// newPod is the pod the daemon set would run on node, to check it against the node.
func newPod(ds *appsv1.DaemonSet, nodeName string) *corev1.Pod {
	p := &corev1.Pod{Spec: *ds.Spec.Template.Spec.DeepCopy(), ObjectMeta: ds.Spec.Template.ObjectMeta}
	p.Namespace = ds.Namespace
	p.Spec.NodeName = nodeName
	addDaemonPodTolerations(&p.Spec)
	return p
}

// addDaemonPodTolerations adds the tolerations every daemon pod gets: daemon pods survive the
// taint-based eviction of a node that is not ready or unreachable, and tolerate the taints of
// node conditions and cordoning.
func addDaemonPodTolerations(spec *corev1.PodSpec) {
	for _, t := range []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	} {
		addOrUpdateToleration(spec, t)
	}
	if spec.HostNetwork {
		addOrUpdateToleration(spec, corev1.Toleration{Key: corev1.TaintNodeNetworkUnavailable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	}
}

// addOrUpdateToleration adds t to the pod's tolerations, replacing one with the same key,
// operator, value and effect (Kubernetes' AddOrUpdateTolerationInPodSpec).
func addOrUpdateToleration(spec *corev1.PodSpec, t corev1.Toleration) {
	for i := range spec.Tolerations {
		if spec.Tolerations[i].MatchToleration(&t) {
			if !apiequality.Semantic.DeepEqual(spec.Tolerations[i], t) {
				spec.Tolerations[i] = t
			}
			return
		}
	}
	spec.Tolerations = append(spec.Tolerations, t)
}

// templateGeneration is the daemon set's template generation (the
// deprecated.daemonset.template.generation annotation the API server keeps), nil if it has
// none or one that does not parse.
func templateGeneration(ds *appsv1.DaemonSet) *int64 {
	a, ok := ds.Annotations[appsv1.DeprecatedTemplateGeneration]
	if !ok {
		return nil
	}
	g, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return nil
	}
	return &g
}

// podTemplate is the template of the daemon set's pods: its own, with the daemon tolerations and
// the pod-template-generation and controller-revision-hash labels.
func podTemplate(t corev1.PodTemplateSpec, generation *int64, hash string) corev1.PodTemplateSpec {
	out := *t.DeepCopy()
	addDaemonPodTolerations(&out.Spec)
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if generation != nil {
		out.Labels[extensionsv1beta1.DaemonSetTemplateGenerationKey] = fmt.Sprint(*generation)
	}
	if hash != "" {
		out.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] = hash
	}
	return out
}

// isPodUpdated reports whether a pod is of the daemon set's current template: its hash label
// or its template generation label says so.
func isPodUpdated(pod *corev1.Pod, hash string, generation *int64) bool {
	templateMatches := generation != nil && pod.Labels[extensionsv1beta1.DaemonSetTemplateGenerationKey] == fmt.Sprint(*generation)
	hashMatches := hash != "" && pod.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] == hash
	return hashMatches || templateMatches
}

// nodeAffinityFor replaces the required node affinity of affinity by one that selects the node
// by name (matchFields metadata.name In [node]): how a daemon pod is placed by the scheduler on
// its node.
func nodeAffinityFor(affinity *corev1.Affinity, node string) *corev1.Affinity {
	sel := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchFields: []corev1.NodeSelectorRequirement{{Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
	}}}
	switch {
	case affinity == nil:
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: sel}}
	case affinity.NodeAffinity == nil:
		affinity.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: sel}
	case affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil:
		affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = sel
	default:
		affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms = sel.NodeSelectorTerms
	}
	return affinity
}

// targetNode is the node a daemon pod is for: spec.nodeName once bound, else the node its
// required node affinity names.
func targetNode(pod *corev1.Pod) (string, error) {
	if pod.Spec.NodeName != "" {
		return pod.Spec.NodeName, nil
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return "", fmt.Errorf("daemonset: no spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution for pod %s/%s", pod.Namespace, pod.Name)
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, exp := range term.MatchFields {
			if exp.Key == metav1.ObjectNameField && exp.Operator == corev1.NodeSelectorOpIn {
				if len(exp.Values) != 1 {
					return "", fmt.Errorf("daemonset: the matchFields value of %q is not unique for pod %s/%s", metav1.ObjectNameField, pod.Namespace, pod.Name)
				}
				return exp.Values[0], nil
			}
		}
	}
	return "", fmt.Errorf("daemonset: no node name found for pod %s/%s", pod.Namespace, pod.Name)
}

// allowsSurge reports whether the daemon set may run more than one pod on a node.
func allowsSurge(ds *appsv1.DaemonSet) bool {
	n, err := surgeCount(ds, 1)
	return err == nil && n > 0
}

// surgeCount is the number of pods maxSurge allows over numberToSchedule (0 without surge).
func surgeCount(ds *appsv1.DaemonSet, numberToSchedule int) (int, error) {
	r := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || r == nil || r.MaxSurge == nil {
		return 0, nil
	}
	return intstrutil.GetScaledValueFromIntOrPercent(r.MaxSurge, numberToSchedule, true)
}

// unavailableCount is the number of pods maxUnavailable allows out of numberToSchedule.
func unavailableCount(ds *appsv1.DaemonSet, numberToSchedule int) (int, error) {
	r := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || r == nil {
		return 0, nil
	}
	return intstrutil.GetScaledValueFromIntOrPercent(r.MaxUnavailable, numberToSchedule, true)
}

// byCreation orders pods scheduled first, then oldest first, then by name.
type byCreation []*corev1.Pod

func (o byCreation) Len() int      { return len(o) }
func (o byCreation) Swap(i, j int) { o[i], o[j] = o[j], o[i] }
func (o byCreation) Less(i, j int) bool {
	if (o[i].Spec.NodeName != "") != (o[j].Spec.NodeName != "") {
		return o[i].Spec.NodeName != ""
	}
	if o[i].CreationTimestamp.Equal(&o[j].CreationTimestamp) {
		return o[i].Name < o[j].Name
	}
	return o[i].CreationTimestamp.Before(&o[j].CreationTimestamp)
}

// isPodReady reports whether a pod's Ready condition is true.
func isPodReady(pod *corev1.Pod) bool {
	c := readyCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue
}

// isPodAvailable reports whether a pod is ready, and has been for minReadySeconds at now.
func isPodAvailable(pod *corev1.Pod, minReadySeconds int32, now metav1.Time) bool {
	c := readyCondition(pod)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false
	}
	return minReadySeconds == 0 || !c.LastTransitionTime.IsZero() && c.LastTransitionTime.Add(time.Duration(minReadySeconds)*time.Second).Before(now.Time)
}

func readyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
