package nodeagent

import (
	"context"
	"errors"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/nodeagent/podworker"
	"github.com/logplane/logplane/registry"
)

var _ podworker.StatusSink = (*statusWriter)(nil)

// statusWriter is the pod worker's StatusSink: like the kubelet's status
// manager, it keeps the latest status of each pod and writes it to the log
// asynchronously (a status superseded before it was written is never
// written), retrying failed writes; once a terminated pod's last status is
// written, it removes the pod from the log.
type statusWriter struct {
	a     *Agent
	queue workqueue.TypedRateLimitingInterface[types.UID]

	mu    sync.Mutex
	items map[types.UID]*statusItem
}

type statusItem struct {
	pod        *corev1.Pod
	status     *corev1.PodStatus // nil: written
	terminated bool
}

func newStatusWriter(a *Agent) *statusWriter {
	return &statusWriter{
		a: a,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[types.UID](),
			workqueue.TypedRateLimitingQueueConfig[types.UID]{Clock: a.cfg.Clock}),
		items: map[types.UID]*statusItem{},
	}
}

func (s *statusWriter) item(pod *corev1.Pod) *statusItem {
	it := s.items[pod.UID]
	if it == nil {
		it = &statusItem{}
		s.items[pod.UID] = it
	}
	it.pod = pod
	return it
}

// PodStatus implements podworker.StatusSink.
func (s *statusWriter) PodStatus(pod *corev1.Pod, status corev1.PodStatus) {
	s.mu.Lock()
	s.item(pod).status = &status
	s.mu.Unlock()
	s.queue.Add(pod.UID)
}

// PodTerminated implements podworker.StatusSink.
func (s *statusWriter) PodTerminated(pod *corev1.Pod) {
	s.mu.Lock()
	s.item(pod).terminated = true
	s.mu.Unlock()
	s.queue.Add(pod.UID)
}

func (s *statusWriter) run(ctx context.Context) {
	for {
		uid, shutdown := s.queue.Get()
		if shutdown {
			return
		}
		if err := s.write(ctx, uid); err != nil {
			if ctx.Err() == nil {
				s.a.log.Warn("nodeagent: writing pod status", "pod", uid, "err", err)
				s.queue.AddRateLimited(uid)
			}
		} else {
			s.queue.Forget(uid)
		}
		s.queue.Done(uid)
	}
}

// write writes the pending status of a pod, then deletes it if it terminated.
func (s *statusWriter) write(ctx context.Context, uid types.UID) error {
	s.mu.Lock()
	it := s.items[uid]
	if it == nil {
		s.mu.Unlock()
		return nil
	}
	pod, status, terminated := it.pod, it.status, it.terminated
	s.mu.Unlock()

	a := s.a
	req := registry.Request{Actor: registry.Node(a.cfg.NodeName), Cause: causeOf(pod.ResourceVersion)}
	gone := false
	if status != nil {
		// The status alone changes, on the current revision (the uid is the precondition), as
		// the kubelet patches it: a status update would also write this copy's metadata, which
		// others may have changed since.
		_, err := a.reg.Modify(ctx, a.kinds.pod, pod.Namespace, pod.Name, req, registry.UpdateOptions{Subresource: "status"},
			func(cur runtime.Object) (runtime.Object, error) {
				p, ok := cur.(*corev1.Pod)
				if !ok || p.UID != pod.UID {
					return nil, apierrors.NewConflict(a.kinds.pod.GroupResource(), pod.Name, errors.New("the pod was replaced"))
				}
				p.Status = *status
				p.ResourceVersion = ""
				return p, nil
			})
		switch {
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			gone = true // deleted, or replaced by a pod of the same name
		case apierrors.IsInvalid(err):
			a.log.Error("nodeagent: invalid pod status, not written", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		case err != nil:
			return err
		}
	}
	if terminated && !gone {
		if err := s.remove(ctx, pod, req); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if it.status == status {
		it.status = nil
	}
	if terminated && it.status == nil {
		delete(s.items, uid)
	}
	s.mu.Unlock()
	return nil
}

// remove deletes a pod whose containers are gone, if it is being deleted:
// the last step of graceful deletion.
func (s *statusWriter) remove(ctx context.Context, pod *corev1.Pod, req registry.Request) error {
	a := s.a
	o, ok := a.store.Get(eventlog.Key{Resource: "pods", Namespace: pod.Namespace, Name: pod.Name})
	if !ok {
		return nil
	}
	obj, err := o.Decode()
	if err != nil {
		return err
	}
	cur, ok := obj.(*corev1.Pod)
	if !ok || cur.UID != pod.UID || cur.DeletionTimestamp == nil {
		return nil // not this pod, or not being deleted (forgotten for another reason)
	}
	zero := int64(0)
	uid := pod.UID
	_, _, err = a.reg.Delete(ctx, a.kinds.pod, pod.Namespace, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	}, req)
	if apierrors.IsNotFound(err) {
		return nil
	}
	// A conflict is retried: the next attempt reads the pod again.
	return err
}
