package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/kinds"
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
	// path segments after /api/v1 or /apis/<group>/<version>, for the errors of unknown ones.
	segs []string
	// prefix is "api" or "apis" for API paths, "" otherwise.
	prefix string
}

// namespaceSubresources are the subresources of a Namespace, which share the
// /namespaces/<name>/<x> form with the resources inside it.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

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
	segs := strings.Split(path, "/")
	var gv schema.GroupVersion
	switch {
	case segs[0] == "api" && len(segs) >= 2:
		gv = schema.GroupVersion{Version: segs[1]}
		segs = segs[2:]
		info.prefix = "api"
	case segs[0] == "apis" && len(segs) >= 3:
		gv = schema.GroupVersion{Group: segs[1], Version: segs[2]}
		segs = segs[3:]
		info.prefix = "apis"
	default:
		return info
	}
	info.group, info.version = gv.Group, gv.Version
	watchPath := false
	if len(segs) > 0 && segs[0] == "watch" {
		watchPath = true
		segs = segs[1:]
	}
	info.segs = segs
	if len(segs) == 0 {
		return info
	}
	var resource string
	if segs[0] == "namespaces" && len(segs) >= 3 && !namespaceSubresources[segs[2]] {
		info.namespace, resource = segs[1], segs[2]
		segs = segs[3:]
	} else {
		resource = segs[0]
		segs = segs[1:]
	}
	if len(segs) > 0 {
		info.name = segs[0]
	}
	if len(segs) > 1 {
		info.subresource = segs[1]
	}
	if len(segs) > 2 {
		return info // too deep: 404
	}
	info.resource = resource
	k, ok := s.catalog.ByResource(gv.WithResource(resource))
	if !ok {
		return info
	}
	info.kind = k
	if resource == "namespaces" {
		info.namespace = ""
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watchPath || isTrue(r.URL.Query().Get("watch")):
			info.verb = "watch"
		case info.name == "":
			info.verb = "list"
		default:
			info.verb = "get"
		}
	case http.MethodPost:
		info.verb = "create"
	case http.MethodPut:
		info.verb = "update"
	case http.MethodPatch:
		info.verb = "patch"
	case http.MethodDelete:
		if info.name == "" {
			info.verb = "deletecollection"
		} else {
			info.verb = "delete"
		}
	}
	return info
}

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
	for _, g := range s.catalog.GroupVersions() {
		if g == gv {
			return true
		}
	}
	return false
}

// writeError sends err as a Kubernetes Status, in the format the client accepts.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var status metav1.Status
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		status = se.Status()
	} else {
		status = apierrors.NewInternalError(err).ErrStatus
	}
	status.Kind, status.APIVersion = "Status", "v1"
	if status.Status == "" {
		status.Status = metav1.StatusFailure
	}
	code := int(status.Code)
	if code == 0 {
		code = http.StatusInternalServerError
	}
	out, ok := negotiate(r)
	if !ok || out.media == mediaYAML {
		out = output{media: mediaJSON}
	}
	if out.media == mediaProtobuf && r.URL.Query().Get("watch") != "" {
		out.media = mediaJSON
	}
	out.as = ""
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout {
		if status.Details != nil && status.Details.RetryAfterSeconds > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(status.Details.RetryAfterSeconds))
		}
	}
	w.Header().Set("Content-Type", out.contentType())
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	_ = out.encode(w, &status) // the client may be gone; nothing more to do
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
