package ingressproxy

import (
	"path"
	"strings"
)

// requestHost is the name a request asks for, as the route table keys
// hosts: the Host header (or HTTP/2 :authority) without its port, in lower
// case, without a trailing dot. It allocates only when the name is not
// already in that form.
func requestHost(hostport string) string {
	h := hostport
	if strings.HasPrefix(h, "[") {
		// An IPv6 literal: "[::1]:80" or "[::1]".
		if i := strings.IndexByte(h, ']'); i >= 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	return lowerASCII(h)
}

// lowerASCII lower-cases ASCII letters, returning s itself when it has
// none in upper case.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// hostKind tells how an Ingress rule's host matches.
type hostKind int

const (
	hostAny      hostKind = iota // "": every host
	hostExact                    // "foo.bar.com"
	hostWildcard                 // "*.bar.com": exactly one more label
	hostInvalid                  // anything else (the API server rejects it)
)

// ruleHost classifies an Ingress rule's (or TLS section's) host and gives
// the key the table uses: the name itself for an exact host, the suffix
// after "*." for a wildcard. Names are compared case-insensitively, without
// a trailing dot, as DNS does.
func ruleHost(h string) (hostKind, string) {
	if h == "" {
		return hostAny, ""
	}
	h = lowerASCII(strings.TrimSuffix(h, "."))
	if strings.HasPrefix(h, "*.") {
		suffix := h[2:]
		if suffix == "" || !validName(suffix) {
			return hostInvalid, ""
		}
		return hostWildcard, suffix
	}
	if !validName(h) {
		return hostInvalid, ""
	}
	return hostExact, h
}

// validName accepts what can be a request's host name: non-empty labels of
// letters, digits, '-' and '_' (the API server allows only DNS-1123
// subdomains; this is only a guard against what it would have refused).
func validName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			label++
			if label > 63 {
				return false
			}
		default:
			return false
		}
	}
	return label > 0
}

// wildcardSuffix is the key under which a wildcard rule could match host:
// what follows its first label ("bar.com" for "foo.bar.com"), or "" when
// host has a single label.
func wildcardSuffix(host string) string {
	i := strings.IndexByte(host, '.')
	if i <= 0 {
		return ""
	}
	return host[i+1:]
}

// cleanPath is the form in which paths are compared: a leading '/', no
// empty, "." or ".." elements (".." removes the element before it, never
// going above the root), and the trailing '/' kept when there was one, as
// nginx normalizes a request's URI before it matches locations. It returns
// p itself when p is already clean.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	if isClean(p) {
		return p
	}
	c := path.Clean(p)
	if c != "/" && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")) {
		c += "/"
	}
	return c
}

// isClean reports whether p (starting with '/') has no "//", "/./" or
// "/../" and does not end in "/." or "/..".
func isClean(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		rest := p[i+1:]
		switch {
		case strings.HasPrefix(rest, "/"):
			return false
		case rest == "." || strings.HasPrefix(rest, "./"):
			return false
		case rest == ".." || strings.HasPrefix(rest, "../"):
			return false
		}
	}
	return true
}

// prefixKey is the key of a Prefix path: the clean path without its
// trailing '/', so that "/foo" and "/foo/" both match "/foo", "/foo/" and
// "/foo/bar"; "" for "/", which matches every path.
func prefixKey(clean string) string {
	return strings.TrimRight(clean, "/")
}
