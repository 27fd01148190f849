package scheduler

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Event reasons and actions the scheduler writes, as kube-scheduler writes them.
const (
	ReasonScheduled        = "Scheduled"
	ReasonFailedScheduling = "FailedScheduling"
	actionBinding          = "Binding"
	actionScheduling       = "Scheduling"
)

// ScheduledMessage is the message of the Scheduled event.
func ScheduledMessage(namespace, name, node string) string {
	return fmt.Sprintf("Successfully assigned %s/%s to %s", namespace, name, node)
}

// recorder writes core/v1 Events in the background, in order for each pod, so that binding does
// not wait for them. Events are named as client-go's recorder names them, <pod>.<nanoseconds in
// hex>, and carry both the legacy source and the reporting controller, so that kubectl describe
// shows "default-scheduler" in its From column.
type recorder struct {
	w         Writer
	component string
	instance  string
	now       func() time.Time
	log       *slog.Logger
	queues    []chan eventJob
	wg        sync.WaitGroup
}

type eventJob struct {
	ev     *corev1.Event
	update bool
	cause  uint64
}

func newRecorder(w Writer, component, instance string, now func() time.Time, log *slog.Logger, workers int) *recorder {
	r := &recorder{w: w, component: component, instance: instance, now: now, log: log}
	for range workers {
		r.queues = append(r.queues, make(chan eventJob, 256))
	}
	return r
}

// run writes queued events until ctx ends, then writes nothing more.
func (r *recorder) run(ctx context.Context) {
	for _, q := range r.queues {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-q:
					r.write(ctx, j)
				}
			}
		}()
	}
	r.wg.Wait()
}

func (r *recorder) write(ctx context.Context, j eventJob) {
	var err error
	if j.update {
		err = r.w.UpdateEvent(ctx, j.ev, j.cause)
	} else {
		err = r.w.CreateEvent(ctx, j.ev, j.cause)
	}
	if err != nil && ctx.Err() == nil {
		// An event is a report, not state: losing one is logged, not retried.
		r.log.Warn("scheduler: writing event", "event", j.ev.Name, "reason", j.ev.Reason, "err", err)
	}
}

// newEvent returns a new event about pod.
func (r *recorder) newEvent(pod *corev1.Pod, typ, reason, action, msg string) *corev1.Event {
	now := r.now()
	t := metav1.NewTime(now)
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: fmt.Sprintf("%s.%x", pod.Name, now.UnixNano())},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion,
		},
		Reason: reason, Message: msg, Type: typ, Action: action,
		Source:              corev1.EventSource{Component: r.component},
		ReportingController: r.component, ReportingInstance: r.instance,
		FirstTimestamp: t, LastTimestamp: t, Count: 1,
	}
}

// emit queues an event for writing; it blocks while the pod's queue is full, or until ctx ends.
func (r *recorder) emit(ctx context.Context, j eventJob) {
	h := fnv.New32a()
	h.Write([]byte(j.ev.Namespace + "/" + j.ev.InvolvedObject.Name))
	select {
	case r.queues[h.Sum32()%uint32(len(r.queues))] <- j:
	case <-ctx.Done():
	}
}
