package podworker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/dataplane/probe"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// Reasons of the kubelet's lifecycle hook events and waiting state.
const (
	EventFailedPostStartHook = "FailedPostStartHook"
	EventFailedPreStopHook   = "FailedPreStopHook"
	// ReasonPostStartHookError is the waiting reason of a container killed
	// because its postStart hook failed (the kubelet's ErrPostStartHook).
	ReasonPostStartHookError = "PostStartHookError"
)

// minimumGracePeriod is the kubelet's minimumGracePeriodInSeconds: a
// container whose preStop hook used up its grace period still gets this
// long after SIGTERM.
const minimumGracePeriod = 2 * time.Second

// maxHookRespBody is how much of a hook's HTTP response is read (the kubelet's maxRespBodyLength).
const maxHookRespBody = 10 << 10

// hookClient is the kubelet's insecureContainerLifecycleHTTPClient: TLS
// without verification (there is nothing to verify against), redirects
// followed only on the same host, no credentials.
var hookClient = &http.Client{
	Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // as the kubelet's
	CheckRedirect: probe.RedirectChecker,
}

// podIP is the pod's IP: the sandbox's, or the node's for a pod on the host network.
func (w *worker) podIP(pod *corev1.Pod) string {
	if pod.Spec.HostNetwork {
		return w.m.cfg.NodeIP
	}
	if w.sandbox != nil {
		return w.sandbox.IP
	}
	return ""
}

// formatPod is the kubelet's format.Pod.
func formatPod(pod *corev1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}

// runHook runs a lifecycle handler as the kubelet's handlerRunner.Run: an
// exec in the container (its exit code non-zero is an error), an HTTP GET
// (only a failed request is an error, not the status; an HTTPS hook answered
// in HTTP is tried again in HTTP), or a sleep. It returns the kubelet's
// message on failure.
func (w *worker) runHook(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, id string, h *corev1.LifecycleHandler) (string, error) {
	switch {
	case h.Exec != nil:
		var stdout, stderr bytes.Buffer
		code, err := w.m.cfg.Runtime.Exec(ctx, id, runtimeapi.ExecOptions{Cmd: h.Exec.Command, Stdout: &stdout, Stderr: &stderr})
		if err == nil && code != 0 {
			// cri-client's ExecSync error for a non-zero exit.
			err = fmt.Errorf("command '%s' exited with %d: %s", strings.Join(h.Exec.Command, " "), code, stderr.String())
		}
		if err != nil {
			return fmt.Sprintf("Exec lifecycle hook (%v) for Container %q in Pod %q failed - error: %v, message: %q",
				h.Exec.Command, spec.Name, formatPod(pod), err, stdout.String()+stderr.String()), err
		}
		return "", nil
	case h.HTTPGet != nil:
		if err := w.runHTTPHook(ctx, pod, spec, h.HTTPGet); err != nil {
			return fmt.Sprintf("HTTP lifecycle hook (%s) for Container %q in Pod %q failed - error: %v", h.HTTPGet.Path, spec.Name, formatPod(pod), err), err
		}
		return "", nil
	case h.Sleep != nil:
		t := w.clock().NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer t.Stop()
		select {
		case <-t.C():
			return "", nil
		case <-ctx.Done():
			err := errors.New("container terminated before sleep hook finished")
			return fmt.Sprintf("Sleep lifecycle hook (%d) for Container %q in Pod %q failed - error: %v", h.Sleep.Seconds, spec.Name, formatPod(pod), err), err
		}
	default:
		err := fmt.Errorf("invalid handler: %v", h)
		return fmt.Sprintf("Cannot run handler: %v", err), err
	}
}

// runHTTPHook is the kubelet's runHTTPHandler.
func (w *worker) runHTTPHook(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, a *corev1.HTTPGetAction) error {
	ip := a.Host
	if ip == "" {
		if ip = w.podIP(pod); ip == "" {
			return errors.New("failed to find networking container: the pod has no IP")
		}
	}
	req, err := probe.NewHTTPRequest(ctx, a, spec.Ports, ip, "lifecycle")
	if err != nil {
		return err
	}
	resp, err := hookClient.Do(req)
	discardBody(resp)
	var ue *url.Error
	if err != nil && errors.As(err, &ue) && strings.Contains(ue.Err.Error(), "server gave HTTP response to HTTPS client") {
		req := req.Clone(ctx)
		req.URL.Scheme = "http"
		req.Header.Del("Authorization")
		resp, httpErr := hookClient.Do(req)
		if httpErr == nil {
			w.event(pod, "", EventWarning, "LifecycleHTTPFallback", fmt.Sprintf("request to HTTPS lifecycle hook %s got HTTP response, retry with HTTP succeeded", req.URL.Host))
			err = nil
		}
		discardBody(resp)
	}
	return err
}

func discardBody(resp *http.Response) {
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if resp.ContentLength <= maxHookRespBody {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxHookRespBody)) // drained for the connection's sake only
	}
}

// postStart runs the container's postStart hook, if any, right after it
// started, as the kubelet's startContainer: when the hook fails, a
// FailedPostStartHook event is recorded (without the message, which may
// hold secrets) and the container is killed; the message is returned.
func (w *worker) postStart(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, init bool, id string) (string, error) {
	if spec.Lifecycle == nil || spec.Lifecycle.PostStart == nil {
		return "", nil
	}
	msg, err := w.runHook(ctx, pod, spec, id, spec.Lifecycle.PostStart)
	if err == nil {
		return "", nil
	}
	fp := fieldPath(spec.Name, init)
	w.event(pod, fp, EventWarning, EventFailedPostStartHook, "PostStartHook failed")
	w.event(pod, fp, EventNormal, "Killing", "FailedPostStartHook")
	if serr := w.stopContainer(ctx, pod, spec, init, id, gracePeriod(pod, nil)); serr != nil {
		w.report(fmt.Errorf("podworker: stop %s after its postStart hook failed: %w", spec.Name, serr))
	}
	return msg, err
}

// stopContainer is the kubelet's killContainer: the container's preStop
// hook, if any, runs first, within the grace period (a FailedPreStopHook
// event if it fails), then the container gets SIGTERM and, once the rest of
// the grace period has passed (at least minimumGracePeriod after a hook),
// SIGKILL.
func (w *worker) stopContainer(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, init bool, id string, grace time.Duration) error {
	if spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil && grace >= time.Second {
		start := w.clock().Now()
		hctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := w.runHook(hctx, pod, spec, id, spec.Lifecycle.PreStop); err != nil && hctx.Err() == nil {
				w.event(pod, fieldPath(spec.Name, init), EventWarning, EventFailedPreStopHook, "PreStopHook failed")
			}
		}()
		t := w.clock().NewTimer(grace)
		select {
		case <-t.C():
		case <-done:
		case <-ctx.Done():
		}
		t.Stop()
		// In whole seconds, as the kubelet counts it.
		grace -= w.clock().Since(start).Truncate(time.Second)
		grace = max(grace, minimumGracePeriod)
	}
	return w.m.cfg.Runtime.StopContainer(ctx, id, grace)
}
