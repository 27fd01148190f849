package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	utilproxy "k8s.io/apimachinery/pkg/util/proxy"
	streamproxy "k8s.io/apiserver/pkg/util/proxy"

	"github.com/logplane/logplane/registry"
)

// The pod streaming subresources (pods/log, pods/exec, pods/attach, pods/portforward) are served
// by proxying to the streaming endpoint of the node agent that runs the pod, as the Kubernetes
// API server proxies to the kubelet: the agent's address is the Node's InternalIP (else its
// Hostname) and status.daemonEndpoints.kubeletEndpoint.Port, spoken to over HTTPS with
// Config.KubeletTLS (a client certificate of the cluster CA). Exec and attach over WebSocket with
// the v5 protocol (kubectl 1.30+) are translated to SPDY towards the agent; port-forward over
// WebSocket tunnels SPDY; SPDY upgrades pass through.

// podStreamSubresources are the subresources of pods served by proxying to the node.
var podStreamSubresources = map[string]bool{"log": true, "exec": true, "attach": true, "portforward": true}

// isPodStream tells whether the request is for a pod streaming subresource.
func isPodStream(info requestInfo) bool {
	return info.kind != nil && info.kind.Group == "" && info.kind.Resource == "pods" &&
		info.name != "" && podStreamSubresources[info.subresource]
}

// servePodStream serves pods/log, pods/exec, pods/attach and pods/portforward.
func (s *Server) servePodStream(w http.ResponseWriter, r *http.Request, info requestInfo) {
	switch {
	case info.subresource == "log" && r.Method != http.MethodGet:
		writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "pods/log"}, r.Method))
		return
	case info.subresource != "log" && r.Method != http.MethodGet && r.Method != http.MethodPost:
		writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "pods/" + info.subresource}, r.Method))
		return
	}
	if s.cfg.KubeletTLS == nil {
		writeError(w, r, apierrors.NewServiceUnavailable("this API server has no credentials for node agents (Config.KubeletTLS)"))
		return
	}
	obj, err := s.reg.Get(r.Context(), info.kind, info.namespace, info.name, registry.ReadOptions{})
	if err != nil {
		writeError(w, r, err)
		return
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		writeError(w, r, apierrors.NewInternalError(fmt.Errorf("pod decodes to %T", obj)))
		return
	}
	q := r.URL.Query()
	ctx := r.Context()
	var location *url.URL
	switch info.subresource {
	case "log":
		location, err = s.podLogLocation(ctx, pod, q)
	case "exec", "attach":
		location, err = s.podCommandLocation(ctx, pod, info.subresource, q)
	case "portforward":
		location, err = s.nodeLocation(ctx, pod, "/portForward/"+pod.Namespace+"/"+pod.Name, url.Values{})
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	transport := s.kubeletTransport()
	if info.subresource == "log" {
		s.proxyLogs(w, r, location, transport)
		return
	}
	// Streams are hijacked connections: hand the proxies the connection itself.
	if rec, ok := w.(*recorder); ok {
		rec.code = http.StatusSwitchingProtocols
		w = rec.ResponseWriter
	}
	upgrade := utilproxy.NewUpgradeAwareHandler(location, transport, false, true, streamResponder{})
	upgrade.UseLocationHost = true
	switch {
	case info.subresource != "portforward" && wsstream.IsWebSocketRequestWithStreamCloseProtocol(r):
		opts := streamproxy.Options{
			Stdin: isTrue(q.Get("stdin")), Stdout: isTrue(q.Get("stdout")), Stderr: isTrue(q.Get("stderr")), Tty: isTrue(q.Get("tty")),
		}
		streamproxy.NewStreamTranslatorHandler(location, transport, 0, opts).ServeHTTP(w, r)
	case info.subresource == "portforward" && wsstream.IsWebSocketRequestWithTunnelingProtocol(r):
		streamproxy.NewTunnelingHandler(upgrade).ServeHTTP(w, r)
	default:
		upgrade.ServeHTTP(w, r)
	}
}

// kubeletClient is the API server's HTTP transport to node agents, made on first use.
type kubeletClient struct {
	once sync.Once
	rt   *http.Transport
}

// kubeletTransport is the HTTP transport to node agents.
func (s *Server) kubeletTransport() *http.Transport {
	s.kubelet.once.Do(func() {
		tc := s.cfg.KubeletTLS.Clone()
		tc.NextProtos = []string{"http/1.1"}
		s.kubelet.rt = &http.Transport{
			TLSClientConfig:     tc,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     90 * time.Second,
		}
	})
	return s.kubelet.rt
}

// nodeLocation is the URL of path on the streaming endpoint of the pod's node.
func (s *Server) nodeLocation(ctx context.Context, pod *corev1.Pod, path string, q url.Values) (*url.URL, error) {
	if pod.Spec.NodeName == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name))
	}
	k, ok := s.catalog.ByResource(schema.GroupVersionResource{Version: "v1", Resource: "nodes"})
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("no nodes in the catalog"))
	}
	obj, err := s.reg.Get(ctx, k, "", pod.Spec.NodeName, registry.ReadOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("node %s of pod %s: %v", pod.Spec.NodeName, pod.Name, err))
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("node decodes to %T", obj))
	}
	return nodeEndpoint(node, path, q)
}

// nodeEndpoint is the URL of path on the node agent's streaming endpoint: the Node's InternalIP
// (else its Hostname) and status.daemonEndpoints.kubeletEndpoint.Port, as Kubernetes reaches
// the kubelet. 503 if the Node names none.
func nodeEndpoint(node *corev1.Node, path string, q url.Values) (*url.URL, error) {
	host := ""
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == t && host == "" {
				host = a.Address
			}
		}
	}
	port := node.Status.DaemonEndpoints.KubeletEndpoint.Port
	if host == "" || port == 0 {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s has no streaming endpoint", node.Name))
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(int(port))), Path: path, RawQuery: q.Encode()}, nil
}

// container picks the container a request names: the only one when the pod has one and none
// is named, as Kubernetes does.
func container(pod *corev1.Pod, name string) (*corev1.Container, error) {
	if name == "" {
		if len(pod.Spec.Containers) == 1 {
			return &pod.Spec.Containers[0], nil
		}
		names := make([]string, 0, len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
		for _, c := range pod.Spec.Containers {
			names = append(names, c.Name)
		}
		msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", pod.Name, names)
		if len(pod.Spec.InitContainers) > 0 {
			var inits []string
			for _, c := range pod.Spec.InitContainers {
				inits = append(inits, c.Name)
			}
			msg += fmt.Sprintf(" or one of the init containers: %v", inits)
		}
		return nil, apierrors.NewBadRequest(msg)
	}
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i], nil
			}
		}
	}
	return nil, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
}

func containerStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, css := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for i := range css {
			if css[i].Name == name {
				return &css[i]
			}
		}
	}
	return nil
}

// podLogLocation checks a pods/log request as Kubernetes does and makes its URL on the node.
func (s *Server) podLogLocation(ctx context.Context, pod *corev1.Pod, q url.Values) (*url.URL, error) {
	c, err := container(pod, q.Get("container"))
	if err != nil {
		return nil, err
	}
	previous := isTrue(q.Get("previous"))
	if !previous {
		if cs := containerStatus(pod, c.Name); cs == nil || (cs.State.Waiting != nil && cs.LastTerminationState.Terminated == nil && cs.RestartCount == 0) {
			reason := "ContainerCreating"
			if cs != nil && cs.State.Waiting.Reason != "" {
				reason = cs.State.Waiting.Reason
			}
			return nil, apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: %s", c.Name, pod.Name, reason))
		}
	}
	out := url.Values{}
	for _, p := range []string{"follow", "previous", "timestamps"} {
		if isTrue(q.Get(p)) {
			out.Set(p, "true")
		}
	}
	for _, p := range []string{"tailLines", "sinceSeconds", "limitBytes"} {
		if v := q.Get(p); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("%s: %q must be a non-negative integer", p, v))
			}
			out.Set(p, v)
		}
	}
	if v := q.Get("sinceTime"); v != "" {
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("sinceTime: %v", err))
		}
		out.Set("sinceTime", v)
	}
	return s.nodeLocation(ctx, pod, "/containerLogs/"+pod.Namespace+"/"+pod.Name+"/"+c.Name, out)
}

// podCommandLocation checks a pods/exec or pods/attach request and makes its URL on the node.
func (s *Server) podCommandLocation(ctx context.Context, pod *corev1.Pod, sub string, q url.Values) (*url.URL, error) {
	c, err := container(pod, q.Get("container"))
	if err != nil {
		return nil, err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot %s into a container in a completed pod; current phase is %s", sub, pod.Status.Phase))
	}
	if cs := containerStatus(pod, c.Name); cs == nil || cs.State.Running == nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("container %s is not running in pod %s", c.Name, pod.Name))
	}
	out := url.Values{}
	if sub == "exec" {
		cmd := q["command"]
		if len(cmd) == 0 {
			return nil, apierrors.NewBadRequest("you must specify at least one command for the container")
		}
		out["command"] = cmd
	}
	for from, to := range map[string]string{"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty"} {
		if isTrue(q.Get(from)) {
			out.Set(to, "1")
		}
	}
	if out.Get("input") == "" && out.Get("output") == "" && out.Get("error") == "" {
		return nil, apierrors.NewBadRequest("you must specify at least 1 of stdin, stdout, stderr")
	}
	return s.nodeLocation(ctx, pod, "/"+sub+"/"+pod.Namespace+"/"+pod.Name+"/"+c.Name, out)
}

// proxyLogs copies the node's log stream to the client, flushing as it goes (follow).
func (s *Server) proxyLogs(w http.ResponseWriter, r *http.Request, location *url.URL, transport http.RoundTripper) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, location.String(), nil)
	if err != nil {
		writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	resp, err := transport.RoundTrip(req)
	if err != nil {
		writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("node agent at %s: %v", location.Host, err)))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		writeError(w, r, nodeError(resp))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher) // nil: no flushing, the copy still works
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client went away
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return // io.EOF at the end, or the node went away: the stream just ends
		}
	}
}

// nodeError turns an error answer of a node agent into a Status error.
func nodeError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)) // a partial body still says something
	var st metav1.Status
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && json.Unmarshal(body, &st) == nil && st.Code != 0 {
		return apierrors.FromObject(&st)
	}
	return apierrors.NewGenericServerResponse(resp.StatusCode, "get", schema.GroupResource{Resource: "pods"}, "", strings.TrimSpace(string(body)), 0, false)
}

// streamResponder answers proxy errors of upgrade requests.
type streamResponder struct{}

func (streamResponder) Error(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("error dialing the node agent: %v", err)))
}

// KubeletClientTLS makes the client TLS configuration the API server uses towards node agents:
// certPEM and keyPEM are a client certificate of the cluster CA (group system:masters), caPEM
// verifies the agents' serving certificates.
func KubeletClientTLS(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("apiserver: node client certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("apiserver: no CA certificate in the CA PEM")
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
