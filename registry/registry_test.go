package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/registry"
)

type env struct {
	log   *eventlog.Log
	store *projections.Store
	reg   *registry.Registry
	cat   *kinds.Catalog
	now   time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, eventlogtest.Open(t))
}

func newEnvWith(t testing.TB, l *eventlog.Log) *env {
	t.Helper()
	e := &env{log: l, cat: builtin.Catalog(), now: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)}
	e.store = projections.New(e.cat, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.store.Run(ctx, e.log) // ends with the test
	}()
	t.Cleanup(func() { cancel(); <-done })
	reg, err := registry.New(registry.Config{Log: e.log, Store: e.store, Catalog: e.cat, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	e.reg = reg
	for _, ns := range []string{"default", "other"} {
		if _, err := reg.Create(t.Context(), e.kind("namespaces"), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, registry.Request{Actor: registry.System("test")}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) kind(resource string) *kinds.Kind {
	for _, k := range e.cat.All() {
		if k.Resource == resource && k.Group == "" {
			return k
		}
	}
	panic(resource)
}

func (e *env) last(t *testing.T, resource, ns, name string) eventlog.Record {
	t.Helper()
	h, err := e.log.History(t.Context(), eventlog.Key{Resource: resource, Namespace: ns, Name: name})
	if err != nil || len(h) == 0 {
		t.Fatalf("history of %s/%s: %v (%d)", ns, name, err, len(h))
	}
	return h[len(h)-1]
}

var alice = registry.Request{Actor: registry.User("alice")}

func pod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

func TestEnvelope(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	obj, err := e.reg.Create(ctx, e.kind("pods"), pod("p", ""), registry.Request{Actor: registry.Reconciler("replicaset"), Cause: 7})
	if err != nil {
		t.Fatal(err)
	}
	p := obj.(*corev1.Pod)
	if p.UID == "" || p.Generation != 1 || p.Status.Phase != corev1.PodPending || p.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Fatalf("created pod: uid %q gen %d phase %q restartPolicy %q", p.UID, p.Generation, p.Status.Phase, p.Spec.RestartPolicy)
	}
	if len(p.ManagedFields) != 1 || p.ManagedFields[0].Manager != "replicaset" {
		t.Fatalf("managed fields %+v", p.ManagedFields)
	}
	rec := e.last(t, "pods", "default", "p")
	ev := rec.Event
	if ev.GetType() != eventv1.ChangeType_CHANGE_TYPE_ADDED || ev.GetReason() != "create" || ev.GetCause() != 7 ||
		ev.GetActor().GetKind() != eventv1.ActorKind_ACTOR_KIND_RECONCILER || ev.GetActor().GetName() != "replicaset" ||
		ev.GetLabels()["app"] != "web" || ev.GetFields()["status.phase"] != "Pending" || ev.GetRef().GetUid() != string(p.UID) ||
		ev.GetEncoding() != eventv1.Encoding_ENCODING_PROTOBUF {
		t.Fatalf("envelope %v", ev)
	}

	// Status through the main resource is ignored; through the status subresource, kept.
	p.Status.Phase = corev1.PodRunning
	p.Labels["v"] = "2"
	up, err := e.reg.Update(ctx, e.kind("pods"), p, alice)
	if err != nil {
		t.Fatal(err)
	}
	if up.(*corev1.Pod).Status.Phase != corev1.PodPending || up.(*corev1.Pod).Generation != 1 {
		t.Fatalf("main update changed status or generation: %+v", up.(*corev1.Pod).Status)
	}
	if r := e.last(t, "pods", "default", "p").Event.GetReason(); r != "metadata" {
		t.Fatalf("reason of a label change: %q", r)
	}
	st := up.DeepCopyObject().(*corev1.Pod)
	st.Status.Phase = corev1.PodRunning
	st.Spec.Containers[0].Image = "ignored"
	st2, err := e.reg.UpdateStatus(ctx, e.kind("pods"), st, registry.Request{Actor: registry.Node("n1"), Cause: 9})
	if err != nil {
		t.Fatal(err)
	}
	if st2.(*corev1.Pod).Status.Phase != corev1.PodRunning || st2.(*corev1.Pod).Spec.Containers[0].Image != "busybox" {
		t.Fatalf("status update: %+v", st2)
	}
	last := e.last(t, "pods", "default", "p").Event
	if last.GetReason() != "status" || last.GetActor().GetKind() != eventv1.ActorKind_ACTOR_KIND_NODE || last.GetFields()["status.phase"] != "Running" {
		t.Fatalf("status envelope %v", last)
	}
	// A spec change bumps the generation.
	sp := st2.DeepCopyObject().(*corev1.Pod)
	sp.Spec.Containers[0].Image = "busybox:2"
	sp2, err := e.reg.Update(ctx, e.kind("pods"), sp, alice)
	if err != nil {
		t.Fatal(err)
	}
	if sp2.(*corev1.Pod).Generation != 2 || e.last(t, "pods", "default", "p").Event.GetReason() != "spec" {
		t.Fatalf("spec change: generation %d", sp2.(*corev1.Pod).Generation)
	}
	// Writing the same object again writes nothing.
	before := e.last(t, "pods", "default", "p").Seq
	same, err := e.reg.Update(ctx, e.kind("pods"), sp2.DeepCopyObject(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if e.last(t, "pods", "default", "p").Seq != before || same.(*corev1.Pod).ResourceVersion != sp2.(*corev1.Pod).ResourceVersion {
		t.Fatal("a no-op update was written")
	}
	// Stale resourceVersion: 409 and nothing written.
	if _, err := e.reg.Update(ctx, e.kind("pods"), sp.DeepCopyObject(), alice); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v", err)
	}
	// Dry run: nothing written.
	dry := sp2.DeepCopyObject().(*corev1.Pod)
	dry.Labels["dry"] = "1"
	if _, err := e.reg.Update(ctx, e.kind("pods"), dry, registry.Request{Actor: registry.User("alice"), DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if e.last(t, "pods", "default", "p").Seq != before {
		t.Fatal("a dry run was written")
	}
}

func TestCreateChecks(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	gen := pod("", "")
	gen.GenerateName = "web-"
	obj, err := e.reg.Create(ctx, e.kind("pods"), gen, alice)
	if err != nil {
		t.Fatal(err)
	}
	if n := obj.(*corev1.Pod).Name; len(n) != len("web-")+5 {
		t.Fatalf("generated name %q", n)
	}
	bad := pod("Bad_Name", "")
	if _, err := e.reg.Create(ctx, e.kind("pods"), bad, alice); !apierrors.IsInvalid(err) {
		t.Fatalf("bad name: %v", err)
	}
	elsewhere := pod("p", "")
	elsewhere.Namespace = "missing"
	if _, err := e.reg.Create(ctx, e.kind("pods"), elsewhere, alice); !apierrors.IsNotFound(err) {
		t.Fatalf("missing namespace: %v", err)
	}
	withRV := pod("q", "")
	withRV.ResourceVersion = "5"
	if _, err := e.reg.Create(ctx, e.kind("pods"), withRV, alice); !apierrors.IsBadRequest(err) {
		t.Fatalf("create with a resourceVersion: %v", err)
	}
	if _, err := e.reg.Create(ctx, e.kind("pods"), pod("dup", ""), alice); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Create(ctx, e.kind("pods"), pod("dup", ""), alice); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestGracefulPodDeletion(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	pods := e.kind("pods")
	// An unbound pod goes at once.
	if _, err := e.reg.Create(ctx, pods, pod("unbound", ""), alice); err != nil {
		t.Fatal(err)
	}
	if _, gone, err := e.reg.Delete(ctx, pods, "default", "unbound", metav1.DeleteOptions{}, alice); err != nil || !gone {
		t.Fatalf("unbound: gone %v, %v", gone, err)
	}
	// A bound pod is marked, with its grace period, and removed by the node later.
	bound := pod("bound", "n1")
	bound.Spec.TerminationGracePeriodSeconds = ptr.To[int64](20)
	if _, err := e.reg.Create(ctx, pods, bound, alice); err != nil {
		t.Fatal(err)
	}
	obj, gone, err := e.reg.Delete(ctx, pods, "default", "bound", metav1.DeleteOptions{}, alice)
	if err != nil || gone {
		t.Fatalf("bound: gone %v, %v", gone, err)
	}
	p := obj.(*corev1.Pod)
	if p.DeletionTimestamp == nil || !p.DeletionTimestamp.Time.Equal(e.now.Add(20*time.Second)) || *p.DeletionGracePeriodSeconds != 20 {
		t.Fatalf("deletion %v grace %v", p.DeletionTimestamp, p.DeletionGracePeriodSeconds)
	}
	if ev := e.last(t, "pods", "default", "bound").Event; ev.GetType() != eventv1.ChangeType_CHANGE_TYPE_MODIFIED || ev.GetReason() != "delete" {
		t.Fatalf("graceful deletion event %v", ev)
	}
	// Deleting again with the default grace changes nothing; the node's grace 0 removes it.
	seq := e.last(t, "pods", "default", "bound").Seq
	if _, gone, err := e.reg.Delete(ctx, pods, "default", "bound", metav1.DeleteOptions{}, alice); err != nil || gone || e.last(t, "pods", "default", "bound").Seq != seq {
		t.Fatalf("second delete: gone %v, %v", gone, err)
	}
	if _, gone, err := e.reg.Delete(ctx, pods, "default", "bound", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, registry.Request{Actor: registry.Node("n1")}); err != nil || !gone {
		t.Fatalf("node's delete: gone %v, %v", gone, err)
	}
	if ev := e.last(t, "pods", "default", "bound").Event; ev.GetType() != eventv1.ChangeType_CHANGE_TYPE_DELETED || ev.GetActor().GetName() != "n1" {
		t.Fatalf("tombstone %v", ev)
	}
}

func TestFinalizersAndPreconditions(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	cms := e.kind("configmaps")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "f", Namespace: "default", Finalizers: []string{"example.com/hold"}}}
	obj, err := e.reg.Create(ctx, cms, cm, alice)
	if err != nil {
		t.Fatal(err)
	}
	uid := obj.(*corev1.ConfigMap).UID
	if _, _, err := e.reg.Delete(ctx, cms, "default", "f", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr.To(types.UID("other"))}}, alice); !apierrors.IsConflict(err) {
		t.Fatalf("uid precondition: %v", err)
	}
	orphan := metav1.DeletePropagationOrphan
	obj, gone, err := e.reg.Delete(ctx, cms, "default", "f", metav1.DeleteOptions{PropagationPolicy: &orphan, Preconditions: &metav1.Preconditions{UID: &uid}}, alice)
	if err != nil || gone {
		t.Fatalf("delete with a finalizer: gone %v, %v", gone, err)
	}
	held := obj.(*corev1.ConfigMap)
	if held.DeletionTimestamp == nil || len(held.Finalizers) != 2 || held.Finalizers[1] != metav1.FinalizerOrphanDependents {
		t.Fatalf("held: %v %v", held.DeletionTimestamp, held.Finalizers)
	}
	// Removing the finalizers deletes it.
	_, err = e.reg.Modify(ctx, cms, "default", "f", alice, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		c := cur.(*corev1.ConfigMap)
		c.Finalizers = nil
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev := e.last(t, "configmaps", "default", "f").Event; ev.GetType() != eventv1.ChangeType_CHANGE_TYPE_DELETED || ev.GetReason() != "finalize" {
		t.Fatalf("after the last finalizer: %v", ev)
	}
	if _, err := e.reg.Get(ctx, cms, "default", "f", registry.ReadOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get: %v", err)
	}
}

func TestReadsInThePast(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	cms := e.kind("configmaps")
	a, err := e.reg.Create(ctx, cms, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "default"}, Data: map[string]string{"v": "1"}}, alice)
	if err != nil {
		t.Fatal(err)
	}
	rv1, _ := registry.ParseResourceVersion(a.(*corev1.ConfigMap).ResourceVersion)
	a.(*corev1.ConfigMap).Data["v"] = "2"
	if _, err := e.reg.Update(ctx, cms, a, alice); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.reg.Delete(ctx, cms, "default", "a", metav1.DeleteOptions{}, alice); err != nil {
		t.Fatal(err)
	}
	old, err := e.reg.Get(ctx, cms, "default", "a", registry.ReadOptions{At: rv1})
	if err != nil || old.(*corev1.ConfigMap).Data["v"] != "1" {
		t.Fatalf("get at %d: %v %v", rv1, err, old)
	}
	objs, rv, err := e.reg.List(ctx, cms, registry.Query{Namespace: "default"}, registry.ReadOptions{At: rv1})
	if err != nil || len(objs) != 1 || rv != rv1 {
		t.Fatalf("list at %d: %v, %d objects at %d", rv1, err, len(objs), rv)
	}
	objs, _, err = e.reg.List(ctx, cms, registry.Query{Namespace: "default"}, registry.ReadOptions{})
	if err != nil || len(objs) != 0 {
		t.Fatalf("list now: %v, %d objects", err, len(objs))
	}
	hist, err := e.reg.History(ctx, cms, "default", "a")
	if err != nil || len(hist) != 3 || !hist[2].Tombstone() {
		t.Fatalf("history: %v, %d", err, len(hist))
	}
	audit, err := e.reg.Audit(ctx, registry.AuditQuery{Actor: "alice", Resource: schema.GroupResource{Resource: "configmaps"}})
	if err != nil || len(audit) != 3 {
		t.Fatalf("audit: %v, %d", err, len(audit))
	}
	// A read at a resourceVersion the log has not reached times out as Kubernetes does.
	_, err = e.reg.Get(ctx, cms, "default", "a", registry.ReadOptions{ResourceVersion: "999999"})
	if !apierrors.IsTimeout(err) || !errors.As(err, new(apierrors.APIStatus)) {
		t.Fatalf("read at a future resourceVersion: %v", err)
	}
}

func TestTerminatingNamespace(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	obj, gone, err := e.reg.Delete(ctx, e.kind("namespaces"), "", "other", metav1.DeleteOptions{}, alice)
	if err != nil || gone || obj.(*corev1.Namespace).Status.Phase != corev1.NamespaceTerminating {
		t.Fatalf("delete namespace: gone %v, %v, %+v", gone, err, obj)
	}
	p := pod("late", "")
	p.Namespace = "other"
	if _, err := e.reg.Create(ctx, e.kind("pods"), p, alice); !apierrors.IsForbidden(err) {
		t.Fatalf("create in a terminating namespace: %v", err)
	}
	// A label change does not remove a namespace whose spec finalizer is still there.
	_, err = e.reg.Modify(ctx, e.kind("namespaces"), "", "other", alice, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		ns := cur.(*corev1.Namespace)
		ns.Labels = map[string]string{"x": "y"}
		return ns, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Get(ctx, e.kind("namespaces"), "", "other", registry.ReadOptions{}); err != nil {
		t.Fatalf("namespace went away early: %v", err)
	}
}

func TestSeqAt(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	before := time.Now()
	var seqs []uint64
	var between []time.Time
	for i := 0; i < 5; i++ {
		time.Sleep(20 * time.Millisecond)
		obj, err := e.reg.Create(ctx, e.kind("configmaps"), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: string(rune('a' + i)), Namespace: "default"}}, alice)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := registry.ParseResourceVersion(obj.(*corev1.ConfigMap).ResourceVersion)
		seqs = append(seqs, n)
		time.Sleep(20 * time.Millisecond)
		between = append(between, time.Now())
	}
	for i, at := range between {
		got, err := e.reg.SeqAt(ctx, at)
		if err != nil || got != seqs[i] {
			t.Fatalf("SeqAt(after create %d) = %d, %v; want %d", i, got, err, seqs[i])
		}
	}
	if got, err := e.reg.SeqAt(ctx, before.Add(-time.Hour)); err != nil || got != 0 {
		t.Fatalf("SeqAt(before the log) = %d, %v", got, err)
	}
	recs, err := e.reg.Audit(ctx, registry.AuditQuery{Since: between[2], Resource: schema.GroupResource{Resource: "configmaps"}})
	if err != nil || len(recs) != 2 || recs[0].Seq != seqs[3] || recs[1].Seq != seqs[4] {
		t.Fatalf("audit since the third create: %v, %d records", err, len(recs))
	}
}

// A Job's counted-through mark is the Job reconciler's: a create drops it, an update of the Job
// (replacing it without the annotation, or with another value) keeps it as the status wrote it.
func TestJobCountedThroughIsKept(t *testing.T) {
	e := newEnv(t)
	var jobs *kinds.Kind
	for _, k := range e.cat.All() {
		if k.Resource == "jobs" {
			jobs = k
		}
	}
	const mark = builtin.JobCountedThroughAnnotation
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: "default", Annotations: map[string]string{mark: "99", "other": "x"}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}},
	}
	out, err := e.reg.Create(t.Context(), jobs, j, alice)
	if err != nil {
		t.Fatal(err)
	}
	created := out.(*batchv1.Job)
	if _, ok := created.Annotations[mark]; ok || created.Annotations["other"] != "x" {
		t.Fatalf("created with annotations %v", created.Annotations)
	}
	st := created.DeepCopy()
	st.Annotations[mark] = "7"
	st.Status.Succeeded = 1
	if _, err := e.reg.UpdateStatus(t.Context(), jobs, st, registry.Request{Actor: registry.Reconciler("job")}); err != nil {
		t.Fatal(err)
	}
	for _, change := range []func(*batchv1.Job){
		func(j *batchv1.Job) { delete(j.Annotations, mark) },
		func(j *batchv1.Job) { j.Annotations[mark] = "1000" },
		func(j *batchv1.Job) { j.Annotations = nil },
	} {
		cur, err := e.reg.Get(t.Context(), jobs, "default", "j", registry.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		next := cur.(*batchv1.Job).DeepCopy()
		change(next)
		out, err := e.reg.Update(t.Context(), jobs, next, alice)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.(*batchv1.Job).Annotations[mark]; got != "7" {
			t.Errorf("after an update of the Job, %s=%q, want the status's 7", mark, got)
		}
	}
}
