package serviceproxy

import (
	"sort"
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
	// owners[key][owner] is the value (joined) that owner wants for key.
	owners map[string]map[string]string
	// inKernel[key] is the value committed (or about to be, in the
	// transaction being built).
	inKernel map[string]string
	comments map[string]string
	touched  map[string]struct{}
}

func newElementStore(isMap bool, name string) *elementStore {
	return &elementStore{
		isMap:    isMap,
		name:     name,
		owners:   map[string]map[string]string{},
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
	o := s.owners[k]
	if o == nil {
		o = map[string]string{}
		s.owners[k] = o
	}
	o[owner] = joinKey(value)
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
	delete(o, owner)
	if len(o) == 0 {
		delete(s.owners, key)
	}
	s.touched[key] = struct{}{}
}

// want returns the value the element should have and whether it should exist.
func (s *elementStore) want(key string) (string, bool) {
	o := s.owners[key]
	if len(o) == 0 {
		return "", false
	}
	if len(o) == 1 {
		for _, v := range o {
			return v, true
		}
	}
	names := make([]string, 0, len(o))
	for n := range o {
		names = append(names, n)
	}
	sort.Strings(names)
	return o[names[0]], true
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
