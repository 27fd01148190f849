package registry

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
)

// The two shortcuts of the field manager (Go objects not validated again; a status write
// compares metadata and status only) record exactly the managed fields that the field manager
// records without them: for a pod's status and a Job's, with metadata changed as well, after a
// create and an update by other managers.
func TestManagedFieldsShortcutsRecordTheSame(t *testing.T) {
	cat := builtin.Catalog()
	plain := &Registry{catalog: cat, typeConverter: applyconfigurations.NewTypeConverter(kinds.Scheme), fieldManagers: map[fmKey]*managedfields.FieldManager{}}
	fast := &Registry{catalog: cat, typeConverter: newGoTypes(applyconfigurations.NewTypeConverter(kinds.Scheme)), fieldManagers: map[fmKey]*managedfields.FieldManager{}}
	kindOf := func(resource string) *kinds.Kind {
		for _, k := range cat.All() {
			if k.Resource == resource {
				return k
			}
		}
		t.Fatalf("no kind %s", resource)
		return nil
	}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox",
			Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
			Env:   []corev1.EnvVar{{Name: "A", Value: "1"}}}}},
	}
	job := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: "default"},
		Spec: batchv1.JobSpec{Completions: ptr.To[int32](3), Template: corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}},
	}
	for _, tc := range []struct {
		resource     string
		obj          runtime.Object
		spec, status func(runtime.Object)
	}{
		{"pods", pod,
			func(o runtime.Object) { o.(*corev1.Pod).Spec.Containers[0].Image = "busybox:2" },
			func(o runtime.Object) {
				p := o.(*corev1.Pod)
				p.Labels["phase"] = "running"
				p.Status.Phase = corev1.PodRunning
				p.Status.PodIP = "10.0.0.1"
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Ready: true, Image: "busybox:2"}}
			}},
		{"jobs", job,
			func(o runtime.Object) { o.(*batchv1.Job).Spec.Parallelism = ptr.To[int32](2) },
			func(o runtime.Object) {
				j := o.(*batchv1.Job)
				j.Annotations = map[string]string{"batch.logplane.io/counted-through": "7"}
				j.Status.Active, j.Status.Succeeded = 1, 2
				j.Status.StartTime = &metav1.Time{Time: time.Unix(1, 0)}
			}},
	} {
		k := kindOf(tc.resource)
		steps := func(r *Registry) []metav1.ManagedFieldsEntry {
			fm, err := r.FieldManager(k, "")
			if err != nil {
				t.Fatal(err)
			}
			created := fm.UpdateNoErrors(k.New(), tc.obj.DeepCopyObject(), "creator")
			updated := created.DeepCopyObject()
			tc.spec(updated)
			updated = fm.UpdateNoErrors(created, updated, "editor")
			next := updated.DeepCopyObject()
			tc.status(next)
			out, err := r.updateManagedFields(k, "status", updated, next, "kubelet")
			if err != nil {
				t.Fatal(err)
			}
			m, err := meta.Accessor(out)
			if err != nil {
				t.Fatal(err)
			}
			mf := m.GetManagedFields()
			for i := range mf {
				mf[i].Time = nil
			}
			return mf
		}
		// The plain registry's field manager compares everything.
		want := steps(&Registry{catalog: cat, typeConverter: plain.typeConverter, fieldManagers: map[fmKey]*managedfields.FieldManager{}, unabridged: true})
		got := steps(fast)
		if len(want) != 3 || !apiequality.Semantic.DeepEqual(want, got) {
			t.Errorf("%s: managed fields\n got %+v\nwant %+v", tc.resource, got, want)
		}
	}
}
