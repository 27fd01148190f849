package podworker

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/dataplane/probe"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

type probeKind string

// maxProbeRetries is the kubelet's: how many times a probe that could not
// run is tried before it counts as failed.
const maxProbeRetries = 3

// staticExpanded is p with its exec command's $(VAR) references to the
// container's plain env values expanded, as the kubelet's
// ExpandContainerCommandOnlyStatic (values from configMaps, secrets or
// fields are not).
func staticExpanded(p *corev1.Probe, spec *corev1.Container) *corev1.Probe {
	if p.Exec == nil {
		return p
	}
	vars := map[string]string{}
	for _, e := range spec.Env {
		if e.ValueFrom == nil {
			vars[e.Name] = expand(e.Value, vars)
		}
	}
	p = p.DeepCopy()
	for i, a := range p.Exec.Command {
		p.Exec.Command[i] = expand(a, vars)
	}
	return p
}

const (
	startup   probeKind = "Startup"
	liveness  probeKind = "Liveness"
	readiness probeKind = "Readiness"
)

// startProbes starts one goroutine per probe of a running instance; they
// end when the instance exits or the worker stops. An adopted instance takes
// its started and ready state from the pod's last reported status.
func (w *worker) startProbes(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, c *ctr, st runtimeapi.ContainerStatus, adopted bool) {
	pctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	if c.probeCancel != nil {
		c.probeCancel()
	}
	c.probeCancel = cancel
	c.started = spec.StartupProbe == nil
	c.ready = spec.ReadinessProbe == nil
	if adopted {
		for _, s := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
			if s.Name == spec.Name && s.ContainerID == w.m.cfg.RuntimeName+"://"+st.ID {
				c.started = c.started || (s.Started != nil && *s.Started)
				c.ready = c.ready || s.Ready
			}
		}
	}
	ip := w.podIP(pod)
	w.mu.Unlock()
	target := probe.Target{PodIP: ip, ContainerID: st.ID, Ports: spec.Ports, Exec: w.m.cfg.Runtime}
	for kind, p := range map[probeKind]*corev1.Probe{startup: spec.StartupProbe, liveness: spec.LivenessProbe, readiness: spec.ReadinessProbe} {
		if p != nil {
			p = staticExpanded(p, spec)
			go w.probeLoop(pctx, pod, spec, c, kind, p, target, st.StartedAt)
		}
	}
}

func (w *worker) probeLoop(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, c *ctr, kind probeKind, p *corev1.Probe, t probe.Target, startedAt time.Time) {
	clk := w.clock()
	sleep := func(d time.Duration) bool {
		if d <= 0 {
			return ctx.Err() == nil
		}
		tm := clk.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C():
			return true
		case <-ctx.Done():
			return false
		}
	}
	period := time.Duration(p.PeriodSeconds) * time.Second
	if period <= 0 {
		period = 10 * time.Second
	}
	failThreshold := int(p.FailureThreshold)
	if failThreshold <= 0 {
		failThreshold = 3
	}
	successThreshold := int(p.SuccessThreshold)
	if successThreshold <= 0 || kind != readiness {
		successThreshold = 1
	}
	delay := time.Duration(p.InitialDelaySeconds)*time.Second - clk.Since(startedAt)
	if !sleep(delay) {
		return
	}
	var successes, failures int
	for {
		w.mu.Lock()
		started := c.started
		w.mu.Unlock()
		switch {
		case kind == startup && started:
			return
		case kind != startup && !started:
			if !sleep(period) {
				return
			}
			continue
		}
		// The kubelet's prober.probe: a probe that could not run (Unknown) is
		// tried maxProbeRetries times before it counts as a failure.
		var res probe.Result
		var err error
		for range maxProbeRetries {
			if res, err = w.m.cfg.Prober.Probe(ctx, p, t); err == nil || ctx.Err() != nil {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		fp := fieldPath(spec.Name, c.init)
		switch {
		case err != nil:
			res = probe.Result{}
			w.event(pod, fp, EventWarning, "Unhealthy", fmt.Sprintf("%s probe errored and resulted in unknown state: %s", kind, err))
		case res.Success && res.Warning:
			w.event(pod, fp, EventWarning, "ProbeWarning", fmt.Sprintf("%s probe warning: %s", kind, res.Message))
		case !res.Success:
			w.event(pod, fp, EventWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %s", kind, res.Message))
		}
		if res.Success {
			successes, failures = successes+1, 0
		} else {
			successes, failures = 0, failures+1
		}
		changed, stop := false, false
		w.mu.Lock()
		switch kind {
		case startup:
			if res.Success {
				c.started, changed, stop = true, true, true
			} else if failures >= failThreshold {
				c.killReason = fmt.Sprintf("Container %s failed startup probe, will be restarted", spec.Name)
				changed, stop = true, true
			}
		case liveness:
			if failures >= failThreshold {
				c.killReason = fmt.Sprintf("Container %s failed liveness probe, will be restarted", spec.Name)
				changed, stop = true, true
			}
		case readiness:
			if res.Success && successes >= successThreshold && !c.ready {
				c.ready, changed = true, true
			}
			if !res.Success && failures >= failThreshold && c.ready {
				c.ready, changed = false, true
			}
		}
		w.mu.Unlock()
		if changed {
			w.poke()
		}
		if stop || !sleep(period) {
			return
		}
	}
}
