package job

import (
	"fmt"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// matchPodFailurePolicy is Kubernetes' matchPodFailurePolicy: the message and action of the
// first rule of the policy that a failed pod matches, and whether the pod counts towards the
// backoffLimit (and its index's backoffLimitPerIndex); nil action if no rule matches (the pod counts).
func matchPodFailurePolicy(policy *batchv1.PodFailurePolicy, p *corev1.Pod) (msg string, action *batchv1.PodFailurePolicyAction, counts bool) {
	if policy == nil {
		return "", nil, true
	}
	ignore, fail, count := batchv1.PodFailurePolicyActionIgnore, batchv1.PodFailurePolicyActionFailJob, batchv1.PodFailurePolicyActionCount
	failIndex := batchv1.PodFailurePolicyActionFailIndex
	for i, rule := range policy.Rules {
		if rule.OnExitCodes != nil {
			if cs := matchOnExitCodes(&p.Status, rule.OnExitCodes); cs != nil {
				switch rule.Action {
				case batchv1.PodFailurePolicyActionIgnore:
					return "", &ignore, false
				case batchv1.PodFailurePolicyActionCount:
					return "", &count, true
				case batchv1.PodFailurePolicyActionFailIndex:
					return "", &failIndex, true
				case batchv1.PodFailurePolicyActionFailJob:
					return fmt.Sprintf("Container %s for pod %s/%s failed with exit code %v matching %v rule at index %d",
						cs.Name, p.Namespace, p.Name, cs.State.Terminated.ExitCode, rule.Action, i), &fail, true
				}
			}
		} else if rule.OnPodConditions != nil {
			if cond := matchOnPodConditions(&p.Status, rule.OnPodConditions); cond != nil {
				switch rule.Action {
				case batchv1.PodFailurePolicyActionIgnore:
					return "", &ignore, false
				case batchv1.PodFailurePolicyActionCount:
					return "", &count, true
				case batchv1.PodFailurePolicyActionFailIndex:
					return "", &failIndex, true
				case batchv1.PodFailurePolicyActionFailJob:
					return fmt.Sprintf("Pod %s/%s has condition %v matching %v rule at index %d",
						p.Namespace, p.Name, cond.Type, rule.Action, i), &fail, true
				}
			}
		}
	}
	return "", nil, true
}

func matchOnExitCodes(st *corev1.PodStatus, req *batchv1.PodFailurePolicyOnExitCodesRequirement) *corev1.ContainerStatus {
	if cs := matchingContainer(st.ContainerStatuses, req); cs != nil {
		return cs
	}
	return matchingContainer(st.InitContainerStatuses, req)
}

func matchingContainer(statuses []corev1.ContainerStatus, req *batchv1.PodFailurePolicyOnExitCodesRequirement) *corev1.ContainerStatus {
	for i := range statuses {
		cs := &statuses[i]
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode == 0 {
			continue
		}
		if req.ContainerName != nil && *req.ContainerName != cs.Name {
			continue
		}
		in := slices.Contains(req.Values, cs.State.Terminated.ExitCode)
		if (req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) == in {
			return cs
		}
	}
	return nil
}

func matchOnPodConditions(st *corev1.PodStatus, reqs []batchv1.PodFailurePolicyOnPodConditionsPattern) *corev1.PodCondition {
	for _, req := range reqs {
		for i := range st.Conditions {
			if c := &st.Conditions[i]; c.Type == req.Type && c.Status == req.Status {
				return c
			}
		}
	}
	return nil
}
