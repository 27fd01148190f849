package podworker

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// status computes the pod's status as the kubelet reports it.
func (w *worker) status(pod *corev1.Pod) corev1.PodStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := corev1.PodStatus{
		HostIP:    w.m.cfg.NodeIP,
		StartTime: w.startTime,
		QOSClass:  pod.Status.QOSClass,
	}
	if w.m.cfg.NodeIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: w.m.cfg.NodeIP}}
	}
	if ip := w.podIP(pod); ip != "" && w.sandbox != nil {
		// A pod on the host network has the node's IP, as the kubelet reports it.
		st.PodIP = ip
		st.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	initDone := true
	var incomplete []string
	hasInit := len(pod.Spec.InitContainers) > 0
	for i := range pod.Spec.InitContainers {
		spec := &pod.Spec.InitContainers[i]
		cs := w.containerStatusLocked(spec, true, hasInit)
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			initDone = false
			incomplete = append(incomplete, spec.Name)
		}
	}
	var unready []string
	for i := range pod.Spec.Containers {
		spec := &pod.Spec.Containers[i]
		cs := w.containerStatusLocked(spec, false, hasInit)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if !cs.Ready {
			unready = append(unready, spec.Name)
		}
	}
	st.Phase = w.phaseLocked(pod)
	// The kubelet's generateAPIPodStatus: a phase the API already shows as
	// terminal stays; an eviction (activeDeadlineSeconds) fails the pod with its
	// reason and message.
	if isTerminal(pod.Status.Phase) {
		st.Phase = pod.Status.Phase
		st.Reason, st.Message = pod.Status.Reason, pod.Status.Message
	}
	if w.evictReason != "" {
		st.Phase, st.Reason, st.Message = corev1.PodFailed, w.evictReason, w.evictMessage
	}
	if w.stopped && !isTerminal(st.Phase) {
		// The kubelet's getPhase for a terminal pod: succeeded if every container exited 0,
		// else failed (a Job with podReplacementPolicy Failed replaces the pod then).
		st.Phase = corev1.PodFailed
		if w.allSucceededLocked(pod) {
			st.Phase = corev1.PodSucceeded
		}
	}

	now := metav1.NewTime(w.clock().Now())
	prev := map[corev1.PodConditionType]corev1.PodCondition{}
	for _, c := range pod.Status.Conditions {
		prev[c.Type] = c
	}
	if w.lastStatus != nil {
		for _, c := range w.lastStatus.Conditions {
			prev[c.Type] = c
		}
	}
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg, LastTransitionTime: now}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		if p, found := prev[t]; found && p.Status == c.Status {
			c.LastTransitionTime = p.LastTransitionTime
		}
		return c
	}
	names := func(n []string) string { return "[" + strings.Join(n, " ") + "]" }
	var readyReason, readyMsg string
	ready := len(unready) == 0
	switch {
	case st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed:
		ready, readyReason = false, "PodCompleted"
	case !ready:
		readyReason, readyMsg = "ContainersNotReady", "containers with unready status: "+names(unready)
	}
	initReason, initMsg := "", ""
	if !initDone {
		initReason, initMsg = "ContainersNotInitialized", "containers with incomplete status: "+names(incomplete)
	}
	sched := cond(corev1.PodScheduled, true, "", "")
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.sandbox != nil, "", ""),
		cond(corev1.PodInitialized, initDone, initReason, initMsg),
		cond(corev1.PodReady, ready, readyReason, readyMsg),
		cond(corev1.ContainersReady, ready, readyReason, readyMsg),
		sched,
	}
	if w.sandboxErr != "" && st.Reason == "" {
		st.Message = w.sandboxErr
	}
	return st
}

func terminated(x *runtimeapi.ContainerStatus, runtimeName string) *corev1.ContainerStateTerminated {
	reason := x.Reason
	if reason == "" {
		reason = runtimeapi.ReasonError
		if x.ExitCode == 0 {
			reason = runtimeapi.ReasonCompleted
		}
	}
	return &corev1.ContainerStateTerminated{
		ExitCode:    x.ExitCode,
		Reason:      reason,
		Message:     x.Message,
		StartedAt:   metav1.NewTime(x.StartedAt),
		FinishedAt:  metav1.NewTime(x.FinishedAt),
		ContainerID: runtimeName + "://" + x.ID,
	}
}

// containerStatusLocked is the status of one container, as the kubelet's
// convertToAPIContainerStatuses makes it: a container that has no instance
// yet waits with PodInitializing when the pod has init containers (init and
// app containers alike, before, during and after initialization), else with
// ContainerCreating, unless a failed start gave a reason; an init container
// that completed is ready (the kubelet's prober manager).
func (w *worker) containerStatusLocked(spec *corev1.Container, init, podHasInit bool) corev1.ContainerStatus {
	rn := w.m.cfg.RuntimeName
	c := w.ctrs[spec.Name]
	cs := corev1.ContainerStatus{Name: spec.Name, Image: spec.Image}
	started := false
	if c == nil || c.cur == nil {
		reason, msg := ReasonContainerCreating, ""
		if podHasInit {
			reason = ReasonPodInitializing
		}
		if c != nil && c.waitReason != "" {
			reason, msg = c.waitReason, c.waitMessage
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		cs.Started = &started
		return cs
	}
	cur := c.cur
	cs.ImageID = cur.ImageID
	cs.ContainerID = rn + "://" + cur.ID
	cs.RestartCount = int32(cur.Attempt)
	if u := cur.User; u != nil {
		// The identity the runtime resolved, as the kubelet reports it (convertContainerStatusUser).
		cs.User = &corev1.ContainerUser{Linux: &corev1.LinuxContainerUser{UID: u.UID, GID: u.GID, SupplementalGroups: u.SupplementalGroups}}
	}
	switch cur.State {
	case runtimeapi.StateRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(cur.StartedAt)}
		started = c.started
		cs.Ready = !init && c.started && c.ready // an init container is ready once it completed
	case runtimeapi.StateExited:
		if c.waitReason != "" {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waitReason, Message: c.waitMessage}
			cs.LastTerminationState.Terminated = terminated(cur, rn)
		} else {
			cs.State.Terminated = terminated(cur, rn)
			cs.Ready = init && cur.ExitCode == 0
		}
	default:
		reason := ReasonContainerCreating
		if c.waitReason != "" {
			reason = c.waitReason
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: c.waitMessage}
	}
	if cs.LastTerminationState.Terminated == nil && c.prev != nil && c.prev.State == runtimeapi.StateExited {
		cs.LastTerminationState.Terminated = terminated(c.prev, rn)
	}
	cs.Started = &started
	return cs
}

// allSucceededLocked: every container of the pod has exited 0.
func (w *worker) allSucceededLocked(pod *corev1.Pod) bool {
	for i := range pod.Spec.Containers {
		c := w.ctrs[pod.Spec.Containers[i].Name]
		if c == nil || c.cur == nil || c.cur.State != runtimeapi.StateExited || c.cur.ExitCode != 0 {
			return false
		}
	}
	return true
}

// phaseLocked computes the pod phase the way the kubelet does.
func (w *worker) phaseLocked(pod *corev1.Pod) corev1.PodPhase {
	policy := pod.Spec.RestartPolicy
	for i := range pod.Spec.InitContainers {
		c := w.ctrs[pod.Spec.InitContainers[i].Name]
		if c == nil || c.cur == nil {
			return corev1.PodPending
		}
		if c.cur.State != runtimeapi.StateExited {
			return corev1.PodPending
		}
		if c.cur.ExitCode != 0 {
			if policy == corev1.RestartPolicyNever {
				return corev1.PodFailed
			}
			return corev1.PodPending
		}
	}
	var waiting, running, stopped, succeeded int
	for i := range pod.Spec.Containers {
		c := w.ctrs[pod.Spec.Containers[i].Name]
		switch {
		case c == nil || c.cur == nil:
			waiting++
		case c.cur.State == runtimeapi.StateRunning:
			running++
		case c.cur.State == runtimeapi.StateExited:
			stopped++
			if c.cur.ExitCode == 0 {
				succeeded++
			}
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		if policy == corev1.RestartPolicyAlways || policy == "" {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if policy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
