package replicaset

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/ownerref"
)

// setKind is what differs between ReplicaSets and ReplicationControllers: the reconcilers work
// on the ReplicaSet view of either.
type setKind struct {
	name   string // of the reconciler
	k      *kinds.Kind
	events EventRecorder
	// view returns the ReplicaSet view of an object of the kind. It shares the object's maps:
	// read it, do not change it.
	view func(runtime.Object) (*appsv1.ReplicaSet, error)
	// setStatus writes a ReplicaSet status into an object of the kind.
	setStatus func(runtime.Object, appsv1.ReplicaSetStatus) error
}

func replicaSetKind(k *kinds.Kind, events EventRecorder) *setKind {
	return &setKind{
		name: ReplicaSetName, k: k, events: events,
		view: func(obj runtime.Object) (*appsv1.ReplicaSet, error) {
			rs, ok := obj.(*appsv1.ReplicaSet)
			if !ok {
				return nil, fmt.Errorf("replicaset: replicasets decode to %T", obj)
			}
			return rs, nil
		},
		setStatus: func(obj runtime.Object, st appsv1.ReplicaSetStatus) error {
			rs, ok := obj.(*appsv1.ReplicaSet)
			if !ok {
				return fmt.Errorf("replicaset: replicasets decode to %T", obj)
			}
			rs.Status = st
			return nil
		},
	}
}

func controllerKind(k *kinds.Kind, events EventRecorder) *setKind {
	return &setKind{
		name: ReplicationControllerName, k: k, events: events,
		view: func(obj runtime.Object) (*appsv1.ReplicaSet, error) {
			rc, ok := obj.(*corev1.ReplicationController)
			if !ok {
				return nil, fmt.Errorf("replicaset: replicationcontrollers decode to %T", obj)
			}
			rs := &appsv1.ReplicaSet{
				TypeMeta:   rc.TypeMeta,
				ObjectMeta: rc.ObjectMeta,
				Spec: appsv1.ReplicaSetSpec{
					Replicas:        rc.Spec.Replicas,
					MinReadySeconds: rc.Spec.MinReadySeconds,
					Selector:        &metav1.LabelSelector{MatchLabels: rc.Spec.Selector},
				},
				Status: appsv1.ReplicaSetStatus{
					Replicas: rc.Status.Replicas, FullyLabeledReplicas: rc.Status.FullyLabeledReplicas,
					ReadyReplicas: rc.Status.ReadyReplicas, AvailableReplicas: rc.Status.AvailableReplicas,
					ObservedGeneration: rc.Status.ObservedGeneration,
				},
			}
			if rc.Spec.Template != nil {
				rs.Spec.Template = *rc.Spec.Template
			}
			for _, c := range rc.Status.Conditions {
				rs.Status.Conditions = append(rs.Status.Conditions, appsv1.ReplicaSetCondition{
					Type: appsv1.ReplicaSetConditionType(c.Type), Status: c.Status,
					LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
				})
			}
			return rs, nil
		},
		setStatus: func(obj runtime.Object, st appsv1.ReplicaSetStatus) error {
			rc, ok := obj.(*corev1.ReplicationController)
			if !ok {
				return fmt.Errorf("replicaset: replicationcontrollers decode to %T", obj)
			}
			rc.Status = corev1.ReplicationControllerStatus{
				Replicas: st.Replicas, FullyLabeledReplicas: st.FullyLabeledReplicas,
				ReadyReplicas: st.ReadyReplicas, AvailableReplicas: st.AvailableReplicas,
				ObservedGeneration: st.ObservedGeneration,
			}
			for _, c := range st.Conditions {
				rc.Status.Conditions = append(rc.Status.Conditions, corev1.ReplicationControllerCondition{
					Type: corev1.ReplicationControllerConditionType(c.Type), Status: c.Status,
					LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
				})
			}
			return nil
		},
	}
}

// ownerKey returns the key of the set of this kind that ref names, nil if ref names none.
func (kd *setKind) ownerKey(ns string, ref *metav1.OwnerReference) *eventlog.Key {
	if ref == nil || ref.Kind != kd.k.Kind {
		return nil
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != kd.k.Group {
		return nil
	}
	return &eventlog.Key{Group: kd.k.Group, Resource: kd.k.Resource, Namespace: ns, Name: ref.Name}
}

// controllerRef is the owner reference a set puts on the pods it controls.
func (kd *setKind) controllerRef(rs *appsv1.ReplicaSet) metav1.OwnerReference {
	return ownerref.Controller(kd.k.GroupVersion().String(), kd.k.Kind, rs.Name, rs.UID)
}
