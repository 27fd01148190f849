package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/disktest"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// TestOutOfSpaceMetricAndWarningEvent runs a process (log, projection, registry, as every role
// does) on a 64 MiB tmpfs and fills it: the metric logplane_log_out_of_space is 1 while writes
// answer 507, and once space is freed writes resume and a Warning LogOutOfSpace Event on this
// machine's Node says what happened.
func TestOutOfSpaceMetricAndWarningEvent(t *testing.T) {
	dir := disktest.Tmpfs(t, 64<<20)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	lf := logFlags{dataDir: dir, durability: "group-commit", replicas: 1}
	p, err := openProcess(ctx, &lf, &processFlags{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := p.wait(); err != nil {
			t.Error(err)
		}
	}()
	cmKind, ok := p.reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "configmaps"})
	if !ok {
		t.Fatal("no configmaps")
	}
	nsKind, _ := p.reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "namespaces"})
	if _, err := p.reg.Create(ctx, nsKind, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, registry.Request{Actor: registry.User("test")}); err != nil {
		t.Fatal(err)
	}
	create := func(name string) error {
		_, err := p.reg.Create(ctx, cmKind, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Data: map[string]string{"k": strings.Repeat("v", 4000)}}, registry.Request{Actor: registry.User("test")})
		return err
	}
	if err := create("before"); err != nil {
		t.Fatal(err)
	}
	filler := disktest.Fill(t, dir)
	var err507 error
	for i := 0; err507 == nil; i++ {
		if err := create("filling-" + strings.Repeat("x", i%50) + string(rune('a'+i/50%26))); err != nil {
			err507 = err
		}
	}
	var se *apierrors.StatusError
	if !errors.As(err507, &se) || se.ErrStatus.Code != http.StatusInsufficientStorage {
		t.Fatalf("write on a full disk: %v, want 507", err507)
	}
	if v := gauge(t, p, "logplane_log_out_of_space"); v != 1 {
		t.Errorf("logplane_log_out_of_space = %v while full, want 1", v)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for create("after") != nil {
		if time.Now().After(deadline) {
			t.Fatal("writes did not resume within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := gauge(t, p, "logplane_log_out_of_space"); v != 0 {
		t.Errorf("logplane_log_out_of_space = %v after recovery, want 0", v)
	}
	host, _ := os.Hostname() // the Event's node; empty falls back as reportSpace does
	events := schema.GroupResource{Resource: "events"}
	for {
		objs, _ := p.store.List(projections.Query{Resource: events})
		for _, o := range objs {
			obj, err := o.Decode()
			if err != nil {
				t.Fatal(err)
			}
			if ev := obj.(*corev1.Event); ev.Reason == "LogOutOfSpace" {
				if ev.Type != corev1.EventTypeWarning || ev.InvolvedObject.Kind != "Node" || (host != "" && ev.InvolvedObject.Name != host) {
					t.Errorf("event %+v", ev)
				}
				t.Logf("event: %s", ev.Message)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no LogOutOfSpace event within 10 s of recovery")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func gauge(t *testing.T, p *process, name string) float64 {
	t.Helper()
	mfs, err := p.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
