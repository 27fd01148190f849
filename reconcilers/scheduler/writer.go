package scheduler

import (
	"context"

	corev1 "k8s.io/api/core/v1"
)

// Writer is what the scheduler writes through (RegistryWriter): the registry, which validates
// each write and appends it to the log with the scheduler as actor and cause as the event that caused it.
// Errors are Kubernetes StatusErrors (k8s.io/apimachinery/pkg/api/errors).
type Writer interface {
	// Bind assigns the pod to node as the pods/binding subresource does: spec.nodeName, and the
	// PodScheduled condition True. The pod's uid is a precondition. It fails with Conflict if
	// the pod is bound already or has another uid, NotFound if it is gone.
	Bind(ctx context.Context, pod *corev1.Pod, node string, cause uint64) error
	// SetPodCondition sets cond on the current revision of the pod's status (nothing else). The
	// pod's uid is a precondition.
	SetPodCondition(ctx context.Context, pod *corev1.Pod, cond corev1.PodCondition, cause uint64) error
}
