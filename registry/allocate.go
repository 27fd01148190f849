package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
)

// ServiceCIDR is the range Services' cluster IPs are allocated from; its first address is the
// "kubernetes" Service's.
var ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")

// NodePortRange is the range NodePorts are allocated from.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// allocate lets a kind that holds cluster-wide unique values (Strategy.Allocate: a Service's
// cluster IP and node ports) take those a new object (old nil) or an update needs. Values in
// use are those the other objects of the kind in the projection hold, plus those handed out by
// this process a moment ago (which the projection may not show yet).
func (r *Registry) allocate(ctx context.Context, k *kinds.Kind, obj, old runtime.Object) error {
	if k.Strategy.Allocate == nil {
		return nil
	}
	r.allocMu.Lock()
	defer r.allocMu.Unlock()
	a := &allocation{r: r, k: k, replaced: old, keptIPs: map[string]bool{}, keptPorts: map[int32]bool{}}
	err := k.Strategy.Allocate(ctx, a, obj, old)
	if len(r.recentIPs) > 1024 {
		clear(r.recentIPs)
	}
	if len(r.recentPorts) > 1024 {
		clear(r.recentPorts)
	}
	var se apierrors.APIStatus
	if err != nil && !errors.As(err, &se) {
		return apierrors.NewInternalError(err)
	}
	return err
}

// allocation is the kinds.Allocator of one write, under the registry's allocation lock.
type allocation struct {
	r        *Registry
	k        *kinds.Kind
	replaced runtime.Object // the revision an update replaces; nil on create

	loaded    bool
	usedIPs   map[string]bool
	usedPorts map[int32]bool
	keptIPs   map[string]bool
	keptPorts map[int32]bool
}

var _ kinds.Allocator = (*allocation)(nil)

// load gathers, once, what the other objects of the kind hold.
func (a *allocation) load() {
	if a.loaded {
		return
	}
	a.loaded = true
	a.usedIPs, a.usedPorts = map[string]bool{}, map[int32]bool{}
	var ns, name string
	if m, err := meta.Accessor(a.replaced); a.replaced != nil && err == nil {
		ns, name = m.GetNamespace(), m.GetName()
	}
	objs, _ := a.r.store.List(projections.Query{Resource: a.k.Stored().GroupResource()})
	for _, o := range objs {
		if name != "" && o.Key.Namespace == ns && o.Key.Name == name {
			continue // the object being updated: what it holds is its own
		}
		obj, err := o.Decode()
		if err != nil || a.k.Strategy.Holds == nil {
			continue
		}
		ips, ports := a.k.Strategy.Holds(obj)
		for _, ip := range ips {
			a.usedIPs[ip] = true
		}
		for _, p := range ports {
			a.usedPorts[p] = true
		}
	}
	for ip := range a.r.recentIPs {
		a.usedIPs[ip] = true
	}
	for p := range a.r.recentPorts {
		a.usedPorts[p] = true
	}
	for ip := range a.keptIPs {
		delete(a.usedIPs, ip)
	}
	for p := range a.keptPorts {
		delete(a.usedPorts, p)
	}
}

func (a *allocation) Keep(ips []string, ports []int32) {
	for _, ip := range ips {
		a.keptIPs[ip] = true
		delete(a.usedIPs, ip)
	}
	for _, p := range ports {
		a.keptPorts[p] = true
		delete(a.usedPorts, p)
	}
}

func (a *allocation) IP(ip string) (string, error) {
	a.load()
	switch {
	case ip == "":
		picked, err := pickIP(a.usedIPs)
		if err != nil {
			return "", err
		}
		ip = picked
	case a.keptIPs[ip]:
	default:
		addr, err := netip.ParseAddr(ip)
		if err != nil || !ServiceCIDR.Contains(addr) {
			return "", fmt.Errorf("the provided IP is not in the valid range; the range of valid IPs is %s", ServiceCIDR)
		}
		if a.usedIPs[ip] {
			return "", errors.New("the provided IP is already allocated")
		}
	}
	a.usedIPs[ip] = true
	a.r.recentIPs[ip] = true
	return ip, nil
}

func (a *allocation) Port(p int32) (int32, error) {
	a.load()
	switch {
	case p != 0 && a.keptPorts[p] && !a.usedPorts[p]:
		// Kept from the revision replaced.
	case p != 0:
		if p < NodePortMin || p > NodePortMax {
			return 0, fmt.Errorf("provided port is not in the valid range. The range of valid ports is %d-%d", NodePortMin, NodePortMax)
		}
		if a.usedPorts[p] {
			return 0, errors.New("provided port is already allocated")
		}
	default:
		for n := 0; ; n++ {
			c := int32(NodePortMin + rand.IntN(NodePortMax-NodePortMin+1))
			if (!a.usedPorts[c] && !a.keptPorts[c]) || n > 10000 {
				p = c
				break
			}
		}
	}
	a.usedPorts[p] = true
	a.r.recentPorts[p] = true
	return p, nil
}

func pickIP(used map[string]bool) (string, error) {
	first := ServiceCIDR.Masked().Addr()
	size := 1 << (32 - ServiceCIDR.Bits())
	// The first address is the kubernetes Service's, asked for by name.
	for n := 0; n < 64; n++ {
		off := 2 + rand.IntN(size-3)
		ip := addrAt(first, off)
		if !used[ip.String()] {
			return ip.String(), nil
		}
	}
	for off := 2; off < size-1; off++ {
		ip := addrAt(first, off)
		if !used[ip.String()] {
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("registry: no cluster IP left in %s", ServiceCIDR)
}

func addrAt(base netip.Addr, off int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func sortObjects(objs []*projections.Object) {
	slices.SortFunc(objs, func(a, b *projections.Object) int {
		return cmp.Or(cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
}
