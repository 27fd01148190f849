package scheduler

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/recorder"
)

// Event reasons the scheduler writes, as kube-scheduler writes them.
const (
	ReasonScheduled        = "Scheduled"
	ReasonFailedScheduling = "FailedScheduling"
)

// ScheduledMessage is the message of the Scheduled event.
func ScheduledMessage(namespace, name, node string) string {
	return fmt.Sprintf("Successfully assigned %s/%s to %s", namespace, name, node)
}

// EventRecorder records Kubernetes Events about objects, in the background: the shared
// recorder (recorder.Recorder), whose Source names the scheduler ("default-scheduler").
type EventRecorder interface {
	Event(obj runtime.Object, cause uint64, eventtype, reason, message string)
}

var _ EventRecorder = (*recorder.Recorder)(nil)
