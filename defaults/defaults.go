// Package defaults fills in the fields Kubernetes defaults when an object is created or updated
// (restartPolicy, imagePullPolicy, strategy, ports' protocol, ...), so that objects read back as
// they would from a Kubernetes API server. It ports the v1 defaulting functions of Kubernetes
// (pkg/apis/*/v1/defaults.go), the normalisations its v1<->internal conversions make (a Secret's
// stringData folded into data, a Service's clusterIP and clusterIPs kept in step) and what its
// default admission plugins add to a Pod (service account, priority, default tolerations). It is
// pure: no log, no network.
package defaults

import (
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Apply sets the defaults of obj's kind in place. Objects of kinds without defaults are left alone.
// It is idempotent: applying it twice changes nothing the second time. For a Job, the selector
// and the job-name and controller-uid labels are generated only once metadata.uid is set (the
// API server assigns the uid before it calls Apply on create, as Kubernetes does in
// PrepareForCreate).
func Apply(obj runtime.Object) {
	if v := reflect.ValueOf(obj); !v.IsValid() || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		pod(o)
	case *corev1.Service:
		service(o)
	case *corev1.Endpoints:
		endpoints(o)
	case *corev1.Secret:
		secret(o)
	case *corev1.Namespace:
		namespace(o)
	case *corev1.Node:
		node(o)
	case *corev1.ReplicationController:
		replicationController(o)
	case *corev1.PodTemplate:
		podTemplateSpec(&o.Template)
	case *appsv1.Deployment:
		deployment(o)
	case *appsv1.ReplicaSet:
		replicaSet(o)
	case *appsv1.DaemonSet:
		daemonSet(o)
	case *appsv1.StatefulSet:
		statefulSet(o)
	case *batchv1.Job:
		job(o)
	case *batchv1.CronJob:
		cronJob(o)
	case *discoveryv1.EndpointSlice:
		endpointSlice(o)
	case *corev1.ConfigMap, *corev1.ServiceAccount, *corev1.Event, *eventsv1.Event,
		*appsv1.ControllerRevision, *coordinationv1.Lease:
		// Kubernetes defines no v1 defaults for these kinds.
	}
}
