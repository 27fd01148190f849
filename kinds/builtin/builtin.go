// Package builtin declares the built-in kinds logplane serves, one file each: the kind's names,
// scope and subresources, and its strategy, wired from the Kubernetes semantics ported in
// defaults, validation and printers (and from the file itself, for what is the kind's alone:
// a pod's status on create, a namespace's deletion, a Service's addresses). Catalog lists them:
// adding a kind is a file here plus its line in Kinds. It is pure: no log, no network.
package builtin

import (
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/kinds"
)

// Catalog returns a new catalog of the built-in kinds.
func Catalog() *kinds.Catalog {
	c, err := kinds.NewCatalog(Kinds()...)
	if err != nil {
		panic(err) // the list below is fixed; a test checks it
	}
	return c
}

// Kinds returns the built-in kinds, new each time, in the order discovery lists them.
func Kinds() []*kinds.Kind {
	ns := namespace()
	events := event()
	return []*kinds.Kind{
		ns,
		pod(),
		service(),
		endpoints(),
		configMap(),
		secret(),
		events,
		node(),
		serviceAccount(),
		podTemplate(),
		replicationController(),
		deployment(),
		replicaSet(),
		daemonSet(),
		statefulSet(),
		controllerRevision(),
		job(),
		cronJob(),
		lease(),
		endpointSlice(),
		clusterRole(),
		clusterRoleBinding(),
		role(),
		roleBinding(),
		eventsV1(events),
		networkPolicy(),
		ipAddress(),
		serviceCIDR(),
		ingress(),
		ingressClass(),
		persistentVolume(),
		persistentVolumeClaim(),
		storageClass(),
	}
}

// all is the category of the kinds `kubectl get all` shows.
var all = []string{"all"}

func gvk(group, version, kind string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: group, Version: version, Kind: kind}
}
