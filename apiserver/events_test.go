package apiserver_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// TestEventsServedInBothVersions: events.k8s.io/v1 Events are the core v1 Events, converted, as
// Kubernetes stores one resource and serves it in both APIs: what is written through one is
// read, listed, watched, selected, changed and deleted through the other.
func TestEventsServedInBothVersions(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := clientset(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	core, ev1 := cs.CoreV1().Events("default"), cs.EventsV1().Events("default")
	start, err := core.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	coreWatch, err := core.Watch(ctx, metav1.ListOptions{ResourceVersion: start.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer coreWatch.Stop()
	v1Watch, err := ev1.Watch(ctx, metav1.ListOptions{ResourceVersion: start.ResourceVersion, FieldSelector: "regarding.name=p"})
	if err != nil {
		t.Fatal(err)
	}
	defer v1Watch.Stop()

	pod := corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "p", UID: "uid-p", APIVersion: "v1"}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	if _, err := core.Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "from-core"}, InvolvedObject: pod, Reason: "Pulled", Message: "pulled the image",
		Source: corev1.EventSource{Component: "kubelet", Host: "node-1"}, FirstTimestamp: now, LastTimestamp: now, Count: 2, Type: corev1.EventTypeNormal,
	}, metav1.CreateOptions{FieldManager: "core-writer"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ev1.Create(ctx, &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "from-events"}, EventTime: metav1.NewMicroTime(time.Now()),
		ReportingController: "example.com/ctrl", ReportingInstance: "ctrl-1", Action: "Testing", Reason: "Tested",
		Regarding: pod, Note: "hello", Type: corev1.EventTypeWarning,
	}, metav1.CreateOptions{FieldManager: "events-writer"}); err != nil {
		t.Fatal(err)
	}

	// Read through the other API, converted.
	got1, err := ev1.Get(ctx, "from-core", metav1.GetOptions{})
	if err != nil || got1.Note != "pulled the image" || got1.Regarding.Name != "p" || got1.DeprecatedSource.Component != "kubelet" ||
		got1.DeprecatedCount != 2 || !got1.DeprecatedFirstTimestamp.Equal(&now) {
		t.Fatalf("core event read as events.k8s.io: %v %+v", err, got1)
	}
	gotCore, err := core.Get(ctx, "from-events", metav1.GetOptions{})
	if err != nil || gotCore.Message != "hello" || gotCore.InvolvedObject.UID != "uid-p" || gotCore.ReportingController != "example.com/ctrl" ||
		gotCore.Action != "Testing" || gotCore.Type != corev1.EventTypeWarning {
		t.Fatalf("events.k8s.io event read as core: %v %+v", err, gotCore)
	}
	if gotCore.ResourceVersion == "" || gotCore.UID == "" {
		t.Fatalf("no server fields: %+v", gotCore.ObjectMeta)
	}
	names := func(l []string) string { slices.Sort(l); return strings.Join(l, ",") }
	l1, err := ev1.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var n1 []string
	for _, e := range l1.Items {
		n1 = append(n1, e.Name)
	}
	if names(n1) != "from-core,from-events" {
		t.Fatalf("events.k8s.io list: %v", n1)
	}

	// Field selectors, in both APIs' terms. A core selector on source finds an event written
	// through events.k8s.io by its reporting controller, as on Kubernetes.
	for _, c := range []struct {
		name     string
		list     func(string) ([]string, error)
		selector string
		want     string
	}{
		{"core source", coreNames(ctx, cs.CoreV1().Events("")), "source=example.com/ctrl", "from-events"},
		{"core source of a core event", coreNames(ctx, cs.CoreV1().Events("")), "source=kubelet", "from-core"},
		{"core reportingComponent", coreNames(ctx, cs.CoreV1().Events("")), "reportingComponent=example.com/ctrl", "from-events"},
		{"core involvedObject.name", coreNames(ctx, cs.CoreV1().Events("")), "involvedObject.name=p,type=Normal", "from-core"},
		{"events regarding.name", v1Names(ctx, cs.EventsV1().Events("")), "regarding.name=p", "from-core,from-events"},
		{"events regarding.uid", v1Names(ctx, cs.EventsV1().Events("")), "regarding.uid=uid-p,reason=Pulled", "from-core"},
		{"events reportingController", v1Names(ctx, cs.EventsV1().Events("default")), "reportingController=example.com/ctrl", "from-events"},
		{"events type", v1Names(ctx, cs.EventsV1().Events("default")), "type=Warning", "from-events"},
	} {
		got, err := c.list(c.selector)
		if err != nil || names(got) != c.want {
			t.Errorf("%s (%s): %v %v, want %s", c.name, c.selector, err, got, c.want)
		}
	}
	if _, err := v1Names(ctx, cs.EventsV1().Events(""))("involvedObject.name=p"); !apierrors.IsBadRequest(err) {
		t.Errorf("a core field label on events.k8s.io: %v, want 400", err)
	}
	if _, err := coreNames(ctx, cs.CoreV1().Events(""))("regarding.name=p"); !apierrors.IsBadRequest(err) {
		t.Errorf("an events.k8s.io field label on core: %v, want 400", err)
	}

	// Changes through one API land in the same object.
	// (events.k8s.io/v1 allows only metadata and the series to change; core v1 anything.)
	p1, err := ev1.Patch(ctx, "from-core", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"seen":"twice"}},"series":{"count":2,"lastObservedTime":"2026-01-02T03:04:05.000006Z"}}`), metav1.PatchOptions{FieldManager: "events-writer"})
	if err != nil {
		t.Fatal(err)
	}
	c1, err := core.Get(ctx, "from-core", metav1.GetOptions{})
	if err != nil || c1.Labels["seen"] != "twice" || c1.Series == nil || c1.Series.Count != 2 || c1.ResourceVersion != p1.ResourceVersion || c1.Source.Host != "node-1" {
		t.Fatalf("after an events.k8s.io patch, core reads %v %+v", err, c1)
	}
	c1.Message = "pulled it again"
	if _, err := core.Update(ctx, c1, metav1.UpdateOptions{FieldManager: "core-writer"}); err != nil {
		t.Fatal(err)
	}
	e1, err := ev1.Get(ctx, "from-core", metav1.GetOptions{})
	if err != nil || e1.Note != "pulled it again" || e1.Series == nil || e1.Series.LastObservedTime.Nanosecond() != 6000 {
		t.Fatalf("after a core update, events.k8s.io reads %v %+v", err, e1)
	}
	if _, err := ev1.Patch(ctx, "from-core", types.MergePatchType, []byte(`{"note":"rewritten"}`), metav1.PatchOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("changing the note through events.k8s.io: %v, want 422", err)
	}
	var managers []string
	for _, m := range e1.ManagedFields {
		managers = append(managers, m.Manager+"@"+m.APIVersion)
	}
	if names(managers) != "core-writer@v1,events-writer@events.k8s.io/v1" {
		t.Errorf("managed fields after writes through both APIs: %v", managers)
	}

	// Both watches see the changes, each in its own API's type.
	wantEvents(t, coreWatch, false, []string{"ADDED from-core", "ADDED from-events", "MODIFIED from-core", "MODIFIED from-core"})
	wantEvents(t, v1Watch, true, []string{"ADDED from-core", "ADDED from-events", "MODIFIED from-core", "MODIFIED from-core"})

	// kubectl reads both through either API.
	must(t, s, "", []string{"Pulled", "Tested", "hello", "pulled it again"}, "get", "events")
	must(t, s, "", []string{"Pulled", "Tested", "hello", "pulled it again"}, "get", "events.v1.events.k8s.io")
	must(t, s, "", []string{"Tested", "hello", "Pulled"}, "events")

	// Deleted through one, gone from both.
	if err := ev1.Delete(ctx, "from-events", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Get(ctx, "from-events", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("core get after an events.k8s.io delete: %v", err)
	}
	wantEvents(t, v1Watch, true, []string{"DELETED from-events"})
	wantEvents(t, coreWatch, false, []string{"DELETED from-events"})
}

func coreNames(ctx context.Context, c interface {
	List(context.Context, metav1.ListOptions) (*corev1.EventList, error)
}) func(string) ([]string, error) {
	return func(sel string) ([]string, error) {
		l, err := c.List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, e := range l.Items {
			out = append(out, e.Name)
		}
		return out, nil
	}
}

func v1Names(ctx context.Context, c interface {
	List(context.Context, metav1.ListOptions) (*eventsv1.EventList, error)
}) func(string) ([]string, error) {
	return func(sel string) ([]string, error) {
		l, err := c.List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, e := range l.Items {
			out = append(out, e.Name)
		}
		return out, nil
	}
}

// wantEvents reads len(want) events from w ("TYPE name"), checking the objects are of the
// watch's API (eventsAPI: events.k8s.io/v1; else core v1).
func wantEvents(t *testing.T, w watch.Interface, eventsAPI bool, want []string) {
	t.Helper()
	var got []string
	timeout := time.After(20 * time.Second)
	for len(got) < len(want) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch ended after %v, want %v", got, want)
			}
			switch o := ev.Object.(type) {
			case *corev1.Event:
				if !eventsAPI {
					got = append(got, string(ev.Type)+" "+o.Name)
					continue
				}
			case *eventsv1.Event:
				if eventsAPI {
					got = append(got, string(ev.Type)+" "+o.Name)
					continue
				}
			}
			t.Fatalf("watch event %s of %T", ev.Type, ev.Object)
		case <-timeout:
			t.Fatalf("watch: got %v, want %v", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("watch: got %v, want %v", got, want)
	}
}
