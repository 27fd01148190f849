package apiserver

import (
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"runtime"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/logplane/logplane/kinds"
)

// Version is what /version reports: the Kubernetes API version logplane serves.
var Version = version.Info{
	Major:        "1",
	Minor:        "34",
	GitVersion:   "v1.34.0-logplane",
	GitTreeState: "clean",
	Platform:     runtime.GOOS + "/" + runtime.GOARCH,
	GoVersion:    runtime.Version(),
	Compiler:     runtime.Compiler,
}

const aggregatedDiscovery = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

// wantsAggregated reports whether the client accepts aggregated discovery (v2), before any
// plain format.
func wantsAggregated(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == mediaJSON && params["g"] == "apidiscovery.k8s.io" && params["v"] == "v2" && params["as"] == "APIGroupDiscoveryList" {
			return true
		}
		if params["g"] == "" {
			return false
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = w.Write(b) // a client that left gets nothing more
}

func (s *Server) serverAddresses(r *http.Request) []metav1.ServerAddressByClientCIDR {
	host := r.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "443")
	}
	return []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: host}}
}

// serveCoreVersions serves /api.
func (s *Server) serveCoreVersions(w http.ResponseWriter, r *http.Request) {
	if wantsAggregated(r) {
		writeJSON(w, http.StatusOK, aggregatedDiscovery, s.aggregated(true))
		return
	}
	v := metav1.APIVersions{Versions: []string{"v1"}, ServerAddressByClientCIDRs: s.serverAddresses(r)}
	v.Kind = "APIVersions"
	writeJSON(w, http.StatusOK, mediaJSON, v)
}

// serveGroups serves /apis.
func (s *Server) serveGroups(w http.ResponseWriter, r *http.Request) {
	if wantsAggregated(r) {
		writeJSON(w, http.StatusOK, aggregatedDiscovery, s.aggregated(false))
		return
	}
	list := metav1.APIGroupList{}
	list.Kind, list.APIVersion = "APIGroupList", "v1"
	for _, gv := range s.catalog.GroupVersions() {
		if gv.Group == "" {
			continue
		}
		gvd := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
		found := false
		for i := range list.Groups {
			if list.Groups[i].Name == gv.Group {
				list.Groups[i].Versions = append(list.Groups[i].Versions, gvd)
				found = true
			}
		}
		if !found {
			list.Groups = append(list.Groups, metav1.APIGroup{Name: gv.Group, Versions: []metav1.GroupVersionForDiscovery{gvd}, PreferredVersion: gvd})
		}
	}
	writeJSON(w, http.StatusOK, mediaJSON, list)
}

// verbsOf are the verbs every served resource supports.
var verbsOf = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// subresourceVerbs are the verbs of the subresources served.
var subresourceVerbs = map[string][]string{
	"status":   {"get", "patch", "update"},
	"scale":    {"get", "patch", "update"},
	"binding":  {"create"},
	"eviction": {"create"},
	"finalize": {"update"},
}

// servedSubresources are the subresources of k this server implements.
func servedSubresources(k *kinds.Kind) []string {
	var out []string
	for _, sub := range k.Subresources {
		if _, ok := subresourceVerbs[sub]; ok {
			out = append(out, sub)
		}
	}
	return out
}

func subresourceKind(k *kinds.Kind, sub string) schema.GroupVersionKind {
	switch sub {
	case "scale":
		return autoscalingv1.SchemeGroupVersion.WithKind("Scale")
	case "binding":
		return schema.GroupVersionKind{Version: "v1", Kind: "Binding"}
	case "eviction":
		return schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}
	}
	return k.GroupVersionKind
}

// serveResourceList serves /api/v1 and /apis/<group>/<version>.
func (s *Server) serveResourceList(w http.ResponseWriter, r *http.Request, gv schema.GroupVersion) {
	list := metav1.APIResourceList{GroupVersion: gv.String()}
	list.Kind, list.APIVersion = "APIResourceList", "v1"
	for _, k := range s.catalog.All() {
		if k.GroupVersion() != gv {
			continue
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: k.Resource, SingularName: k.Singular, Namespaced: k.Namespaced, Kind: k.Kind,
			Verbs: verbsOf, ShortNames: k.ShortNames, Categories: k.Categories,
		})
		for _, sub := range servedSubresources(k) {
			sk := subresourceKind(k, sub)
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: k.Resource + "/" + sub, Namespaced: k.Namespaced, Group: sk.Group, Version: sk.Version, Kind: sk.Kind,
				Verbs: subresourceVerbs[sub],
			})
		}
	}
	writeJSON(w, http.StatusOK, mediaJSON, list)
}

// aggregated is the aggregated discovery document of the core group (core) or of the others.
func (s *Server) aggregated(core bool) apidiscoveryv2.APIGroupDiscoveryList {
	list := apidiscoveryv2.APIGroupDiscoveryList{}
	list.Kind, list.APIVersion = "APIGroupDiscoveryList", "apidiscovery.k8s.io/v2"
	index := map[string]int{}
	for _, k := range s.catalog.All() {
		if (k.Group == "") != core {
			continue
		}
		gi, ok := index[k.Group]
		if !ok {
			g := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: k.Group}}
			list.Items = append(list.Items, g)
			gi = len(list.Items) - 1
			index[k.Group] = gi
		}
		g := &list.Items[gi]
		vi := -1
		for i := range g.Versions {
			if g.Versions[i].Version == k.Version {
				vi = i
			}
		}
		if vi < 0 {
			g.Versions = append(g.Versions, apidiscoveryv2.APIVersionDiscovery{Version: k.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent})
			vi = len(g.Versions) - 1
		}
		scope := apidiscoveryv2.ScopeCluster
		if k.Namespaced {
			scope = apidiscoveryv2.ScopeNamespace
		}
		rd := apidiscoveryv2.APIResourceDiscovery{
			Resource: k.Resource, SingularResource: k.Singular, Scope: scope, Verbs: verbsOf,
			ShortNames: k.ShortNames, Categories: k.Categories,
			ResponseKind: &metav1.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind},
		}
		for _, sub := range servedSubresources(k) {
			sk := subresourceKind(k, sub)
			rd.Subresources = append(rd.Subresources, apidiscoveryv2.APISubresourceDiscovery{
				Subresource:  sub,
				ResponseKind: &metav1.GroupVersionKind{Group: sk.Group, Version: sk.Version, Kind: sk.Kind},
				Verbs:        subresourceVerbs[sub],
			})
		}
		g.Versions[vi].Resources = append(g.Versions[vi].Resources, rd)
	}
	return list
}

// serveHealth serves /healthz, /readyz, /livez (and their /<check> forms) and /version.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request, path string) {
	if path == "version" {
		writeJSON(w, http.StatusOK, mediaJSON, Version)
		return
	}
	select {
	case <-s.started:
	default:
		if !strings.HasPrefix(path, "livez") {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("[-]log-caught-up failed: the server is starting\n"))
			return
		}
	}
	if _, _, err := s.log.Bounds(r.Context()); err != nil && !strings.HasPrefix(path, "livez") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("[-]log failed: " + err.Error() + "\n"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.URL.Query().Has("verbose") {
		_, _ = w.Write([]byte("[+]log ok\n[+]projection ok\n" + strings.SplitN(path, "/", 2)[0] + " check passed\n"))
		return
	}
	_, _ = w.Write([]byte("ok"))
}
