package apiserver

import (
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/kinds"
)

// scaleOf returns the autoscaling/v1 Scale of obj, an object of a scalable kind.
func scaleOf(k *kinds.Kind, obj runtime.Object) (*autoscalingv1.Scale, error) {
	if k.Strategy.Scale == nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("%s has no scale", k.Kind))
	}
	spec, status, selector, err := k.Strategy.Scale.Get(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	sc := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
			ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp()},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: selector},
	}
	sc.Kind, sc.APIVersion = "Scale", "autoscaling/v1"
	return sc, nil
}

// setReplicas sets the desired replicas of obj, an object of a scalable kind.
func setReplicas(k *kinds.Kind, obj runtime.Object, n int32) error {
	if k.Strategy.Scale == nil {
		return apierrors.NewInternalError(fmt.Errorf("%s has no scale", k.Kind))
	}
	if err := k.Strategy.Scale.Set(obj, n); err != nil {
		return apierrors.NewInternalError(err)
	}
	return nil
}
