package apiserver_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// discovered is one discovery entry, as compared with Kubernetes': name, group/version/kind,
// verbs, namespaced.
func discovered(r metav1.APIResource) string {
	gv := r.Group + "/" + r.Version
	if gv == "/" {
		gv = ""
	}
	return fmt.Sprintf("%s %s %s %v %v", r.Name, gv, r.Kind, r.Verbs, r.Namespaced)
}

// kubernetesCoreV1 is how a Kubernetes 1.34 API server lists, in /api/v1, the resources
// logplane serves (its storage definitions, pkg/registry/core/*/storage, and the installer's
// verbs: connect methods GET and POST are get and create; a proxy's are create, delete, get,
// patch, update).
var kubernetesCoreV1 = []string{
	"configmaps  ConfigMap [create delete deletecollection get list patch update watch] true",
	"endpoints  Endpoints [create delete deletecollection get list patch update watch] true",
	"events  Event [create delete deletecollection get list patch update watch] true",
	"namespaces  Namespace [create delete get list patch update watch] false",
	"namespaces/finalize  Namespace [update] false",
	"namespaces/status  Namespace [get patch update] false",
	"nodes  Node [create delete deletecollection get list patch update watch] false",
	"nodes/proxy  NodeProxyOptions [create delete get patch update] false",
	"nodes/status  Node [get patch update] false",
	"persistentvolumeclaims  PersistentVolumeClaim [create delete deletecollection get list patch update watch] true",
	"persistentvolumeclaims/status  PersistentVolumeClaim [get patch update] true",
	"persistentvolumes  PersistentVolume [create delete deletecollection get list patch update watch] false",
	"persistentvolumes/status  PersistentVolume [get patch update] false",
	"pods  Pod [create delete deletecollection get list patch update watch] true",
	"pods/attach  PodAttachOptions [create get] true",
	"pods/binding  Binding [create] true",
	"pods/eviction policy/v1 Eviction [create] true",
	"pods/exec  PodExecOptions [create get] true",
	"pods/log  Pod [get] true",
	"pods/portforward  PodPortForwardOptions [create get] true",
	"pods/proxy  PodProxyOptions [create delete get patch update] true",
	"pods/status  Pod [get patch update] true",
	"podtemplates  PodTemplate [create delete deletecollection get list patch update watch] true",
	"replicationcontrollers  ReplicationController [create delete deletecollection get list patch update watch] true",
	"replicationcontrollers/scale autoscaling/v1 Scale [get patch update] true",
	"replicationcontrollers/status  ReplicationController [get patch update] true",
	"secrets  Secret [create delete deletecollection get list patch update watch] true",
	"serviceaccounts  ServiceAccount [create delete deletecollection get list patch update watch] true",
	"serviceaccounts/token authentication.k8s.io/v1 TokenRequest [create] true",
	"services  Service [create delete deletecollection get list patch update watch] true",
	"services/proxy  ServiceProxyOptions [create delete get patch update] true",
	"services/status  Service [get patch update] true",
}

// TestDiscoveryAsKubernetes: the legacy /api/v1 document and aggregated discovery list every
// resource and subresource with Kubernetes' kinds, verbs and scopes, in Kubernetes' order; the
// storage version hashes are Kubernetes'; GET / lists the paths and GET /apis/<group> answers
// the group.
func TestDiscoveryAsKubernetes(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	dc := discovery.NewDiscoveryClientForConfigOrDie(s.Config)

	// Legacy discovery (APIResourceList), as older clients read it.
	legacy := dc.WithLegacy()
	core, err := legacy.ServerResourcesForGroupVersion("v1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range core.APIResources {
		got = append(got, discovered(r))
	}
	if !slices.Equal(got, kubernetesCoreV1) {
		t.Errorf("/api/v1:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(kubernetesCoreV1, "\n"))
	}
	for _, r := range core.APIResources {
		switch r.Name {
		case "pods":
			if r.StorageVersionHash != "xPOwRZ+Yhw8=" || r.SingularName != "pod" || !slices.Equal(r.ShortNames, []string{"po"}) || !slices.Equal(r.Categories, []string{"all"}) {
				t.Errorf("pods: %+v", r)
			}
		case "pods/log":
			if r.SingularName != "" || r.StorageVersionHash != "" {
				t.Errorf("pods/log: %+v", r)
			}
		}
	}
	apps, err := legacy.ServerResourcesForGroupVersion("apps/v1")
	if err != nil {
		t.Fatal(err)
	}
	var appsGot []string
	for _, r := range apps.APIResources {
		appsGot = append(appsGot, discovered(r))
		if r.Name == "deployments" && r.StorageVersionHash != "8aSe+NMegvE=" {
			t.Errorf("deployments' storage version hash %q", r.StorageVersionHash)
		}
	}
	for _, want := range []string{
		"deployments/scale autoscaling/v1 Scale [get patch update] true",
		"deployments/status  Deployment [get patch update] true",
		"statefulsets/scale autoscaling/v1 Scale [get patch update] true",
		"daemonsets/status  DaemonSet [get patch update] true",
	} {
		if !slices.Contains(appsGot, want) {
			t.Errorf("apps/v1 lacks %q:\n%s", want, strings.Join(appsGot, "\n"))
		}
	}

	// Aggregated discovery (v2), which kubectl and client-go ask for first: the same resources.
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	var aggregated []string
	for _, l := range lists {
		if l.GroupVersion != "v1" {
			continue
		}
		for _, r := range l.APIResources {
			aggregated = append(aggregated, discovered(r))
		}
	}
	slices.Sort(aggregated)
	if !slices.Equal(aggregated, kubernetesCoreV1) {
		t.Errorf("aggregated v1:\n%s\nwant:\n%s", strings.Join(aggregated, "\n"), strings.Join(kubernetesCoreV1, "\n"))
	}

	// A namespace collection cannot be deleted, as on Kubernetes.
	if code, body := raw(t, s.Config, "DELETE", "/api/v1/namespaces", nil, ""); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /api/v1/namespaces: %d %s", code, body)
	}

	// The index and a group, through kubectl.
	out := must(t, s, "", nil, "get", "--raw", "/")
	var paths metav1.RootPaths
	if err := json.Unmarshal([]byte(out), &paths); err != nil {
		t.Fatalf("GET /: %v\n%s", err, out)
	}
	for _, p := range []string{"/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/apis/batch/v1", "/apis/events.k8s.io", "/healthz", "/metrics", "/openapi/v2", "/version"} {
		if !slices.Contains(paths.Paths, p) {
			t.Errorf("GET / lacks %s: %v", p, paths.Paths)
		}
	}
	if !slices.IsSorted(paths.Paths) {
		t.Errorf("GET / is not sorted: %v", paths.Paths)
	}
	out = must(t, s, "", nil, "get", "--raw", "/apis/apps")
	var g metav1.APIGroup
	if err := json.Unmarshal([]byte(out), &g); err != nil || g.Kind != "APIGroup" || g.Name != "apps" || len(g.Versions) != 1 ||
		g.Versions[0].GroupVersion != "apps/v1" || g.PreferredVersion.GroupVersion != "apps/v1" {
		t.Errorf("GET /apis/apps: %v\n%s", err, out)
	}
	fails(t, s, "", []string{"NotFound"}, "get", "--raw", "/apis/example.com")
}

// TestTrailingSlashes: kube-apiserver answers a discovery or resource path with a trailing slash
// as it answers it without (the aggregator registers /apis/, /apis/<group>/ and
// /apis/<group>/<version>/ beside the paths without, and go-restful trims a trailing slash
// before it matches a route), and a path that names nothing with 404 NotFound either way.
// Through the real kubectl, which sends the slash as given.
func TestTrailingSlashes(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	for _, c := range []struct{ path, kind, name string }{
		{"/api/", "APIVersions", ""},
		{"/apis/", "APIGroupList", ""},
		{"/apis/apps/", "APIGroup", "apps"},
		{"/apis/apps/v1/", "APIResourceList", ""},
		{"/api/v1/", "APIResourceList", ""},
		{"/apis/apps/v1/deployments/", "DeploymentList", ""},
		{"/api/v1/namespaces/", "NamespaceList", ""},
		{"/api/v1/namespaces/default/", "Namespace", "default"},
		{"/apis/apps/v1/namespaces/default/deployments/", "DeploymentList", ""},
		{"/api/v1/namespaces/default/configmaps/", "ConfigMapList", ""},
	} {
		for _, p := range []string{c.path, strings.TrimSuffix(c.path, "/")} {
			out := must(t, s, "", nil, "get", "--raw", p)
			var got struct {
				Kind         string
				Name         string
				GroupVersion string
				Metadata     struct{ Name string }
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("GET %s: %v\n%s", p, err, out)
			}
			name := got.Name + got.Metadata.Name
			if got.Kind != c.kind || name != c.name {
				t.Errorf("GET %s: kind %q name %q, want %q %q", p, got.Kind, name, c.kind, c.name)
			}
			if c.kind == "APIResourceList" && got.GroupVersion != strings.TrimPrefix(strings.TrimPrefix(strings.Trim(c.path, "/"), "api/"), "apis/") {
				t.Errorf("GET %s: groupVersion %q", p, got.GroupVersion)
			}
		}
	}
	for _, p := range []string{"/apis/example.com/", "/apis/apps/v2/", "/api/v2/", "/apis/apps/v1/widgets/"} {
		fails(t, s, "", []string{"NotFound"}, "get", "--raw", p)
	}
}
