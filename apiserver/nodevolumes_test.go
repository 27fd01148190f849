package apiserver_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/registry"
)

// TestNodeWritesOnlyItsLocalVolumes: with its own log credential, node n1 may create the
// volume pvc-<uid> of a claim the scheduler selected it for (provisioned by logplane.io/local,
// pre-bound to the claim, with a node affinity to n1), grow and delete it; it may not create a
// volume for a claim selected for another node, one with an affinity to another node, one
// under another name, nor touch a volume it did not provision.
func TestNodeWritesOnlyItsLocalVolumes(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{LogListen: "127.0.0.1:-1", Durability: eventlog.Lazy})
	ctx := t.Context()
	admin := s.API.Registry()
	pvKind, _ := admin.Catalog().ByGroupResource(schema.GroupResource{Resource: "persistentvolumes"})
	pvcKind, _ := admin.Catalog().ByGroupResource(schema.GroupResource{Resource: "persistentvolumeclaims"})
	asAdmin := registry.Request{Actor: registry.User("admin")}
	claim := func(name, node string) *corev1.PersistentVolumeClaim {
		c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			Annotations: map[string]string{"volume.kubernetes.io/selected-node": node}},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
		out, err := admin.Create(ctx, pvcKind, c, asAdmin)
		if err != nil {
			t.Fatal(err)
		}
		return out.(*corev1.PersistentVolumeClaim)
	}
	volume := func(name string, c *corev1.PersistentVolumeClaim, node string) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": "logplane.io/local"}},
			Spec: corev1.PersistentVolumeSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				ClaimRef:               &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: c.Namespace, Name: c.Name, UID: c.UID},
				PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/var/lib/logplane/volumes/" + name}},
				NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}}}}}
	}
	mine, theirs := claim("mine", "n1"), claim("theirs", "n2")
	handmade := volume("handmade", mine, "n1")
	delete(handmade.Annotations, "pv.kubernetes.io/provisioned-by")
	if _, err := admin.Create(ctx, pvKind, handmade, asAdmin); err != nil {
		t.Fatal(err)
	}

	// n1's agent: its credential, the projection of its feed, its registry.
	runNodeFeeds(t, s)
	_, _, reg := nodeView(t, s, "n1")
	if _, err := reg.ConsistentRead(ctx); err != nil {
		t.Fatal(err)
	}
	asNode := registry.Request{Actor: registry.Node("n1")}
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want 403 Forbidden", what, err)
		}
	}
	_, err := reg.Create(ctx, pvKind, volume("pvc-"+string(theirs.UID), theirs, "n1"), asNode)
	forbidden("a volume for a claim selected for n2", err)
	_, err = reg.Create(ctx, pvKind, volume("pvc-"+string(mine.UID), mine, "n2"), asNode)
	forbidden("a volume with an affinity to n2", err)
	_, err = reg.Create(ctx, pvKind, volume("other-name", mine, "n1"), asNode)
	forbidden("a volume under another name", err)
	// A volume it did not provision is not in its feed at all.
	if _, _, err = reg.Delete(ctx, pvKind, "", "handmade", metav1.DeleteOptions{}, asNode); !apierrors.IsForbidden(err) && !apierrors.IsNotFound(err) {
		t.Errorf("deleting a volume it did not provision: %v, want 403 or 404", err)
	}
	if _, err := admin.Get(ctx, pvKind, "", "handmade", registry.ReadOptions{}); err != nil {
		t.Errorf("the volume it did not provision: %v", err)
	}
	for _, name := range []string{"pvc-" + string(theirs.UID), "other-name"} {
		if _, err := admin.Get(ctx, pvKind, "", name, registry.ReadOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("volume %s exists after a refused create: %v", name, err)
		}
	}

	// Its own: created, grown, deleted.
	name := "pvc-" + string(mine.UID)
	if _, err := reg.Create(ctx, pvKind, volume(name, mine, "n1"), asNode); err != nil {
		t.Fatalf("the volume of a claim selected for it: %v", err)
	}
	if _, err := reg.ConsistentRead(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := reg.Get(ctx, pvKind, "", name, registry.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	grown := got.(*corev1.PersistentVolume).DeepCopy()
	grown.Spec.Capacity[corev1.ResourceStorage] = resource.MustParse("2Gi")
	if _, err := reg.Update(ctx, pvKind, grown, asNode); err != nil {
		t.Errorf("growing its volume: %v", err)
	}
	if _, _, err := reg.Delete(ctx, pvKind, "", name, metav1.DeleteOptions{}, asNode); err != nil {
		t.Errorf("deleting its volume: %v", err)
	}
}
