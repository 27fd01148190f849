package apiserver

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/logplane/logplane/apiserver/serviceaccount"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// requestInfo is what the path and method of a request name.
type requestInfo struct {
	// public paths answer without credentials; health paths answer before the server started.
	public, health bool
	// resource request fields, set when kind is not nil.
	kind        *kinds.Kind
	group       string
	version     string
	namespace   string
	name        string
	subresource string
	// verb is get, list, watch, create, update, patch, delete, deletecollection, or for
	// non-resource requests the lower-case method.
	verb string
	// resource is the plural name for metrics ("" when not a resource request).
	resource string
	// segs are the path segments after /api/v1 or /apis/<group>/<version>: none for the group
	// version's resource list.
	segs []string
	// prefix is "api" or "apis" for API paths, "" otherwise.
	prefix string
	// ri is what k8s.io/apiserver's RequestInfoFactory read, for authorization; nil for the
	// health paths.
	ri *request.RequestInfo
	// logplane is set for logplane's own endpoints, which authorize what they serve.
	logplane bool
}

// requestInfoFactory reads the paths of the Kubernetes API as kube-apiserver reads them.
var requestInfoFactory = &request.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

// parse reads what a request names with k8s.io/apiserver's RequestInfoFactory, and finds the
// kind of the catalog it is about.
func (s *Server) parse(r *http.Request) requestInfo {
	path := strings.Trim(r.URL.Path, "/")
	info := requestInfo{verb: strings.ToLower(r.Method)}
	switch path {
	case "healthz", "readyz", "livez", "version":
		info.public, info.health = true, true
		return info
	}
	if strings.HasPrefix(path, "healthz/") || strings.HasPrefix(path, "readyz/") || strings.HasPrefix(path, "livez/") {
		info.public, info.health = true, true
		return info
	}
	ri, err := requestInfoFactory.NewRequestInfo(r)
	info.ri = ri
	info.logplane = strings.HasPrefix(path, logplanePrefix+"/") || path == logplanePrefix
	if err != nil || !ri.IsResourceRequest {
		// A group version's resource list (/api/v1, /apis/<group>/<version>), or a path that
		// names no resource.
		segs := strings.Split(path, "/")
		switch {
		case segs[0] == "api" && len(segs) >= 2:
			info.prefix, info.version, info.segs = "api", segs[1], segs[2:]
		case segs[0] == "apis" && len(segs) >= 3:
			info.prefix, info.group, info.version, info.segs = "apis", segs[1], segs[2], segs[3:]
		}
		return info
	}
	info.prefix, info.group, info.version = ri.APIPrefix, ri.APIGroup, ri.APIVersion
	info.segs = ri.Parts
	if ri.Verb == "proxy" || (len(ri.Parts) > 3 && ri.Parts[2] != "proxy") {
		// /proxy/... (which Kubernetes no longer serves), or a path deeper than a subresource
		// other than a proxy's (whose path goes on to the target: proxy.go).
		return info
	}
	info.namespace, info.resource = ri.Namespace, ri.Resource
	// The name is the path's: RequestInfoFactory also takes a list's name from a metadata.name
	// field selector (for authorization), but a list stays a list here and in the metrics.
	if len(ri.Parts) > 1 {
		info.name = ri.Parts[1]
	}
	if len(ri.Parts) > 2 {
		info.subresource = ri.Parts[2]
	}
	k, ok := s.catalog.ByResource(schema.GroupVersionResource{Group: ri.APIGroup, Version: ri.APIVersion, Resource: ri.Resource})
	if !ok {
		return info
	}
	info.kind = k
	if ri.Resource == "namespaces" {
		info.namespace = "" // a namespace is named by its name, not by a namespace
	}
	info.verb = ri.Verb
	switch {
	case info.verb == "":
		info.verb = strings.ToLower(r.Method) // a method the API has no verb for: 405
	case info.verb == "watch" && r.Method != http.MethodGet && r.Method != http.MethodHead:
		// A write to a /watch/ path is what it would be without the /watch/.
		info.verb = writeVerbs[r.Method]
		if info.verb == "delete" && info.name == "" {
			info.verb = "deletecollection"
		} else if info.verb == "" {
			info.verb = strings.ToLower(r.Method)
		}
	}
	return info
}

// writeVerbs are the verbs of the methods that change things.
var writeVerbs = map[string]string{http.MethodPost: "create", http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete"}

func isTrue(v string) bool { return v == "true" || v == "1" }

// route sends a request to its handler.
func (s *Server) route(w http.ResponseWriter, r *http.Request, info requestInfo) {
	path := strings.Trim(r.URL.Path, "/")
	switch {
	case info.health:
		s.serveHealth(w, r, path)
		return
	case path == "metrics":
		s.serveMetrics(w, r)
		return
	case path == "api":
		s.serveCoreVersions(w, r)
		return
	case path == "apis":
		s.serveGroups(w, r)
		return
	case path == "" || path == "index.json" || path == "paths":
		s.serveIndex(w, r)
		return
	case strings.HasPrefix(path, "apis/") && strings.Count(path, "/") == 1:
		s.serveGroup(w, r, strings.TrimPrefix(path, "apis/"))
		return
	case path == "openapi/v3" || strings.HasPrefix(path, "openapi/v3/"):
		s.openapi.serveV3(w, r, strings.TrimPrefix(strings.TrimPrefix(path, "openapi/v3"), "/"))
		return
	case path == "openapi/v2":
		s.openapi.serveV2(w, r)
		return
	case path == "apis/apiextensions.k8s.io/v1/customresourcedefinitions" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		// logplane serves no custom resources; clients (kubectl's validation) look for them.
		writeJSON(w, http.StatusOK, mediaJSON, map[string]any{"kind": "CustomResourceDefinitionList", "apiVersion": "apiextensions.k8s.io/v1",
			"metadata": map[string]any{"resourceVersion": strconv.FormatUint(s.store.Applied(), 10)}, "items": []any{}})
		return
	case path == "apis/authentication.k8s.io/v1/selfsubjectreviews" && r.Method == http.MethodPost:
		s.serveSelfSubjectReview(w, r)
		return
	case "/"+path == serviceaccount.OpenIDConfigPath || "/"+path == serviceaccount.JWKSPath:
		s.serveOpenID(w, r, path) // tokens.go
		return
	case info.group == "authorization.k8s.io" && s.reviewRoute(w, r, info):
		return
	case strings.HasPrefix(path, logplanePrefix):
		s.serveLogplane(w, r, strings.TrimPrefix(strings.TrimPrefix(path, logplanePrefix), "/"))
		return
	}
	if info.prefix == "" {
		writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, ""))
		return
	}
	gv := schema.GroupVersion{Group: info.group, Version: info.version}
	if !s.servesGroupVersion(gv) {
		writeError(w, r, notFoundPath(r))
		return
	}
	if len(info.segs) == 0 {
		s.serveResourceList(w, r, gv)
		return
	}
	if info.kind == nil {
		writeError(w, r, notFoundPath(r))
		return
	}
	if info.kind.Namespaced && info.namespace == "" && info.name != "" {
		// /api/v1/pods/<name>: namespaced objects are only addressed within a namespace.
		writeError(w, r, notFoundPath(r))
		return
	}
	if !info.kind.Namespaced && info.namespace != "" {
		writeError(w, r, notFoundPath(r))
		return
	}
	if isProxy(info) {
		s.serveProxy(w, r, info) // proxy.go: pods/proxy, services/proxy
		return
	}
	if isPodStream(info) {
		s.servePodStream(w, r, info) // podstream.go: proxied to the pod's node agent
		return
	}
	s.serveResource(w, r, info)
}

func notFoundPath(r *http.Request) error {
	err := apierrors.NewNotFound(schema.GroupResource{}, "")
	err.ErrStatus.Message = fmt.Sprintf("the server could not find the requested resource (%s %s)", r.Method, r.URL.Path)
	err.ErrStatus.Details = &metav1.StatusDetails{}
	return err
}

func (s *Server) servesGroupVersion(gv schema.GroupVersion) bool {
	for _, g := range s.groupVersions() {
		if g == gv {
			return true
		}
	}
	return false
}

// writeError sends err as a Kubernetes Status (registry.StatusOf), in the format the client
// accepts.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := registry.StatusOf(err)
	code := int(status.Code)
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout {
		if status.Details != nil && status.Details.RetryAfterSeconds > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(status.Details.RetryAfterSeconds))
		}
	}
	out := negotiateOr(r)
	w.Header().Set("Content-Type", out.contentType())
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	_ = out.encode(w, status) // the client may be gone; nothing more to do
}

// writeObject sends obj with the given status code in format out.
func writeObject(w http.ResponseWriter, r *http.Request, code int, out output, ro runtime.Object) {
	w.Header().Set("Content-Type", out.contentType())
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	if err := out.encode(w, ro); err != nil {
		panic(http.ErrAbortHandler) // the status line is out; all we can do is cut the response
	}
}
