// Package validation checks objects the way a Kubernetes API server does before it accepts them:
// names, required fields, immutable fields, label syntax, container names and ports, selectors that
// must match templates, sizes. It ports what a user meets first of Kubernetes'
// pkg/apis/*/validation, with the same field paths and, where reasonable, the same wording. It is
// pure: no log, no network. The errors are apimachinery field errors, which the API server turns
// into a 422 Invalid Status.
package validation

import (
	"fmt"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/logplane/logplane/kinds"
)

var metaPath = field.NewPath("metadata")

// Create validates obj, of kind k, about to be created (already defaulted, name generated).
func Create(k *kinds.Kind, obj runtime.Object) field.ErrorList {
	if isNil(obj) {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("validation: no object"))}
	}
	switch o := obj.(type) {
	case *corev1.Namespace:
		return namespaceCreate(k, o)
	case *corev1.Pod:
		return podCreate(k, o)
	case *corev1.Service:
		return serviceCreate(k, o)
	case *corev1.Endpoints:
		return endpointsCreate(k, o)
	case *corev1.ConfigMap:
		return configMapCreate(k, o)
	case *corev1.Secret:
		return secretCreate(k, o)
	case *corev1.Event:
		return eventCreate(k, o)
	case *eventsv1.Event:
		return eventsV1Create(k, o)
	case *corev1.Node:
		return nodeCreate(k, o)
	case *corev1.ServiceAccount:
		return objectMeta(k, &o.ObjectMeta, apivalidation.ValidateServiceAccountName)
	case *corev1.ReplicationController:
		return replicationControllerCreate(k, o)
	case *appsv1.Deployment:
		return deploymentCreate(k, o)
	case *appsv1.ReplicaSet:
		return replicaSetCreate(k, o)
	case *appsv1.DaemonSet:
		return daemonSetCreate(k, o)
	case *appsv1.StatefulSet:
		return statefulSetCreate(k, o)
	case *appsv1.ControllerRevision:
		return controllerRevisionCreate(k, o)
	case *batchv1.Job:
		return jobCreate(k, o)
	case *batchv1.CronJob:
		return cronJobCreate(k, o)
	case *coordinationv1.Lease:
		return leaseCreate(k, o)
	case *discoveryv1.EndpointSlice:
		return endpointSliceCreate(k, o)
	}
	return genericCreate(k, obj)
}

// Update validates obj replacing old, both of kind k (obj already defaulted).
func Update(k *kinds.Kind, obj, old runtime.Object) field.ErrorList {
	if errs := sameType(obj, old); errs != nil {
		return errs
	}
	switch o := obj.(type) {
	case *corev1.Namespace:
		return namespaceUpdate(k, o, old.(*corev1.Namespace))
	case *corev1.Pod:
		return podUpdate(k, o, old.(*corev1.Pod))
	case *corev1.Service:
		return serviceUpdate(k, o, old.(*corev1.Service))
	case *corev1.Endpoints:
		return append(metaUpdate(&o.ObjectMeta, &old.(*corev1.Endpoints).ObjectMeta), endpointSubsets(o)...)
	case *corev1.ConfigMap:
		return configMapUpdate(k, o, old.(*corev1.ConfigMap))
	case *corev1.Secret:
		return secretUpdate(k, o, old.(*corev1.Secret))
	case *corev1.Event:
		return append(metaUpdate(&o.ObjectMeta, &old.(*corev1.Event).ObjectMeta), legacyEvent(o)...)
	case *eventsv1.Event:
		return eventsV1Update(k, o, old.(*eventsv1.Event))
	case *corev1.Node:
		return nodeUpdate(k, o, old.(*corev1.Node))
	case *corev1.ServiceAccount:
		return metaUpdate(&o.ObjectMeta, &old.(*corev1.ServiceAccount).ObjectMeta)
	case *corev1.ReplicationController:
		return replicationControllerUpdate(k, o, old.(*corev1.ReplicationController))
	case *appsv1.Deployment:
		return deploymentUpdate(k, o, old.(*appsv1.Deployment))
	case *appsv1.ReplicaSet:
		return replicaSetUpdate(k, o, old.(*appsv1.ReplicaSet))
	case *appsv1.DaemonSet:
		return daemonSetUpdate(k, o, old.(*appsv1.DaemonSet))
	case *appsv1.StatefulSet:
		return statefulSetUpdate(k, o, old.(*appsv1.StatefulSet))
	case *appsv1.ControllerRevision:
		return controllerRevisionUpdate(k, o, old.(*appsv1.ControllerRevision))
	case *batchv1.Job:
		return jobUpdate(k, o, old.(*batchv1.Job))
	case *batchv1.CronJob:
		return cronJobUpdate(k, o, old.(*batchv1.CronJob))
	case *coordinationv1.Lease:
		return append(metaUpdate(&o.ObjectMeta, &old.(*coordinationv1.Lease).ObjectMeta), leaseSpec(&o.Spec, field.NewPath("spec"))...)
	case *discoveryv1.EndpointSlice:
		return endpointSliceUpdate(k, o, old.(*discoveryv1.EndpointSlice))
	}
	return genericUpdate(obj, old)
}

// UpdateStatus validates obj replacing old through the status subresource: the metadata rules of
// an update, and the status fields. Spec changes in obj are the caller's to discard (Kubernetes
// keeps the old spec on a status update).
func UpdateStatus(k *kinds.Kind, obj, old runtime.Object) field.ErrorList {
	if errs := sameType(obj, old); errs != nil {
		return errs
	}
	om, err := metaOf(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	oldm, err := metaOf(old)
	if err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	errs := metaUpdate(om, oldm)
	switch o := obj.(type) {
	case *corev1.Pod:
		errs = append(errs, podStatusUpdate(o, old.(*corev1.Pod))...)
	case *corev1.Node:
		errs = append(errs, nodeStatus(&o.Status, field.NewPath("status"))...)
	case *corev1.Namespace:
		errs = append(errs, namespaceStatusUpdate(o, old.(*corev1.Namespace))...)
	case *appsv1.Deployment:
		errs = append(errs, deploymentStatus(&o.Status, field.NewPath("status"))...)
		errs = append(errs, notDecremented(o.Status.CollisionCount, old.(*appsv1.Deployment).Status.CollisionCount)...)
	case *appsv1.ReplicaSet:
		errs = append(errs, replicaSetStatus(&o.Status, field.NewPath("status"))...)
	case *corev1.ReplicationController:
		errs = append(errs, rcStatus(&o.Status, field.NewPath("status"))...)
	case *appsv1.StatefulSet:
		errs = append(errs, statefulSetStatus(&o.Status, field.NewPath("status"))...)
		errs = append(errs, notDecremented(o.Status.CollisionCount, old.(*appsv1.StatefulSet).Status.CollisionCount)...)
	case *appsv1.DaemonSet:
		errs = append(errs, daemonSetStatus(&o.Status, field.NewPath("status"))...)
		errs = append(errs, notDecremented(o.Status.CollisionCount, old.(*appsv1.DaemonSet).Status.CollisionCount)...)
	case *batchv1.Job:
		errs = append(errs, jobStatus(&o.Status, field.NewPath("status"))...)
	}
	return errs
}

// notDecremented refuses a status collisionCount lower than before (or dropped).
func notDecremented(count, old *int32) field.ErrorList {
	if old == nil || (count != nil && *count >= *old) {
		return nil
	}
	var v int32
	if count != nil {
		v = *count
	}
	return field.ErrorList{field.Invalid(field.NewPath("status", "collisionCount"), v, "cannot be decremented")}
}

// Scale validates the spec.replicas of a scale subresource request.
func Scale(scale int32) field.ErrorList {
	return apivalidation.ValidateNonnegativeField(int64(scale), field.NewPath("spec", "replicas"))
}

func sameType(obj, old runtime.Object) field.ErrorList {
	if isNil(obj) || isNil(old) {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("validation: no object"))}
	}
	if fmt.Sprintf("%T", obj) != fmt.Sprintf("%T", old) {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("validation: update of a %T by a %T", old, obj))}
	}
	return nil
}

// isNil reports whether obj is nil or a nil pointer.
func isNil(obj runtime.Object) bool {
	if obj == nil {
		return true
	}
	v := reflect.ValueOf(obj)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

type objectMetaGetter interface{ GetObjectMeta() metav1.Object }

func metaOf(obj runtime.Object) (*metav1.ObjectMeta, error) {
	g, ok := obj.(objectMetaGetter)
	if !ok {
		return nil, fmt.Errorf("validation: %T has no object metadata", obj)
	}
	m, ok := g.GetObjectMeta().(*metav1.ObjectMeta)
	if !ok {
		return nil, fmt.Errorf("validation: %T has no object metadata", obj)
	}
	return m, nil
}

// genericCreate validates the metadata of kinds without rules of their own: names are DNS
// subdomains.
func genericCreate(k *kinds.Kind, obj runtime.Object) field.ErrorList {
	m, err := metaOf(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	return objectMeta(k, m, apivalidation.NameIsDNSSubdomain)
}

func genericUpdate(obj, old runtime.Object) field.ErrorList {
	m, err := metaOf(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	oldm, err := metaOf(old)
	if err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	return metaUpdate(m, oldm)
}

// objectMeta validates metadata on create: the name with nameFn, the namespace as the kind's
// scope wants it, labels, annotations (256 KiB in all), owner references and finalizers.
func objectMeta(k *kinds.Kind, m *metav1.ObjectMeta, nameFn apivalidation.ValidateNameFunc) field.ErrorList {
	namespaced := true
	if k != nil {
		namespaced = k.Namespaced
	}
	return apivalidation.ValidateObjectMeta(m, namespaced, nameFn, metaPath)
}

// metaUpdate validates metadata on update: name, namespace, uid and creationTimestamp unchanged,
// resourceVersion given, and the labels and annotations of the new object.
func metaUpdate(m, old *metav1.ObjectMeta) field.ErrorList {
	errs := apivalidation.ValidateObjectMetaUpdate(m, old, metaPath)
	return errs
}
