package ingressproxy

import (
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// table is an immutable routing table: built whole from the Ingresses
// served, swapped atomically, read without locks by every request.
type table struct {
	exact    map[string]*hostRoutes // by host
	wildcard map[string]*hostRoutes // by the suffix after "*."
	any      *hostRoutes            // rules without a host; its fallback is the default backend
	served   []types.NamespacedName // the Ingresses of our classes, in precedence order
}

// hostRoutes are the paths of one host (exact, wildcard, or any), merged
// from every Ingress that names it.
type hostRoutes struct {
	exact  map[string]*route // by clean path
	prefix map[string]*route // by prefixKey
	// prefixLens are the lengths of the prefix keys, longest first: a
	// request tries only those (a long request path costs no more than
	// the rules of its host).
	prefixLens []int
	// fallback handles the requests for this host that match no path: the
	// defaultBackend of the first Ingress (in precedence order) that has
	// a rule for this host and a defaultBackend.
	fallback *route
}

// route is where a request goes.
type route struct {
	ingress types.NamespacedName
	path    string // the clean path of the rule ("" for a defaultBackend)
	// backend serves the route; nil when the Ingress names a backend that
	// is not a Service (a resource backend): answered 503.
	backend *backend
}

func newHostRoutes() *hostRoutes {
	return &hostRoutes{exact: map[string]*route{}, prefix: map[string]*route{}}
}

// match finds the route of a request for host (as requestHost gives it)
// and path (the request's decoded URL path): the host's own paths, then
// its fallback, then the default backend; nil when none applies (404).
func (t *table) match(host, reqPath string) *route {
	hr := t.hostRoutes(host)
	if r := hr.match(cleanPath(reqPath)); r != nil {
		return r
	}
	if hr.fallback != nil {
		return hr.fallback
	}
	return t.any.fallback
}

// hostRoutes picks the routes of host: an exact host, else a wildcard
// covering exactly its first label, else the rules without a host, as
// nginx picks one server block by name.
func (t *table) hostRoutes(host string) *hostRoutes {
	if hr := t.exact[host]; hr != nil {
		return hr
	}
	if s := wildcardSuffix(host); s != "" {
		if hr := t.wildcard[s]; hr != nil {
			return hr
		}
	}
	return t.any
}

// match finds the path rule for p (clean): an Exact rule equal to p, else
// the Prefix rule whose key is the longest element-wise prefix of p. An
// Exact match always wins: a Prefix rule matching the same request matches
// at most as many characters, and at equal length the spec prefers Exact.
func (hr *hostRoutes) match(p string) *route {
	if len(hr.exact) > 0 {
		if r := hr.exact[p]; r != nil {
			return r
		}
	}
	k := prefixKey(p)
	for _, n := range hr.prefixLens {
		// k[:n] is an element-wise prefix of k when it ends where an
		// element ends.
		if n > len(k) || (n < len(k) && k[n] != '/') {
			continue
		}
		if r := hr.prefix[k[:n]]; r != nil {
			return r
		}
	}
	return nil
}

// index computes prefixLens once the paths are in.
func (hr *hostRoutes) index() {
	seen := map[int]bool{}
	for k := range hr.prefix {
		if !seen[len(k)] {
			seen[len(k)] = true
			hr.prefixLens = append(hr.prefixLens, len(k))
		}
	}
	slices.SortFunc(hr.prefixLens, func(a, b int) int { return b - a })
}

// backendResolver gives the backend object of a Service backend in a
// namespace (shared by every route to the same Service port).
type backendResolver func(namespace string, b *networkingv1.IngressServiceBackend) *backend

// buildTable builds the routing table of ings (the Ingresses of our
// classes, in precedence order: oldest first, then by namespace/name), and
// reports what it had to leave out through warn.
func buildTable(ings []*networkingv1.Ingress, resolve backendResolver, warn func(Warning)) *table {
	t := &table{
		exact:    map[string]*hostRoutes{},
		wildcard: map[string]*hostRoutes{},
		any:      newHostRoutes(),
	}
	for _, ing := range ings {
		nn := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		t.served = append(t.served, nn)
		var def *route
		if db := ing.Spec.DefaultBackend; db != nil {
			def = newRoute(nn, "", db, resolve, warn)
		}
		if len(ing.Spec.Rules) == 0 && def != nil && t.any.fallback == nil {
			t.any.fallback = def
		}
		for i := range ing.Spec.Rules {
			rule := &ing.Spec.Rules[i]
			kind, key := ruleHost(rule.Host)
			var hr *hostRoutes
			switch kind {
			case hostAny:
				hr = t.any
			case hostExact:
				hr = t.exact[key]
				if hr == nil {
					hr = newHostRoutes()
					t.exact[key] = hr
				}
			case hostWildcard:
				hr = t.wildcard[key]
				if hr == nil {
					hr = newHostRoutes()
					t.wildcard[key] = hr
				}
			default:
				warn(Warning{Ingress: nn, Reason: ReasonInvalidRule, Message: fmt.Sprintf("host %q is not a valid host name or wildcard: rule ignored", clip(rule.Host))})
				continue
			}
			if def != nil && hr.fallback == nil {
				hr.fallback = def
			}
			if rule.HTTP == nil {
				continue
			}
			for j := range rule.HTTP.Paths {
				addPath(hr, nn, &rule.HTTP.Paths[j], resolve, warn)
			}
		}
	}
	t.any.index()
	for _, hr := range t.exact {
		hr.index()
	}
	for _, hr := range t.wildcard {
		hr.index()
	}
	return t
}

// addPath adds one path rule to hr unless an earlier one (an Ingress of
// higher precedence, or an earlier rule of the same one) holds it.
func addPath(hr *hostRoutes, nn types.NamespacedName, hp *networkingv1.HTTPIngressPath, resolve backendResolver, warn func(Warning)) {
	pt := networkingv1.PathTypeImplementationSpecific
	if hp.PathType != nil {
		pt = *hp.PathType
	}
	p := hp.Path
	if p == "" && pt == networkingv1.PathTypeImplementationSpecific {
		p = "/"
	}
	if !strings.HasPrefix(p, "/") {
		warn(Warning{Ingress: nn, Reason: ReasonInvalidRule, Message: fmt.Sprintf("path %q does not start with '/': rule ignored", clip(p))})
		return
	}
	clean := cleanPath(p)
	switch pt {
	case networkingv1.PathTypeExact:
		if hr.exact[clean] == nil {
			hr.exact[clean] = newRoute(nn, clean, &hp.Backend, resolve, warn)
		}
	case networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific:
		// ImplementationSpecific is Prefix here. Of two Prefix paths with
		// the same key ("/foo" and "/foo/"), the longer wins, as the spec's
		// example says; at equal length, the first.
		k := prefixKey(clean)
		if old := hr.prefix[k]; old == nil || len(clean) > len(old.path) {
			hr.prefix[k] = newRoute(nn, clean, &hp.Backend, resolve, warn)
		}
	default:
		warn(Warning{Ingress: nn, Reason: ReasonInvalidRule, Message: fmt.Sprintf("pathType %q is not Exact, Prefix or ImplementationSpecific: rule ignored", clip(string(pt)))})
	}
}

func newRoute(nn types.NamespacedName, clean string, b *networkingv1.IngressBackend, resolve backendResolver, warn func(Warning)) *route {
	r := &route{ingress: nn, path: clean}
	if b.Service == nil {
		warn(Warning{Ingress: nn, Reason: ReasonUnsupportedBackend, Message: "only Service backends are supported: requests for this rule are answered 503"})
		return r
	}
	r.backend = resolve(nn.Namespace, b.Service)
	return r
}

// precedence sorts Ingresses as the route table wants them: the oldest
// first, then by namespace and name (the order the Gateway API gives
// conflicting routes; ingress-nginx also lets the oldest Ingress win).
func precedence(ings []*networkingv1.Ingress) {
	slices.SortFunc(ings, func(a, b *networkingv1.Ingress) int {
		if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// clip shortens what a user wrote for a message.
func clip(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
