package projections

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/logplane/logplane/kinds"
)

// entry holds the live revision of one key. It stays the same while the key lives, so that
// indexes, which point at entries, change only when labels or indexed fields do.
type entry struct{ obj *Object }

type refSet map[*entry]struct{}

// index maps a label key or field name, then a value, to the objects that have it.
type index map[string]map[string]refSet

func (ix index) add(k, v string, r *entry) {
	byVal := ix[k]
	if byVal == nil {
		byVal = map[string]refSet{}
		ix[k] = byVal
	}
	set := byVal[v]
	if set == nil {
		set = refSet{}
		byVal[v] = set
	}
	set[r] = struct{}{}
}

func (ix index) del(k, v string, r *entry) {
	byVal := ix[k]
	set := byVal[v]
	delete(set, r)
	if len(set) == 0 {
		delete(byVal, v)
		if len(byVal) == 0 {
			delete(ix, k)
		}
	}
}

// table holds the live objects of one resource and its indexes.
type table struct {
	kind   *kinds.Kind                  // nil for a resource this binary does not know
	byNS   map[string]map[string]*entry // namespace → name → live revision
	count  int
	labels index
	fields index // only the store's indexed fields
}

func newTable() *table {
	return &table{byNS: map[string]map[string]*entry{}, labels: index{}, fields: index{}}
}

func (t *table) get(ns, name string) *Object {
	if e := t.byNS[ns][name]; e != nil {
		return e.obj
	}
	return nil
}

// put makes obj the live revision of its key, replacing old (nil if there was none), and updates
// the indexes for what changed between the two.
func (t *table) put(old, obj *Object, indexed map[string]bool) {
	ns, name := obj.Key.Namespace, obj.Key.Name
	byName := t.byNS[ns]
	if byName == nil {
		byName = map[string]*entry{}
		t.byNS[ns] = byName
	}
	e := byName[name]
	if e == nil {
		e = &entry{}
		byName[name] = e
		t.count++
	}
	e.obj = obj
	var oldLabels labels.Set
	var oldFields fields.Set
	if old != nil {
		oldLabels, oldFields = old.Labels, old.Fields
	}
	for k, v := range oldLabels {
		if nv, ok := obj.Labels[k]; !ok || nv != v {
			t.labels.del(k, v, e)
		}
	}
	for k, v := range obj.Labels {
		if ov, ok := oldLabels[k]; !ok || ov != v {
			t.labels.add(k, v, e)
		}
	}
	// Objects have more selectable fields than are indexed: walk the indexed ones.
	for k := range indexed {
		ov, hadOld := oldFields[k]
		nv, hasNew := obj.Fields[k]
		if hadOld && (!hasNew || nv != ov) {
			t.fields.del(k, ov, e)
		}
		if hasNew && (!hadOld || nv != ov) {
			t.fields.add(k, nv, e)
		}
	}
}

// remove drops old, the live revision of its key.
func (t *table) remove(old *Object, indexed map[string]bool) {
	ns, name := old.Key.Namespace, old.Key.Name
	byName := t.byNS[ns]
	e := byName[name]
	if e == nil {
		return
	}
	delete(byName, name)
	if len(byName) == 0 {
		delete(t.byNS, ns)
	}
	t.count--
	for k, v := range old.Labels {
		t.labels.del(k, v, e)
	}
	for k := range indexed {
		if v, ok := old.Fields[k]; ok {
			t.fields.del(k, v, e)
		}
	}
}

// candidates is what an index offers for a query: the objects that may match, or all of them.
type candidates struct {
	all  bool
	sets []refSet // union of these
	n    int      // how many objects the sets hold together (an upper bound of the union)
}

func (c candidates) better(d candidates) bool { return !c.all && (d.all || c.n < d.n) }

// plan picks the requirement whose index narrows the query the most.
func (t *table) plan(q Query, indexed map[string]bool) (best candidates, nameOnly string, hasName bool) {
	best = candidates{all: true}
	if q.Labels != nil {
		if reqs, ok := q.Labels.Requirements(); ok {
			for _, req := range reqs {
				switch req.Operator() {
				case selection.Equals, selection.DoubleEquals, selection.In:
					c := candidates{}
					for _, v := range req.ValuesUnsorted() {
						if set := t.labels[req.Key()][v]; len(set) > 0 {
							c.sets = append(c.sets, set)
							c.n += len(set)
						}
					}
					if c.better(best) {
						best = c
					}
				}
			}
		}
	}
	if q.Fields != nil {
		for _, req := range q.Fields.Requirements() {
			if req.Operator != selection.Equals && req.Operator != selection.DoubleEquals {
				continue
			}
			if req.Field == "metadata.name" {
				nameOnly, hasName = req.Value, true
				continue
			}
			if !indexed[req.Field] {
				continue
			}
			c := candidates{}
			if set := t.fields[req.Field][req.Value]; len(set) > 0 {
				c.sets = append(c.sets, set)
				c.n = len(set)
			}
			if c.better(best) {
				best = c
			}
		}
	}
	return best, nameOnly, hasName
}

// list returns the objects of the table that q selects, in no particular order.
func (t *table) list(q Query, indexed map[string]bool) []*Object {
	var out []*Object
	match := func(o *Object) {
		if q.Labels != nil && !q.Labels.Empty() && !q.Labels.Matches(o.Labels) {
			return
		}
		if q.Fields != nil && !q.Fields.Empty() && !q.Fields.Matches(o.Fields) {
			return
		}
		out = append(out, o)
	}
	best, name, hasName := t.plan(q, indexed)
	if q.Fields != nil {
		for _, req := range q.Fields.Requirements() {
			if req.Field == "metadata.namespace" && (req.Operator == selection.Equals || req.Operator == selection.DoubleEquals) {
				if q.Namespace != "" && q.Namespace != req.Value {
					return nil
				}
				q.Namespace = req.Value
			}
		}
	}
	switch {
	case hasName:
		// metadata.name picks at most one object per namespace.
		if q.Namespace != "" {
			if e := t.byNS[q.Namespace][name]; e != nil {
				match(e.obj)
			}
			return out
		}
		if best.all || best.n > len(t.byNS) {
			for _, byName := range t.byNS {
				if e := byName[name]; e != nil {
					match(e.obj)
				}
			}
			return out
		}
	case best.all || q.Namespace != "" && len(t.byNS[q.Namespace]) <= best.n:
		// No index narrows the query more than its namespace does: scan.
		if q.Namespace != "" {
			for _, e := range t.byNS[q.Namespace] {
				match(e.obj)
			}
			return out
		}
		for _, byName := range t.byNS {
			for _, e := range byName {
				match(e.obj)
			}
		}
		return out
	}
	seen := len(best.sets) > 1
	var dup map[*entry]bool
	if seen {
		dup = make(map[*entry]bool, best.n)
	}
	for _, set := range best.sets {
		for e := range set {
			if q.Namespace != "" && e.obj.Key.Namespace != q.Namespace {
				continue
			}
			if seen {
				if dup[e] {
					continue
				}
				dup[e] = true
			}
			match(e.obj)
		}
	}
	return out
}

func sortObjects(objs []*Object) {
	slices.SortFunc(objs, func(a, b *Object) int {
		if c := strings.Compare(a.Key.Namespace, b.Key.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Key.Name, b.Key.Name)
	})
}
