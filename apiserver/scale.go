package apiserver

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// scaleOf returns the autoscaling/v1 Scale of a scalable object.
func scaleOf(obj runtime.Object) (*autoscalingv1.Scale, error) {
	sc := &autoscalingv1.Scale{}
	sc.Kind, sc.APIVersion = "Scale", "autoscaling/v1"
	var om metav1.ObjectMeta
	switch o := obj.(type) {
	case *appsv1.Deployment:
		om, sc.Spec.Replicas, sc.Status.Replicas = o.ObjectMeta, deref(o.Spec.Replicas), o.Status.Replicas
		sc.Status.Selector = selectorString(o.Spec.Selector)
	case *appsv1.ReplicaSet:
		om, sc.Spec.Replicas, sc.Status.Replicas = o.ObjectMeta, deref(o.Spec.Replicas), o.Status.Replicas
		sc.Status.Selector = selectorString(o.Spec.Selector)
	case *appsv1.StatefulSet:
		om, sc.Spec.Replicas, sc.Status.Replicas = o.ObjectMeta, deref(o.Spec.Replicas), o.Status.Replicas
		sc.Status.Selector = selectorString(o.Spec.Selector)
	case *corev1.ReplicationController:
		om, sc.Spec.Replicas, sc.Status.Replicas = o.ObjectMeta, deref(o.Spec.Replicas), o.Status.Replicas
		sc.Status.Selector = labels.SelectorFromSet(o.Spec.Selector).String()
	default:
		return nil, apierrors.NewInternalError(fmt.Errorf("%T has no scale", obj))
	}
	sc.ObjectMeta = metav1.ObjectMeta{Name: om.Name, Namespace: om.Namespace, UID: om.UID,
		ResourceVersion: om.ResourceVersion, CreationTimestamp: om.CreationTimestamp}
	return sc, nil
}

// setReplicas sets the desired replicas of a scalable object.
func setReplicas(obj runtime.Object, n int32) error {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o.Spec.Replicas = &n
	case *appsv1.ReplicaSet:
		o.Spec.Replicas = &n
	case *appsv1.StatefulSet:
		o.Spec.Replicas = &n
	case *corev1.ReplicationController:
		o.Spec.Replicas = &n
	default:
		return apierrors.NewInternalError(fmt.Errorf("%T has no scale", obj))
	}
	return nil
}

func deref(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func selectorString(ls *metav1.LabelSelector) string {
	if ls == nil {
		return ""
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return ""
	}
	return sel.String()
}
