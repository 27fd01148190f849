package apiserver

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/apiserver/logplaneapi"
	"github.com/logplane/logplane/registry"
)

// Loading images into nodes (logplaneapi.NodeImagesPath): the API server streams the posted
// archive to the node agent's streaming endpoint (POST /images/{node}), over the same
// authenticated connection as pods/log and exec, and the agent imports it into its runtime.
//
// It is a logplane endpoint rather than the nodes/proxy subresource: nodes/proxy hands its
// caller the whole node API (exec into any pod of the node, whatever the pod's own
// permissions), while loading an image is one narrow operation that can be allowed on its own.

// nodeImagesRequest tells whether rest (a path under logplane's prefix) is nodes/NAME/images,
// and returns NAME.
func nodeImagesRequest(rest string) (string, bool) {
	parts := strings.Split(rest, "/")
	if len(parts) == 3 && parts[0] == "nodes" && parts[1] != "" && parts[2] == "images" {
		return parts[1], true
	}
	return "", false
}

// serveNodeImages loads the image archive of the request into the node named node.
func (s *Server) serveNodeImages(w http.ResponseWriter, r *http.Request, node string) {
	gr := schema.GroupResource{Group: "logplane.io", Resource: "nodes/images"}
	if r.Method != http.MethodPost {
		writeError(w, r, apierrors.NewMethodNotSupported(gr, r.Method))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != logplaneapi.ImageArchiveType && mt != "application/octet-stream") {
			writeError(w, r, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "create", gr, node,
				fmt.Sprintf("an image archive is %s, not %q", logplaneapi.ImageArchiveType, ct), 0, false))
			return
		}
	}
	if s.cfg.KubeletTLS == nil {
		writeError(w, r, apierrors.NewServiceUnavailable("this API server has no credentials for node agents (Config.KubeletTLS)"))
		return
	}
	k, ok := s.catalog.ByResource(schema.GroupVersionResource{Version: "v1", Resource: "nodes"})
	if !ok {
		writeError(w, r, apierrors.NewInternalError(fmt.Errorf("no nodes in the catalog")))
		return
	}
	obj, err := s.reg.Get(r.Context(), k, "", node, registry.ReadOptions{})
	if err != nil {
		writeError(w, r, err)
		return
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		writeError(w, r, apierrors.NewInternalError(fmt.Errorf("node decodes to %T", obj)))
		return
	}
	location, err := nodeEndpoint(n, "/images/"+url.PathEscape(node), url.Values{})
	if err != nil {
		writeError(w, r, err)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, location.String(), r.Body)
	if err != nil {
		writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	req.ContentLength = r.ContentLength
	req.Header.Set("Content-Type", logplaneapi.ImageArchiveType)
	resp, err := s.kubeletTransport().RoundTrip(req)
	if err != nil {
		writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("node agent of %s at %s: %v", node, location.Host, err)))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		writeError(w, r, nodeError(resp))
		return
	}
	var loaded logplaneapi.ImageLoad
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&loaded); err != nil {
		writeError(w, r, apierrors.NewInternalError(fmt.Errorf("node agent of %s answered: %w", node, err)))
		return
	}
	loaded.Kind, loaded.APIVersion, loaded.Node = "ImageLoad", "logplane.io/v1alpha1", node
	writeJSON(w, http.StatusOK, mediaJSON, loaded)
}
