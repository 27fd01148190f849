package serviceproxy

import (
	"strings"

	"sigs.k8s.io/knftables"
)

// elementStore mirrors the elements of one set or map of the table, as
// kube-proxy's nftElementStorage, but owned: each element records which
// Service ports want it (several ports of one Service share their cluster
// IP in cluster-ips; several Services share an endpoint in the hairpin
// set), so that a partial sync can add and remove elements for the ports it
// rewrites without looking at any other port. Where owners disagree on a
// map element's value, the first owner in name order wins.
type elementStore struct {
	isMap bool
	name  string
	// owners[key] records which owners want key, with which value.
	owners map[string]*owned
	// inKernel[key] is the value committed (or about to be, in the
	// transaction being built).
	inKernel map[string]string
	comments map[string]string
	touched  map[string]struct{}
}

// owned is the owners of one element: most have one, so it is kept
// inline; more holds the others.
type owned struct {
	owner, value string
	more         map[string]string
}

func newElementStore(isMap bool, name string) *elementStore {
	return &elementStore{
		isMap:    isMap,
		name:     name,
		owners:   map[string]*owned{},
		inKernel: map[string]string{},
		comments: map[string]string{},
		touched:  map[string]struct{}{},
	}
}

func joinKey(parts []string) string   { return strings.Join(parts, " . ") }
func splitKey(joined string) []string { return strings.Split(joined, " . ") }

// reset forgets everything: the caller flushes the set in the kernel.
func (s *elementStore) reset() {
	clear(s.owners)
	clear(s.inKernel)
	clear(s.comments)
	clear(s.touched)
}

func (s *elementStore) acquire(owner string, key, value []string, comment string) {
	k := joinKey(key)
	v := joinKey(value)
	o := s.owners[k]
	switch {
	case o == nil:
		s.owners[k] = &owned{owner: owner, value: v}
	case o.owner == owner || o.owner == "":
		o.owner, o.value = owner, v
	default:
		if o.more == nil {
			o.more = map[string]string{}
		}
		o.more[owner] = v
	}
	if comment != "" {
		s.comments[k] = comment
	}
	s.touched[k] = struct{}{}
}

func (s *elementStore) release(owner, key string) {
	o := s.owners[key]
	if o == nil {
		return
	}
	if o.owner == owner {
		o.owner, o.value = "", ""
		for n, v := range o.more { // promote another owner
			o.owner, o.value = n, v
			delete(o.more, n)
			break
		}
	} else {
		delete(o.more, owner)
	}
	if o.owner == "" {
		delete(s.owners, key)
	}
	s.touched[key] = struct{}{}
}

// want returns the value the element should have and whether it should exist.
func (s *elementStore) want(key string) (string, bool) {
	o := s.owners[key]
	if o == nil {
		return "", false
	}
	if len(o.more) == 0 {
		return o.value, true
	}
	best, value := o.owner, o.value
	for n, v := range o.more {
		if n < best {
			best, value = n, v
		}
	}
	return value, true
}

func (s *elementStore) element(key, value string) *knftables.Element {
	e := &knftables.Element{Key: splitKey(key)}
	if s.isMap {
		e.Map = s.name
		if value != "" {
			e.Value = splitKey(value)
		}
	} else {
		e.Set = s.name
	}
	if c, ok := s.comments[key]; ok && value != "" {
		e.Comment = &c
	}
	return e
}

// writeDeletes adds to tx the deletions (and the first half of value
// changes) of the elements touched since the last commit.
func (s *elementStore) writeDeletes(tx *knftables.Transaction) {
	for k := range s.touched {
		have, in := s.inKernel[k]
		want, ok := s.want(k)
		if in && (!ok || (s.isMap && want != have)) {
			tx.Delete(s.element(k, ""))
			delete(s.inKernel, k)
		}
	}
}

// writeAdds adds to tx the elements touched since the last commit that are
// wanted and not in the kernel, and forgets what was touched.
func (s *elementStore) writeAdds(tx *knftables.Transaction) {
	for k := range s.touched {
		want, ok := s.want(k)
		if _, in := s.inKernel[k]; ok && !in {
			tx.Add(s.element(k, want))
			s.inKernel[k] = want
		}
		if !ok {
			delete(s.comments, k)
		}
	}
	clear(s.touched)
}

func (s *elementStore) len() int { return len(s.inKernel) }
