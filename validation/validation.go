// Package validation checks objects the way a Kubernetes API server does before it accepts them:
// names, required fields, immutable fields, label syntax, container names and ports, selectors that
// must match templates, sizes. It ports what a user meets first of Kubernetes'
// pkg/apis/*/validation, with the same field paths and, where reasonable, the same wording. It
// exports, per kind, the validation of a create (Pod), of an update (PodUpdate) and of a status
// update (PodStatusUpdate), which the kind's strategy (kinds/builtin) wires in. It is pure: no
// log, no network. The errors are apimachinery field errors, which the API server turns into a
// 422 Invalid Status.
package validation

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var metaPath = field.NewPath("metadata")

// MetadataUpdate validates an update of the metadata alone: what a status update of a kind
// without status rules of its own checks.
func MetadataUpdate[T runtime.Object](obj, old T) field.ErrorList {
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

// ServiceAccount validates a new ServiceAccount: its metadata.
func ServiceAccount(sa *corev1.ServiceAccount) field.ErrorList {
	return objectMeta(&sa.ObjectMeta, apivalidation.ValidateServiceAccountName)
}

// EndpointsUpdate validates an update of Endpoints.
func EndpointsUpdate(e, old *corev1.Endpoints) field.ErrorList {
	return append(metaUpdate(&e.ObjectMeta, &old.ObjectMeta), endpointSubsets(e)...)
}

// EventUpdate validates an update of a core Event.
func EventUpdate(e, old *corev1.Event) field.ErrorList {
	return append(metaUpdate(&e.ObjectMeta, &old.ObjectMeta), legacyEvent(e)...)
}

// LeaseUpdate validates an update of a Lease.
func LeaseUpdate(l, old *coordinationv1.Lease) field.ErrorList {
	return append(metaUpdate(&l.ObjectMeta, &old.ObjectMeta), leaseSpec(&l.Spec, field.NewPath("spec"))...)
}

// PodTemplateSpec validates a pod template (any kind's): its labels, annotations and pod spec.
func PodTemplateSpec(t *corev1.PodTemplateSpec, fldPath *field.Path) field.ErrorList {
	return podTemplateSpec(t, fldPath)
}

// ObjectMeta validates the metadata of a new object: its name with nameFn, its namespace as the
// kind's scope wants it, labels, annotations (256 KiB in all), owner references and finalizers.
func ObjectMeta(m *metav1.ObjectMeta, namespaced bool, nameFn apivalidation.ValidateNameFunc) field.ErrorList {
	return apivalidation.ValidateObjectMeta(m, namespaced, nameFn, metaPath)
}

// ObjectMetaUpdate validates metadata on update: name, namespace, uid and creationTimestamp
// unchanged, resourceVersion given, and the labels and annotations of the new object.
func ObjectMetaUpdate(m, old *metav1.ObjectMeta) field.ErrorList { return metaUpdate(m, old) }

// PodStatusUpdate validates an update of a pod's status: metadata, and the status itself.
func PodStatusUpdate(p, old *corev1.Pod) field.ErrorList {
	return append(metaUpdate(&p.ObjectMeta, &old.ObjectMeta), podStatusUpdate(p, old)...)
}

// NodeStatusUpdate validates an update of a node's status.
func NodeStatusUpdate(n, old *corev1.Node) field.ErrorList {
	return append(metaUpdate(&n.ObjectMeta, &old.ObjectMeta), nodeStatus(&n.Status, field.NewPath("status"))...)
}

// NamespaceStatusUpdate validates an update of a namespace's status.
func NamespaceStatusUpdate(ns, old *corev1.Namespace) field.ErrorList {
	return append(metaUpdate(&ns.ObjectMeta, &old.ObjectMeta), namespaceStatusUpdate(ns, old)...)
}

// DeploymentStatusUpdate validates an update of a Deployment's status.
func DeploymentStatusUpdate(d, old *appsv1.Deployment) field.ErrorList {
	errs := metaUpdate(&d.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, deploymentStatus(&d.Status, field.NewPath("status"))...)
	return append(errs, notDecremented(d.Status.CollisionCount, old.Status.CollisionCount)...)
}

// ReplicaSetStatusUpdate validates an update of a ReplicaSet's status.
func ReplicaSetStatusUpdate(rs, old *appsv1.ReplicaSet) field.ErrorList {
	return append(metaUpdate(&rs.ObjectMeta, &old.ObjectMeta), replicaSetStatus(&rs.Status, field.NewPath("status"))...)
}

// ReplicationControllerStatusUpdate validates an update of a ReplicationController's status.
func ReplicationControllerStatusUpdate(rc, old *corev1.ReplicationController) field.ErrorList {
	return append(metaUpdate(&rc.ObjectMeta, &old.ObjectMeta), rcStatus(&rc.Status, field.NewPath("status"))...)
}

// StatefulSetStatusUpdate validates an update of a StatefulSet's status.
func StatefulSetStatusUpdate(ss, old *appsv1.StatefulSet) field.ErrorList {
	errs := metaUpdate(&ss.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, statefulSetStatus(&ss.Status, field.NewPath("status"))...)
	return append(errs, notDecremented(ss.Status.CollisionCount, old.Status.CollisionCount)...)
}

// DaemonSetStatusUpdate validates an update of a DaemonSet's status.
func DaemonSetStatusUpdate(ds, old *appsv1.DaemonSet) field.ErrorList {
	errs := metaUpdate(&ds.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, daemonSetStatus(&ds.Status, field.NewPath("status"))...)
	return append(errs, notDecremented(ds.Status.CollisionCount, old.Status.CollisionCount)...)
}

// JobStatusUpdate validates an update of a Job's status.
func JobStatusUpdate(j, old *batchv1.Job) field.ErrorList {
	return append(metaUpdate(&j.ObjectMeta, &old.ObjectMeta), jobStatus(&j.Status, field.NewPath("status"))...)
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

// objectMeta validates the metadata of a namespaced kind on create: the name with nameFn, the
// namespace, labels, annotations (256 KiB in all), owner references and finalizers.
func objectMeta(m *metav1.ObjectMeta, nameFn apivalidation.ValidateNameFunc) field.ErrorList {
	return apivalidation.ValidateObjectMeta(m, true, nameFn, metaPath)
}

// clusterObjectMeta is objectMeta for a cluster-scoped kind: no namespace.
func clusterObjectMeta(m *metav1.ObjectMeta, nameFn apivalidation.ValidateNameFunc) field.ErrorList {
	return apivalidation.ValidateObjectMeta(m, false, nameFn, metaPath)
}

// metaUpdate validates metadata on update: name, namespace, uid and creationTimestamp unchanged,
// resourceVersion given, and the labels and annotations of the new object.
func metaUpdate(m, old *metav1.ObjectMeta) field.ErrorList {
	return apivalidation.ValidateObjectMetaUpdate(m, old, metaPath)
}
