package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/recorder"
	"github.com/logplane/logplane/registry"
)

// registerSpaceMetrics exposes the state of the embedded log's disk.
func registerSpaceMetrics(m *prometheus.Registry, l *eventlog.Log) {
	m.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "logplane_log_out_of_space",
			Help: "1 while the log's disk is full and writes are refused (507), else 0.",
		}, func() float64 {
			if l.Space().Full {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "logplane_log_free_bytes",
			Help: "Free space on the filesystem of the embedded log, as last looked at (every 250 ms).",
		}, func() float64 { return float64(l.Space().Free) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "logplane_log_space_recoveries_total",
			Help: "Times the embedded server was restarted to take writes again after its disk was full.",
		}, func() float64 { return float64(l.Space().Restarts) }),
	)
}

// reportSpace records a Warning Event on this machine's Node for each time the log ran out of
// space, once it has room again (while it is full no Event can be written: the metric and the
// process's log say it then).
func reportSpace(ctx context.Context, reg *registry.Registry, events <-chan eventlog.SpaceEvent) error {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "logplane"
	}
	rec, err := recorder.New(recorder.Config{
		Registry: reg, Actor: registry.System("eventlog"),
		Source: corev1.EventSource{Component: "logplane-eventlog", Host: host},
	})
	if err != nil {
		return err
	}
	go func() {
		if err := rec.Run(ctx); err != nil {
			slog.Warn("logplane: the out-of-space event recorder stopped", "err", err)
		}
	}()
	node := corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: host, UID: types.UID(host)}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-events:
			if e.Full {
				continue
			}
			rec.RefEvent(node, 0, corev1.EventTypeWarning, "LogOutOfSpace", fmt.Sprintf(
				"the log ran out of disk space at %s (%s): writes were refused for %s (%d refused) and resumed with no restart of logplane",
				e.Since.UTC().Format(time.RFC3339), e.Cause, e.Until.Sub(e.Since).Round(time.Millisecond), e.Refused))
		}
	}
}
