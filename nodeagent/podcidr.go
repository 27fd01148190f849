package nodeagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/logplane/logplane/projections"
)

// ErrPodCIDRConflict is returned by Agent.Run and Fleet.Run when a node's
// pod range (Config.PodCIDR) cannot be used: another node still uses a range
// that overlaps it, or the node is registered with another range. The
// message says which node holds it and which flag to pass.
var ErrPodCIDRConflict = errors.New("pod range conflict")

// claim is a pod range a node of this process is about to use.
type claim struct {
	node   string
	prefix netip.Prefix
}

// checkPodCIDRs checks claims against the Nodes in the projection, which
// the caller has brought up to date (registry.ConsistentRead). Until the
// control plane allocates ranges, agents take the one they are given, and
// this is what keeps two nodes from handing out the same addresses:
//
//   - A node already registered keeps its range: spec.podCIDRs never
//     changes once set (Kubernetes' validation), and its pods have
//     addresses in it.
//   - A range that overlaps a Ready node's is refused: that node's pods use it.
//   - A range that overlaps a NotReady node's is refused while a pod bound
//     to that node still has an address in the overlap: containers outlive
//     their agent, so that pod may well still run on that node's machine
//     with that address. Otherwise the range is taken over: no pod the
//     cluster knows of has an address in it. A node deleted from the API
//     (kubectl delete node) holds no range at all, as Kubernetes' range
//     allocator frees a CIDR when its Node is deleted.
//
// fleet says the claims are a Fleet's, whose --pod-cidr is its first
// node's range: the suggested free range then starts a run long enough for
// every claim. Two agents checking at the same instant can both pass.
func checkPodCIDRs(a *Agent, claims []claim, fleet bool) error {
	if len(claims) == 0 {
		return nil
	}
	claimants := map[string]netip.Prefix{}
	for _, c := range claims {
		claimants[c.node] = c.prefix
	}
	objs, _ := a.store.List(projections.Query{Resource: a.kinds.node.GroupResource()})
	type holder struct {
		node   *corev1.Node
		ranges []netip.Prefix
	}
	var others []holder
	var taken []netip.Prefix
	for _, o := range objs {
		n, err := decodeAs[*corev1.Node](o)
		if err != nil {
			return err
		}
		ranges := nodeRanges(n)
		if mine, ok := claimants[n.Name]; ok {
			if len(ranges) > 0 && !slices.Contains(ranges, mine) {
				flag := "--pod-cidr " + ranges[0].String()
				if fleet {
					flag = "the --pod-cidr it had (its first node's range)"
				}
				return fmt.Errorf("nodeagent: node %q is registered with pod range %s (spec.podCIDRs), not %s, and a node's range cannot change: start it with %s, or delete the node (kubectl delete node %s) so that it registers again with the new range: %w",
					n.Name, joinPrefixes(ranges), mine, flag, n.Name, ErrPodCIDRConflict)
			}
			continue
		}
		others = append(others, holder{n, ranges})
		taken = append(taken, ranges...)
	}
	fix := func(c claim) string {
		free, ok := freeRun(c.prefix, len(claims), taken)
		switch {
		case fleet && ok:
			return "give the simulated nodes ranges no other node uses with --pod-cidr, the first node's range, e.g. --pod-cidr " + free.String()
		case fleet:
			return "give the simulated nodes ranges no other node uses with --pod-cidr, the first node's range"
		case ok:
			return fmt.Sprintf("give node %q a range no other node uses, e.g. --pod-cidr %s", c.node, free)
		default:
			return fmt.Sprintf("give node %q a range no other node uses with --pod-cidr", c.node)
		}
	}
	for _, c := range claims {
		for _, h := range others {
			var overlap netip.Prefix
			for _, r := range h.ranges {
				if r.Overlaps(c.prefix) {
					overlap = r
					break
				}
			}
			if !overlap.IsValid() {
				continue
			}
			if nodeReady(h.node) {
				return fmt.Errorf("nodeagent: pod range %s of node %q overlaps %s, the pod range of node %q, which is Ready: %s (a node whose agent has just stopped turns NotReady within the node monitor grace period, 40 s by default): %w",
					c.prefix, c.node, overlap, h.node.Name, fix(c), ErrPodCIDRConflict)
			}
			holding, err := podsWithAddresses(a, h.node.Name, c.prefix)
			if err != nil {
				return err
			}
			if len(holding) > 0 {
				return fmt.Errorf("nodeagent: pod range %s of node %q overlaps %s, the pod range of node %q, which is NotReady but whose pods still have addresses in it (%s) and may still run on its machine: %s; or, if node %q is gone for good, delete it (kubectl delete node %s) and start again: %w",
					c.prefix, c.node, overlap, h.node.Name, summarize(holding, 3), fix(c), h.node.Name, h.node.Name, ErrPodCIDRConflict)
			}
			a.log.Warn("nodeagent: taking over the pod range of a NotReady node, none of whose pods has an address in it",
				"range", c.prefix.String(), "claimant", c.node, "holder", h.node.Name, "holderRange", overlap.String())
		}
	}
	return nil
}

// nodeRanges parses a Node's spec.podCIDRs (or spec.podCIDR); unparsable
// ones are left out (validation keeps them out of the log).
func nodeRanges(n *corev1.Node) []netip.Prefix {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podsWithAddresses lists the pods bound to node with an address in r, as
// "namespace/name ip".
func podsWithAddresses(a *Agent, node string, r netip.Prefix) ([]string, error) {
	if a.cfg.PodAddresses != nil && node != a.cfg.NodeName {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return a.cfg.PodAddresses(ctx, node, r)
	}
	objs, _ := a.store.List(projections.Query{Resource: a.podGR, Fields: fields.OneTermEqualSelector("spec.nodeName", node)})
	var out []string
	for _, o := range objs {
		p, err := decodeAs[*corev1.Pod](o)
		if err != nil {
			return nil, err
		}
		ips := []string{p.Status.PodIP}
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		for _, s := range ips {
			if ip, err := netip.ParseAddr(s); err == nil && r.Contains(ip) {
				out = append(out, p.Namespace+"/"+p.Name+" "+s)
				break
			}
		}
	}
	return out, nil
}

func decodeAs[T any](o *projections.Object) (T, error) {
	var zero T
	obj, err := o.Decode()
	if err != nil {
		return zero, fmt.Errorf("nodeagent: %w", err)
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("nodeagent: %s decodes to %T", o.Key, obj)
	}
	return t, nil
}

// freeRun returns the first range of from's size, at or after from, that
// starts n consecutive ranges overlapping none of taken. IPv4 only.
func freeRun(from netip.Prefix, n int, taken []netip.Prefix) (netip.Prefix, bool) {
	overlaps := func(p netip.Prefix) bool {
		for _, t := range taken {
			if t.Overlaps(p) {
				return true
			}
		}
		return false
	}
	for start := 0; start < 1<<16; start++ {
		ok := true
		for i := range n {
			p, valid := nthPrefix(from, start+i)
			if !valid {
				return netip.Prefix{}, false
			}
			if overlaps(p) {
				ok = false
				start += i // the next candidate starts after this one
				break
			}
		}
		if ok {
			p, _ := nthPrefix(from, start) // valid: checked above
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// nthPrefix returns the i-th range of p's size after p (p itself for 0),
// and false if it would leave the IPv4 space or p is not IPv4.
func nthPrefix(p netip.Prefix, i int) (netip.Prefix, bool) {
	p = p.Masked()
	if !p.Addr().Is4() || i < 0 {
		return p, i == 0
	}
	a4 := p.Addr().As4()
	base := uint64(binary.BigEndian.Uint32(a4[:]))
	next := base + uint64(i)<<(32-p.Bits())
	if next > 0xffffffff {
		return netip.Prefix{}, false
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(next))
	return netip.PrefixFrom(netip.AddrFrom4(b), p.Bits()), true
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// summarize joins the first n items and counts the rest.
func summarize(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
