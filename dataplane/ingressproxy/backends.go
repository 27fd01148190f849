package ingressproxy

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// backendKey names a Service port as an Ingress backend names it: by
// number (the Service's port, not the target port) or by name.
type backendKey struct {
	service types.NamespacedName
	port    networkingv1.ServiceBackendPort
}

// backend is one Service port that routes send requests to. Routes of
// every table built while it is wanted share it; its endpoints are
// swapped as the Service and its EndpointSlices change, without a new
// table.
type backend struct {
	key       backendKey
	endpoints atomic.Pointer[endpointSet]
}

// endpointSet is an immutable list of ready endpoints ("ip:port"), with
// the round-robin cursor of the requests that use it.
type endpointSet struct {
	addrs []string
	next  atomic.Uint32
}

func newEndpointSet(addrs []string) *endpointSet {
	s := &endpointSet{addrs: addrs}
	// Proxies that start together do not all begin with the same endpoint.
	s.next.Store(rand.Uint32())
	return s
}

// pick gives the index of the endpoint a new request starts with.
func (s *endpointSet) pick() int {
	return int(s.next.Add(1) % uint32(len(s.addrs)))
}

// resolveEndpoints lists the ready endpoints of the Service port port
// names: the port of svc it refers to (by number or name), the port of the
// same name in each EndpointSlice, the first address of every endpoint
// that is ready (an unknown readiness counts as ready, as the
// EndpointSlice API says). TCP only; IPv4 and IPv6 slices; duplicates
// across slices merged; sorted.
func resolveEndpoints(svc *corev1.Service, slicesByName map[string]*discoveryv1.EndpointSlice, port networkingv1.ServiceBackendPort) []string {
	if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if (port.Name != "" && p.Name == port.Name) || (port.Name == "" && p.Port == port.Number) {
			sp = p
			break
		}
	}
	if sp == nil {
		return nil
	}
	var addrs []string
	for _, sl := range slicesByName {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var num int32
		for _, p := range sl.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == sp.Name && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) && p.Port != nil {
				num = *p.Port
				break
			}
		}
		if num <= 0 || num > 65535 {
			continue
		}
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			if len(ep.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil {
				continue // the API server validates addresses; skip what it would refuse
			}
			addrs = append(addrs, net.JoinHostPort(a.Unmap().String(), strconv.Itoa(int(num))))
		}
	}
	slices.Sort(addrs)
	return slices.Compact(addrs)
}

// endpointsKey is the request context key of the endpointSet a request is
// sent to.
type endpointsKey struct{}

// balancer is the proxy's http.RoundTripper: it sends each request to an
// endpoint of its endpointSet, round-robin, over a pooled keep-alive
// transport, and when an idempotent request cannot connect to an endpoint
// it tries the next one (as nginx's proxy_next_upstream error), up to
// maxTries endpoints.
type balancer struct {
	transport *http.Transport
	maxTries  int
}

func (b *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	set, _ := req.Context().Value(endpointsKey{}).(*endpointSet)
	if set == nil || len(set.addrs) == 0 {
		return nil, errNoEndpoints
	}
	tries := 1
	var body *unreadBody
	if idempotent(req.Method) {
		tries = min(b.maxTries, len(set.addrs))
		if tries > 1 && req.Body != nil && req.Body != http.NoBody {
			// The transport closes the body when it gives up; keep it
			// open (the server closes it at the end of the request) and
			// learn whether any of it was sent.
			body = &unreadBody{ReadCloser: req.Body}
		}
	}
	start := set.pick()
	for i := 0; ; i++ {
		out := *req // the transport must not see a request that changes under it
		u := *req.URL
		u.Host = set.addrs[(start+i)%len(set.addrs)]
		out.URL = &u
		if body != nil {
			out.Body = body
		}
		resp, err := b.transport.RoundTrip(&out)
		if err == nil || i+1 >= tries || !dialFailed(err) || (body != nil && body.read.Load()) {
			return resp, err
		}
	}
}

var errNoEndpoints = errors.New("ingressproxy: no ready endpoint")

// dialFailed reports whether err is a failure to connect (nothing was
// sent to the endpoint).
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// idempotent methods are retried on another endpoint (RFC 9110 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// unreadBody passes a request body through, records whether any of it was
// read, and leaves closing to the body's owner.
type unreadBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (b *unreadBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.ReadCloser.Read(p)
}

func (b *unreadBody) Close() error { return nil }
