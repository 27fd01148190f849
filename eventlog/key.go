package eventlog

import (
	"fmt"
	"strings"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// Key names one object in the log.
type Key struct {
	Group     string // empty for the core group
	Resource  string // plural, lower case: pods, deployments
	Namespace string // empty for cluster-scoped objects
	Name      string
}

// KeyOf returns the key of the object an event is about.
func KeyOf(ev *eventv1.ObjectChanged) Key {
	r := ev.GetRef()
	return Key{Group: r.GetGroup(), Resource: r.GetResource(), Namespace: r.GetNamespace(), Name: r.GetName()}
}

func (k Key) String() string {
	gr := k.Resource
	if k.Group != "" {
		gr += "." + k.Group
	}
	if k.Namespace == "" {
		return gr + "/" + k.Name
	}
	return gr + "/" + k.Namespace + "/" + k.Name
}

func (k Key) valid() error {
	if k.Resource == "" || k.Name == "" {
		return fmt.Errorf("%w: key %q needs a resource and a name", ErrInvalid, k)
	}
	return nil
}

// subject is <prefix>.obj.<group|core>.<resource>.<namespace|_>.<name>, each token escaped.
func (k Key) subject(prefix string) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(k.Group) + len(k.Resource) + len(k.Namespace) + len(k.Name) + 16)
	b.WriteString(prefix)
	b.WriteString(".obj.")
	b.WriteString(groupToken(k.Group))
	b.WriteByte('.')
	b.WriteString(escapeToken(k.Resource))
	b.WriteByte('.')
	b.WriteString(namespaceToken(k.Namespace))
	b.WriteByte('.')
	b.WriteString(escapeToken(k.Name))
	return b.String()
}

// Filter selects the events of one resource, optionally in one namespace, or of everything.
type Filter struct {
	Group     string
	Resource  string // empty: every resource (Group and Namespace are then ignored)
	Namespace string // empty: every namespace
}

func (f Filter) subject(prefix string) string {
	if f.Resource == "" {
		return prefix + ".obj.>"
	}
	s := prefix + ".obj." + groupToken(f.Group) + "." + escapeToken(f.Resource) + "."
	if f.Namespace == "" {
		return s + ">"
	}
	return s + namespaceToken(f.Namespace) + ".*"
}

func groupToken(g string) string {
	if g == "" {
		return "core"
	}
	return escapeToken(g)
}

func namespaceToken(ns string) string {
	if ns == "" {
		return "_"
	}
	return escapeToken(ns)
}

// escapeToken makes s a single NATS subject token: characters that NATS gives a meaning to
// (. * > and white space), '%', and anything outside printable ASCII are written as %XX.
// Kubernetes names are mostly [a-z0-9.-], so in practice only dots are escaped.
func escapeToken(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func needsEscape(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' || c == '%'
}

// hasSubject reports whether subject is the key's subject under prefix, without allocating for
// the usual names.
func (k Key) hasSubject(prefix, subject string) bool {
	var buf [192]byte
	b := append(buf[:0], prefix...)
	b = append(b, ".obj."...)
	if k.Group == "" {
		b = append(b, "core"...)
	} else {
		b = appendToken(b, k.Group)
	}
	b = append(b, '.')
	b = appendToken(b, k.Resource)
	b = append(b, '.')
	if k.Namespace == "" {
		b = append(b, '_')
	} else {
		b = appendToken(b, k.Namespace)
	}
	b = append(b, '.')
	b = appendToken(b, k.Name)
	return string(b) == subject
}

// appendToken appends escapeToken(s) to b.
func appendToken(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

// Subject returns the subject of key's events in this log.
func (l *Log) Subject(key Key) string { return key.subject(l.cfg.Prefix) }
