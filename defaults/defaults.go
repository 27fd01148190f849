// Package defaults fills in the fields Kubernetes defaults when an object is created or updated
// (restartPolicy, imagePullPolicy, strategy, ports' protocol, ...), so that objects read back as
// they would from a Kubernetes API server. It ports the v1 defaulting functions of Kubernetes
// (pkg/apis/*/v1/defaults.go), the normalisations its v1<->internal conversions make (a Secret's
// stringData folded into data, a Service's clusterIP and clusterIPs kept in step) and what its
// default admission plugins add to a Pod (service account, priority, default tolerations). It
// exports one function per kind (Pod, Service, Deployment, ...), which the kind's strategy
// (kinds/builtin) wires in. It is pure: no log, no network.
package defaults

import (
	corev1 "k8s.io/api/core/v1"
)

// PodTemplateSpec sets the defaults of a pod template (any kind's: a Deployment's, a Job's, a
// PodTemplate's): those of its pod spec.
func PodTemplateSpec(t *corev1.PodTemplateSpec) { podTemplateSpec(t) }
