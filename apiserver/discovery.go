package apiserver

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
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

// wantsAggregated reports whether the client accepts aggregated discovery (v2, in JSON), as
// kube-apiserver's discovery handler decides: by negotiation among the clauses of its Accept
// header that ask for it.
func wantsAggregated(r *http.Request) bool {
	opts, ok := negotiation.NegotiateMediaTypeOptions(r.Header.Get("Accept"), mediaTypes.SupportedMediaTypes(), aggregatedEndpoint{})
	return ok && opts.Convert != nil
}

// aggregatedEndpoint lets negotiation pick only aggregated discovery, which the server sends in
// JSON.
type aggregatedEndpoint struct{}

func (aggregatedEndpoint) AllowsMediaTypeTransform(mimeType, mimeSubType string, gvk *schema.GroupVersionKind) bool {
	return gvk != nil && *gvk == apidiscoveryv2.SchemeGroupVersion.WithKind("APIGroupDiscoveryList") && mimeSubType == "json"
}
func (aggregatedEndpoint) AllowsServerVersion(string) bool  { return false }
func (aggregatedEndpoint) AllowsStreamSchema(s string) bool { return false }

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
	for _, gv := range s.groupVersions() {
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

// subresourceDiscovery is how Kubernetes lists a subresource in discovery: the kind it takes or
// answers (empty: the parent's; a group and version only where Kubernetes' storage names them,
// through rest.GroupVersionKindProvider) and its verbs. Proxy subresources take
// <Kind>ProxyOptions.
var subresourceDiscovery = map[string]struct {
	gvk   schema.GroupVersionKind
	verbs []string
}{
	"status":      {verbs: []string{"get", "patch", "update"}},
	"scale":       {gvk: autoscalingv1.SchemeGroupVersion.WithKind("Scale"), verbs: []string{"get", "patch", "update"}},
	"binding":     {gvk: schema.GroupVersionKind{Kind: "Binding"}, verbs: []string{"create"}},
	"eviction":    {gvk: schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}, verbs: []string{"create"}},
	"log":         {verbs: []string{"get"}},
	"exec":        {gvk: schema.GroupVersionKind{Kind: "PodExecOptions"}, verbs: []string{"create", "get"}},
	"attach":      {gvk: schema.GroupVersionKind{Kind: "PodAttachOptions"}, verbs: []string{"create", "get"}},
	"portforward": {gvk: schema.GroupVersionKind{Kind: "PodPortForwardOptions"}, verbs: []string{"create", "get"}},
	"proxy":       {verbs: []string{"create", "delete", "get", "patch", "update"}},
	"token":       {gvk: schema.GroupVersionKind{Group: "authentication.k8s.io", Version: "v1", Kind: "TokenRequest"}, verbs: []string{"create"}},
	"finalize":    {verbs: []string{"update"}},
}

// storageVersionHash is discovery.StorageVersionHash: the first 8 bytes of the SHA-256 of the
// group/version/kind objects are stored as, base64.
func storageVersionHash(gvk schema.GroupVersionKind) string {
	sum := sha256.Sum256([]byte(gvk.Group + "/" + gvk.Version + "/" + gvk.Kind))
	return base64.StdEncoding.EncodeToString(sum[:8])
}

// apiResources is the discovery of group version gv as Kubernetes' installer makes it: every
// resource and every subresource of the catalog, sorted by name, with their kinds and sorted
// verbs; subresources have no singular name.
func (s *Server) apiResources(gv schema.GroupVersion) []metav1.APIResource {
	var out []metav1.APIResource
	for _, k := range s.catalog.All() {
		if k.GroupVersion() != gv {
			continue
		}
		out = append(out, metav1.APIResource{
			Name: k.Resource, SingularName: k.Singular, Namespaced: k.Namespaced, Kind: k.Kind,
			Verbs: k.ResourceVerbs(), ShortNames: k.ShortNames, Categories: k.Categories,
			StorageVersionHash: storageVersionHash(k.Stored().GroupVersionKind),
		})
		for _, sub := range k.Subresources {
			d, ok := subresourceDiscovery[sub]
			if !ok {
				continue
			}
			gvk := d.gvk
			switch {
			case sub == "proxy":
				gvk.Kind = k.Kind + "ProxyOptions"
			case gvk.Kind == "":
				gvk.Kind = k.Kind
			}
			out = append(out, metav1.APIResource{
				Name: k.Resource + "/" + sub, Namespaced: k.Namespaced, Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind,
				Verbs: d.verbs,
			})
		}
	}
	for _, v := range reviewResources {
		if v.gv == gv {
			out = append(out, v.res)
		}
	}
	slices.SortFunc(out, func(a, b metav1.APIResource) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// reviewResources are the resources served without being stored (reviews.go, authn.go), as
// Kubernetes lists them: create only.
var reviewResources = []struct {
	gv  schema.GroupVersion
	res metav1.APIResource
}{
	{schema.GroupVersion{Group: "authentication.k8s.io", Version: "v1"}, metav1.APIResource{Name: "selfsubjectreviews", Kind: "SelfSubjectReview", Verbs: []string{"create"}}},
	{schema.GroupVersion{Group: "authorization.k8s.io", Version: "v1"}, metav1.APIResource{Name: "localsubjectaccessreviews", Namespaced: true, Kind: "LocalSubjectAccessReview", Verbs: []string{"create"}}},
	{schema.GroupVersion{Group: "authorization.k8s.io", Version: "v1"}, metav1.APIResource{Name: "selfsubjectaccessreviews", Kind: "SelfSubjectAccessReview", Verbs: []string{"create"}}},
	{schema.GroupVersion{Group: "authorization.k8s.io", Version: "v1"}, metav1.APIResource{Name: "selfsubjectrulesreviews", Kind: "SelfSubjectRulesReview", Verbs: []string{"create"}}},
	{schema.GroupVersion{Group: "authorization.k8s.io", Version: "v1"}, metav1.APIResource{Name: "subjectaccessreviews", Kind: "SubjectAccessReview", Verbs: []string{"create"}}},
}

// groupVersions are the catalog's group versions and those of reviewResources.
func (s *Server) groupVersions() []schema.GroupVersion {
	out := s.catalog.GroupVersions()
	for _, v := range reviewResources {
		if !slices.Contains(out, v.gv) {
			out = append(out, v.gv)
		}
	}
	return out
}

// serveResourceList serves /api/v1 and /apis/<group>/<version>.
func (s *Server) serveResourceList(w http.ResponseWriter, r *http.Request, gv schema.GroupVersion) {
	list := metav1.APIResourceList{GroupVersion: gv.String(), APIResources: s.apiResources(gv)}
	list.Kind, list.APIVersion = "APIResourceList", "v1"
	writeJSON(w, http.StatusOK, mediaJSON, list)
}

// aggregated is the aggregated discovery document of the core group (core) or of the others:
// each group version's resources converted as Kubernetes' ConvertGroupVersionIntoToDiscovery
// does.
func (s *Server) aggregated(core bool) apidiscoveryv2.APIGroupDiscoveryList {
	list := apidiscoveryv2.APIGroupDiscoveryList{}
	list.Kind, list.APIVersion = "APIGroupDiscoveryList", "apidiscovery.k8s.io/v2"
	index := map[string]int{}
	for _, gv := range s.groupVersions() {
		if (gv.Group == "") != core {
			continue
		}
		gi, ok := index[gv.Group]
		if !ok {
			list.Items = append(list.Items, apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: gv.Group}})
			gi = len(list.Items) - 1
			index[gv.Group] = gi
		}
		list.Items[gi].Versions = append(list.Items[gi].Versions, apidiscoveryv2.APIVersionDiscovery{
			Version: gv.Version, Resources: toAggregated(s.apiResources(gv)), Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
		})
	}
	return list
}

// toAggregated converts a group version's resources to aggregated discovery, subresources under
// their resource.
func toAggregated(rs []metav1.APIResource) []apidiscoveryv2.APIResourceDiscovery {
	var out []apidiscoveryv2.APIResourceDiscovery
	parents := map[string]int{}
	for _, r := range rs {
		if strings.Contains(r.Name, "/") {
			continue
		}
		out = append(out, apidiscoveryv2.APIResourceDiscovery{
			Resource: r.Name, Scope: scopeOf(r), SingularResource: r.SingularName,
			ResponseKind: &metav1.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind},
			Verbs:        r.Verbs, ShortNames: r.ShortNames, Categories: r.Categories,
		})
		parents[r.Name] = len(out) - 1
	}
	for _, r := range rs {
		parent, sub, ok := strings.Cut(r.Name, "/")
		if !ok {
			continue
		}
		i, ok := parents[parent]
		if !ok {
			continue // the catalog lists subresources of its resources only
		}
		out[i].Subresources = append(out[i].Subresources, apidiscoveryv2.APISubresourceDiscovery{
			Subresource: sub, Verbs: r.Verbs,
			ResponseKind: &metav1.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind},
		})
	}
	return out
}

func scopeOf(r metav1.APIResource) apidiscoveryv2.ResourceScope {
	if r.Namespaced {
		return apidiscoveryv2.ScopeNamespace
	}
	return apidiscoveryv2.ScopeCluster
}

// serveGroup serves /apis/<group>: the group's APIGroup.
func (s *Server) serveGroup(w http.ResponseWriter, r *http.Request, group string) {
	g := metav1.APIGroup{Name: group}
	g.Kind, g.APIVersion = "APIGroup", "v1"
	for _, gv := range s.groupVersions() {
		if gv.Group == group {
			g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version})
		}
	}
	if group == "" || len(g.Versions) == 0 {
		writeError(w, r, notFoundPath(r))
		return
	}
	g.PreferredVersion = g.Versions[0]
	writeJSON(w, http.StatusOK, mediaJSON, g)
}

// serveIndex serves / (and /index.json, and /paths, which the seed's Kubernetes 1.2 answered):
// the paths the server serves, as Kubernetes' index lists them.
func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	paths := []string{"/api", "/api/v1", "/apis", "/apis/", "/healthz", "/healthz/ping", "/livez", "/livez/ping",
		"/metrics", "/openapi/v2", "/openapi/v3", "/openapi/v3/", "/readyz", "/readyz/ping", "/version"}
	for _, gv := range s.groupVersions() {
		if gv.Group == "" {
			continue
		}
		if !slices.Contains(paths, "/apis/"+gv.Group) {
			paths = append(paths, "/apis/"+gv.Group)
		}
		paths = append(paths, "/apis/"+gv.String())
	}
	slices.Sort(paths)
	writeJSON(w, http.StatusOK, mediaJSON, metav1.RootPaths{Paths: paths})
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
