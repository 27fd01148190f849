package kinds

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var all = []string{"all"}

func gvk(group, version, kind string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: group, Version: version, Kind: kind}
}

// Builtin returns the catalog of the built-in kinds logplane serves.
func Builtin() *Catalog {
	c, err := NewCatalog(builtinKinds()...)
	if err != nil {
		panic(err) // the list below is fixed; a test checks it
	}
	return c
}

func builtinKinds() []*Kind {
	ks := []*Kind{
		{GroupVersionKind: gvk("", "v1", "Namespace"), Resource: "namespaces", Singular: "namespace", ShortNames: []string{"ns"},
			Subresources: []string{"status", "finalize"}, fields: namespaceFields,
			Verbs: []string{"create", "delete", "get", "list", "patch", "update", "watch"}},
		{GroupVersionKind: gvk("", "v1", "Pod"), Resource: "pods", Singular: "pod", ShortNames: []string{"po"}, Categories: all,
			Namespaced: true, Subresources: []string{"status", "binding", "eviction", "log", "exec", "attach", "portforward"}, fields: podFields,
			StatusResetsMetadata: []string{"ownerReferences"}},
		{GroupVersionKind: gvk("", "v1", "Service"), Resource: "services", Singular: "service", ShortNames: []string{"svc"}, Categories: all,
			Namespaced: true, Subresources: []string{"status", "proxy"}, fields: serviceFields},
		{GroupVersionKind: gvk("", "v1", "Endpoints"), Resource: "endpoints", Singular: "endpoints", ShortNames: []string{"ep"},
			Namespaced: true},
		{GroupVersionKind: gvk("", "v1", "ConfigMap"), Resource: "configmaps", Singular: "configmap", ShortNames: []string{"cm"},
			Namespaced: true},
		{GroupVersionKind: gvk("", "v1", "Secret"), Resource: "secrets", Singular: "secret", Namespaced: true, fields: secretFields},
		{GroupVersionKind: gvk("", "v1", "Event"), Resource: "events", Singular: "event", ShortNames: []string{"ev"},
			Namespaced: true, fields: eventFields},
		{GroupVersionKind: gvk("", "v1", "Node"), Resource: "nodes", Singular: "node", ShortNames: []string{"no"},
			Subresources: []string{"status", "proxy"}, fields: nodeFields},
		{GroupVersionKind: gvk("", "v1", "ServiceAccount"), Resource: "serviceaccounts", Singular: "serviceaccount", ShortNames: []string{"sa"},
			Namespaced: true, Subresources: []string{"token"}},
		{GroupVersionKind: gvk("", "v1", "ReplicationController"), Resource: "replicationcontrollers", Singular: "replicationcontroller",
			ShortNames: []string{"rc"}, Categories: all, Namespaced: true, Subresources: []string{"status", "scale"}, fields: rcFields},
		{GroupVersionKind: gvk("apps", "v1", "Deployment"), Resource: "deployments", Singular: "deployment", ShortNames: []string{"deploy"},
			Categories: all, Namespaced: true, Subresources: []string{"status", "scale"}, StatusResetsMetadata: []string{"labels"}},
		{GroupVersionKind: gvk("apps", "v1", "ReplicaSet"), Resource: "replicasets", Singular: "replicaset", ShortNames: []string{"rs"},
			Categories: all, Namespaced: true, Subresources: []string{"status", "scale"}, fields: rsFields},
		{GroupVersionKind: gvk("apps", "v1", "DaemonSet"), Resource: "daemonsets", Singular: "daemonset", ShortNames: []string{"ds"},
			Categories: all, Namespaced: true, Subresources: []string{"status"}},
		{GroupVersionKind: gvk("apps", "v1", "StatefulSet"), Resource: "statefulsets", Singular: "statefulset", ShortNames: []string{"sts"},
			Categories: all, Namespaced: true, Subresources: []string{"status", "scale"}},
		{GroupVersionKind: gvk("apps", "v1", "ControllerRevision"), Resource: "controllerrevisions", Singular: "controllerrevision",
			Namespaced: true},
		{GroupVersionKind: gvk("batch", "v1", "Job"), Resource: "jobs", Singular: "job", Categories: all, Namespaced: true,
			Subresources: []string{"status"}, fields: jobFields},
		{GroupVersionKind: gvk("batch", "v1", "CronJob"), Resource: "cronjobs", Singular: "cronjob", ShortNames: []string{"cj"},
			Categories: all, Namespaced: true, Subresources: []string{"status"}},
		{GroupVersionKind: gvk("coordination.k8s.io", "v1", "Lease"), Resource: "leases", Singular: "lease", Namespaced: true},
		{GroupVersionKind: gvk("discovery.k8s.io", "v1", "EndpointSlice"), Resource: "endpointslices", Singular: "endpointslice",
			Namespaced: true},
		{GroupVersionKind: gvk("events.k8s.io", "v1", "Event"), Resource: "events", Singular: "event", ShortNames: []string{"ev"},
			Namespaced: true, toStored: eventToCore, fromStored: eventFromCore, fieldLabels: eventsV1FieldLabels},
	}
	// events.k8s.io/v1 Events are core Events, converted, as Kubernetes stores one resource.
	coreEvents, eventsV1 := ks[6], ks[len(ks)-1]
	if coreEvents.GroupVersionKind != gvk("", "v1", "Event") || eventsV1.Group != "events.k8s.io" {
		panic("kinds: the built-in list changed; link the Event kinds again")
	}
	eventsV1.storedAs = coreEvents
	return ks
}

// Compile-time checks that the types the field functions expect are the catalog's.
var (
	_ runtime.Object = (*coordinationv1.Lease)(nil)
	_ runtime.Object = (*discoveryv1.EndpointSlice)(nil)
)

func namespaceFields(obj runtime.Object, s fields.Set) {
	if ns, ok := obj.(*corev1.Namespace); ok {
		s["status.phase"] = string(ns.Status.Phase)
	}
}

func podFields(obj runtime.Object, s fields.Set) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	s["spec.nodeName"] = p.Spec.NodeName
	s["spec.restartPolicy"] = string(p.Spec.RestartPolicy)
	s["spec.schedulerName"] = p.Spec.SchedulerName
	s["spec.serviceAccountName"] = p.Spec.ServiceAccountName
	s["spec.hostNetwork"] = strconv.FormatBool(p.Spec.HostNetwork)
	s["status.phase"] = string(p.Status.Phase)
	s["status.podIP"] = p.Status.PodIP
	s["status.nominatedNodeName"] = p.Status.NominatedNodeName
}

func serviceFields(obj runtime.Object, s fields.Set) {
	if svc, ok := obj.(*corev1.Service); ok {
		s["spec.clusterIP"] = svc.Spec.ClusterIP
		s["spec.type"] = string(svc.Spec.Type)
	}
}

func secretFields(obj runtime.Object, s fields.Set) {
	if sec, ok := obj.(*corev1.Secret); ok {
		s["type"] = string(sec.Type)
	}
}

func eventFields(obj runtime.Object, s fields.Set) {
	e, ok := obj.(*corev1.Event)
	if !ok {
		return
	}
	s["involvedObject.kind"] = e.InvolvedObject.Kind
	s["involvedObject.namespace"] = e.InvolvedObject.Namespace
	s["involvedObject.name"] = e.InvolvedObject.Name
	s["involvedObject.uid"] = string(e.InvolvedObject.UID)
	s["involvedObject.apiVersion"] = e.InvolvedObject.APIVersion
	s["involvedObject.resourceVersion"] = e.InvolvedObject.ResourceVersion
	s["involvedObject.fieldPath"] = e.InvolvedObject.FieldPath
	s["reason"] = e.Reason
	s["reportingComponent"] = e.ReportingController
	// An event written through events.k8s.io has no source but a reporting controller.
	source := e.Source.Component
	if source == "" {
		source = e.ReportingController
	}
	s["source"] = source
	s["type"] = e.Type
}

func nodeFields(obj runtime.Object, s fields.Set) {
	if n, ok := obj.(*corev1.Node); ok {
		s["spec.unschedulable"] = strconv.FormatBool(n.Spec.Unschedulable)
	}
}

func rcFields(obj runtime.Object, s fields.Set) {
	if rc, ok := obj.(*corev1.ReplicationController); ok {
		s["status.replicas"] = strconv.Itoa(int(rc.Status.Replicas))
	}
}

func rsFields(obj runtime.Object, s fields.Set) {
	if rs, ok := obj.(*appsv1.ReplicaSet); ok {
		s["status.replicas"] = strconv.Itoa(int(rs.Status.Replicas))
	}
}

func jobFields(obj runtime.Object, s fields.Set) {
	if j, ok := obj.(*batchv1.Job); ok {
		s["status.successful"] = strconv.Itoa(int(j.Status.Succeeded))
	}
}
