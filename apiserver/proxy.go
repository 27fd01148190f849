package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/httpstream"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	utilproxy "k8s.io/apimachinery/pkg/util/proxy"

	"github.com/logplane/logplane/registry"
)

// The proxy subresources (pods/proxy, services/proxy) are served as kube-apiserver serves them
// (pkg/registry/core/pod/rest/subresources.go and pkg/registry/core/service/proxy.go ProxyREST,
// and ResourceLocation in pkg/registry/core/pod/strategy.go and
// pkg/registry/core/service/storage): the name is `[scheme:]name[:port]`
// (utilnet.SplitSchemeNamePort), the rest of the path after /proxy is the path on the target,
// and k8s.io/apimachinery's UpgradeAwareHandler forwards the request (every method, upgrades
// too), rewriting links in HTML answers to stay under the proxy path. A pod is reached at its IP
// and the port named (else its first container's first port); a Service at one of its
// Endpoints' ready addresses, picked at random, whose pod still has that address. The API
// server dials pods directly, as kube-apiserver does: pod addresses must be reachable from it
// (they are on a logplane machine, where the server and the pods' bridge share the host).

// isProxy tells whether the request is for pods/proxy or services/proxy.
func isProxy(info requestInfo) bool {
	return info.kind != nil && info.kind.Group == "" && info.name != "" && info.subresource == "proxy" &&
		(info.kind.Resource == "pods" || info.kind.Resource == "services")
}

// serveProxy serves pods/proxy and services/proxy.
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request, info requestInfo) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: info.kind.Resource + "/proxy"}, r.Method))
		return
	}
	var (
		location *url.URL
		err      error
	)
	if info.kind.Resource == "pods" {
		location, err = s.podLocation(r.Context(), info.namespace, info.name)
	} else {
		location, err = s.serviceLocation(r.Context(), info.namespace, info.name)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	location.Path = utilnet.JoinPreservingTrailingSlash(location.Path, proxyPath(r, info))
	if rec, ok := w.(*recorder); ok && httpstream.IsUpgradeRequest(r) {
		// An upgraded connection is hijacked: hand the proxy the connection itself.
		rec.code = http.StatusSwitchingProtocols
		w = rec.ResponseWriter
	}
	h := utilproxy.NewUpgradeAwareHandler(location, s.proxyTransport(), true, false, proxyResponder{})
	h.ServeHTTP(w, r)
}

// proxyPath is the path on the target: what follows the proxy subresource, with a leading slash,
// and a trailing one if the request had one (getRequestOptions in k8s.io/apiserver's handlers).
func proxyPath(r *http.Request, info requestInfo) string {
	p := ""
	if len(info.segs) > 3 {
		p = strings.Join(info.segs[3:], "/")
	}
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if strings.HasSuffix(r.URL.Path, "/") && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// podLocation is pod.ResourceLocation: id is "name", "name:port" or "scheme:name:port"; without
// a port, the first port of the first container that declares one; the pod's IP must be a
// global unicast address.
func (s *Server) podLocation(ctx context.Context, ns, id string) (*url.URL, error) {
	scheme, name, port, valid := utilnet.SplitSchemeNamePort(id)
	if !valid {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid pod request %q", id))
	}
	pod, err := s.getPod(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	if port == "" {
		for _, c := range pod.Spec.Containers {
			if len(c.Ports) > 0 {
				port = strconv.Itoa(int(c.Ports[0].ContainerPort))
				break
			}
		}
	}
	ip := pod.Status.PodIP
	if len(pod.Status.PodIPs) > 0 {
		ip = pod.Status.PodIPs[0].IP
	}
	if a, err := netip.ParseAddr(ip); err != nil || !net.IP(a.AsSlice()).IsGlobalUnicast() {
		return nil, apierrors.NewBadRequest("address not allowed")
	}
	loc := &url.URL{Scheme: scheme, Host: ip}
	if port != "" {
		loc.Host = net.JoinHostPort(ip, port)
	}
	return loc, nil
}

// serviceLocation is the Service REST's ResourceLocation: id is "name", "name:port" or
// "scheme:name:port", the port a number (the Service port of that number, 503 if none) or a
// port name; the target is a random ready address of the Service's Endpoints for that port
// whose pod has the address (503 if there is none).
func (s *Server) serviceLocation(ctx context.Context, ns, id string) (*url.URL, error) {
	scheme, name, portStr, valid := utilnet.SplitSchemeNamePort(id)
	if !valid {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid service request %q", id))
	}
	if portNum, err := strconv.ParseInt(portStr, 10, 64); err == nil {
		svc, err := getCore[*corev1.Service](ctx, s, "services", ns, name)
		if err != nil {
			return nil, err
		}
		found := false
		for _, p := range svc.Spec.Ports {
			if int64(p.Port) == portNum {
				portStr, found = p.Name, true
				break
			}
		}
		if !found {
			return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("no service port %d found for service %q", portNum, name))
		}
	}
	eps, err := getCore[*corev1.Endpoints](ctx, s, "endpoints", ns, name)
	if err != nil {
		return nil, err
	}
	if len(eps.Subsets) == 0 {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("no endpoints available for service %q", name))
	}
	ssSeed := rand.IntN(len(eps.Subsets))
	for ssi := range len(eps.Subsets) {
		ss := &eps.Subsets[(ssSeed+ssi)%len(eps.Subsets)]
		if len(ss.Addresses) == 0 {
			continue
		}
		for _, p := range ss.Ports {
			if p.Name != portStr {
				continue
			}
			addrSeed := rand.IntN(len(ss.Addresses))
			for try := range len(ss.Addresses) {
				addr := ss.Addresses[(addrSeed+try)%len(ss.Addresses)]
				if err := s.validAddress(ctx, ns, &addr); err != nil {
					s.logger.Debug("service proxy: endpoint skipped", "service", ns+"/"+name, "address", addr.IP, "reason", err)
					continue
				}
				return &url.URL{Scheme: scheme, Host: net.JoinHostPort(addr.IP, strconv.Itoa(int(p.Port)))}, nil
			}
		}
	}
	return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("no endpoints available for service %q", id))
}

// validAddress is isValidAddress of the Service REST: the address names a pod of the namespace
// that has that IP.
func (s *Server) validAddress(ctx context.Context, ns string, addr *corev1.EndpointAddress) error {
	if addr.TargetRef == nil {
		return fmt.Errorf("address %s has no target ref", addr.IP)
	}
	if addr.TargetRef.Namespace != ns {
		return fmt.Errorf("address %s: namespace %q is not the Service's", addr.IP, addr.TargetRef.Namespace)
	}
	pod, err := s.getPod(ctx, ns, addr.TargetRef.Name)
	if err != nil {
		return err
	}
	for _, ip := range pod.Status.PodIPs {
		if ip.IP == addr.IP {
			return nil
		}
	}
	return fmt.Errorf("pod %s/%s does not have address %s", ns, pod.Name, addr.IP)
}

func (s *Server) getPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	return getCore[*corev1.Pod](ctx, s, "pods", ns, name)
}

// getCore reads a core v1 object of the resource.
func getCore[T runtime.Object](ctx context.Context, s *Server, resource, ns, name string) (T, error) {
	var zero T
	k, ok := s.catalog.ByResource(schema.GroupVersionResource{Version: "v1", Resource: resource})
	if !ok {
		return zero, apierrors.NewInternalError(fmt.Errorf("no %s in the catalog", resource))
	}
	obj, err := s.reg.Get(ctx, k, ns, name, registry.ReadOptions{})
	if err != nil {
		return zero, err
	}
	o, ok := obj.(T)
	if !ok {
		return zero, apierrors.NewInternalError(fmt.Errorf("%s %s/%s decodes to %T", resource, ns, name, obj))
	}
	return o, nil
}

// proxyClient is the default proxy transport, made on first use.
type proxyClient struct {
	once sync.Once
	rt   *http.Transport
}

// proxyTransport is Config.ProxyTransport, or kube-apiserver's default proxy transport
// (CreateProxyTransport: pods are reached by IP, so their certificates are not verified).
func (s *Server) proxyTransport() http.RoundTripper {
	if s.cfg.ProxyTransport != nil {
		return s.cfg.ProxyTransport
	}
	s.proxyRT.once.Do(func() {
		s.proxyRT.rt = utilnet.SetTransportDefaults(&http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as kube-apiserver: pods are dialled by IP
		})
	})
	return s.proxyRT.rt
}

// proxyResponder answers a failed proxying with a Status: the proxy transport's errors are
// already 503 ("error trying to reach service: ..."); a failed upgrade dial is made one.
type proxyResponder struct{}

func (proxyResponder) Error(w http.ResponseWriter, r *http.Request, err error) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		err = apierrors.NewServiceUnavailable(fmt.Sprintf("error trying to reach service: %v", err))
	}
	writeError(w, r, err)
}
