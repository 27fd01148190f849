package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// ServiceCIDR is the default range Services' cluster IPs are allocated from (the API server
// stores it as the ServiceCIDR "kubernetes"); its first address is the "kubernetes" Service's.
// While no ServiceCIDR object exists, allocation uses it.
var ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")

// NodePortRange is the range NodePorts are allocated from.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// What the allocator writes: an IPAddress per cluster IP (networking.k8s.io/v1, served), and a
// ServiceNodePort per node port (logplane.io/v1alpha1, in the log only: like Kubernetes'
// RangeAllocation of node ports, it is not served).
var (
	// IPAddresses is the resource of the IPAddress objects.
	IPAddresses = schema.GroupResource{Group: "networking.k8s.io", Resource: "ipaddresses"}
	// ServiceCIDRs is the resource of the ServiceCIDR objects.
	ServiceCIDRs = schema.GroupResource{Group: "networking.k8s.io", Resource: "servicecidrs"}
	// ServiceNodePorts is the resource of the node port objects, one per port, named by it.
	ServiceNodePorts = schema.GroupResource{Group: "logplane.io", Resource: "servicenodeports"}
)

// Labels of the allocator's objects: those Kubernetes' ipallocator sets on IPAddresses, and, on
// a ServiceNodePort (whose envelope carries them, so that it is listed by them without being
// decoded), the Service holding the port.
const (
	IPAllocatorName      = "ipallocator.k8s.io"
	PortAllocatorName    = "portallocator.logplane.io"
	LabelParentNamespace = "allocation.logplane.io/parent-namespace"
	LabelParentName      = "allocation.logplane.io/parent-name"
)

// ServiceNodePort is what the log holds for an allocated node port.
type ServiceNodePort struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ParentRef networkingv1.ParentReference `json:"parentRef"`
	} `json:"spec"`
}

// NodePortKey is the log key of node port p's object.
func NodePortKey(p int32) eventlog.Key {
	return eventlog.Key{Group: ServiceNodePorts.Group, Resource: ServiceNodePorts.Resource, Name: strconv.Itoa(int(p))}
}

// NodePortParent returns the namespace and name of the Service holding node port object o.
func NodePortParent(o *projections.Object) (namespace, name string) {
	return o.Labels[LabelParentNamespace], o.Labels[LabelParentName]
}

// allocatorRequest is how the allocator writes: as itself, caused by what caused the write of
// the Service.
func allocatorRequest(name string, cause uint64) Request {
	return Request{Actor: System(name), FieldManager: name, Cause: cause}
}

// allocate lets a kind that holds cluster-wide unique values (Strategy.Allocate: a Service's
// cluster IP and node ports) take those a new object (old nil) or an update needs. Each value
// is taken by creating its own object in the log with compare-and-set (an IPAddress, a
// ServiceNodePort), as Kubernetes' allocators do against etcd: of several API servers taking
// the same value, one wins. The caller releases what was taken if its write fails (revert),
// and what the replaced revision held and the new one does not once it succeeds (release).
func (r *Registry) allocate(ctx context.Context, k *kinds.Kind, obj, old runtime.Object, req Request) (*allocation, error) {
	if k.Strategy.Allocate == nil {
		return nil, nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%T has no metadata", obj))
	}
	a := &allocation{r: r, ctx: ctx, dryRun: req.DryRun, cause: req.Cause,
		parent:  networkingv1.ParentReference{Resource: k.Resource, Namespace: m.GetNamespace(), Name: m.GetName()},
		keptIPs: map[string]bool{}, keptPorts: map[int32]bool{}, tookIPs: map[string]bool{}, tookPorts: map[int32]bool{}}
	err = k.Strategy.Allocate(ctx, a, obj, old)
	if err != nil {
		a.revert(context.WithoutCancel(ctx))
		var se apierrors.APIStatus
		if !errors.As(err, &se) {
			return nil, apierrors.NewInternalError(err)
		}
		return nil, err
	}
	return a, nil
}

// allocation is the kinds.Allocator of one write.
type allocation struct {
	r      *Registry
	ctx    context.Context // the write's: an allocation lives as long as one call
	dryRun bool
	cause  uint64
	parent networkingv1.ParentReference

	keptIPs   map[string]bool
	keptPorts map[int32]bool
	tookIPs   map[string]bool // objects this write created
	tookPorts map[int32]bool
}

var _ kinds.Allocator = (*allocation)(nil)

func (a *allocation) Keep(ips []string, ports []int32) {
	for _, ip := range ips {
		a.keptIPs[ip] = true
	}
	for _, p := range ports {
		a.keptPorts[p] = true
	}
}

// revert releases what this write took (its write failed). Nil-safe.
func (a *allocation) revert(ctx context.Context) {
	if a == nil {
		return
	}
	for ip := range a.tookIPs {
		a.r.releaseIP(ctx, ip, a.parent, a.cause)
	}
	for p := range a.tookPorts {
		a.r.releasePort(ctx, p, a.parent, a.cause)
	}
	clear(a.tookIPs)
	clear(a.tookPorts)
}

// IP takes ip, or any free address of the Service CIDRs when ip is "": the upper part of a
// range first, from a random offset, then the lower part that Kubernetes keeps for addresses
// asked for by number (KEP-3070), skipping those the projection shows taken and moving on when
// another writer wins the create.
func (a *allocation) IP(ip string) (string, error) {
	ranges := a.r.serviceRanges()
	if ip != "" {
		if a.keptIPs[ip] || a.tookIPs[ip] {
			return ip, nil
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil || !slices.ContainsFunc(ranges, func(p netip.Prefix) bool { return inRange(p, addr) }) {
			return "", fmt.Errorf("the provided IP is not in the valid range; the range of valid IPs is %s", rangesString(ranges))
		}
		if err := a.takeIP(addr); err != nil {
			return "", err
		}
		return ip, nil
	}
	for pass, seen := 0, a.r.store.Applied(); pass == 0 || (pass == 1 && a.catchUp(seen)); pass++ {
		for _, p := range ranges {
			first, last := rangeBounds(p)
			size := int(addrIndex(last) - addrIndex(first) + 1)
			if size <= 0 {
				continue
			}
			offset := ipRangeOffset(p)
			upper, lower := size-offset, offset
			for _, sub := range [][2]int{{offset, upper}, {0, lower}} {
				if sub[1] <= 0 {
					continue
				}
				start := rand.IntN(sub[1])
				for i := range sub[1] {
					addr := addrAt(first, sub[0]+(start+i)%sub[1])
					if a.keptIPs[addr.String()] {
						continue
					}
					if _, taken := a.r.store.Get(ipKey(addr.String())); taken {
						continue
					}
					err := a.takeIP(addr)
					if err == nil {
						return addr.String(), nil
					}
					if !errors.Is(err, errAllocated) {
						return "", err
					}
				}
			}
		}
	}
	return "", fmt.Errorf("registry: no cluster IP left in %s", rangesString(ranges))
}

var errAllocated = errors.New("already allocated")

// catchUp waits for the projection to apply all the log holds, when a search that started with
// the projection at seen found nothing: what it showed taken may have been given back
// meanwhile (by another API server). It reports whether the log had more than seen, for one
// more search.
func (a *allocation) catchUp(seen uint64) bool {
	_, last, err := a.r.log.Bounds(a.ctx)
	if err != nil || seen >= last {
		return false
	}
	return a.r.store.WaitFor(a.ctx, last) == nil
}

// takeIP creates addr's IPAddress, naming this write's Service. An IPAddress that names the
// same Service already (left by an earlier attempt of the same write) is taken over.
func (a *allocation) takeIP(addr netip.Addr) error {
	name := addr.String()
	if a.dryRun {
		if o, taken := a.r.store.Get(ipKey(name)); taken && !a.ipHeldBy(o) {
			return fmt.Errorf("the provided IP is %w", errAllocated)
		}
		return nil
	}
	ipk, ok := a.r.catalog.ByGroupResource(IPAddresses)
	if !ok {
		return errors.New("registry: the catalog has no IPAddress kind")
	}
	obj := &networkingv1.IPAddress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			networkingv1.LabelIPAddressFamily: "IPv4", networkingv1.LabelManagedBy: IPAllocatorName}},
		Spec: networkingv1.IPAddressSpec{ParentRef: new(a.parent)},
	}
	if addr.Is6() {
		obj.Labels[networkingv1.LabelIPAddressFamily] = "IPv6"
	}
	_, err := a.r.Create(a.ctx, ipk, obj, allocatorRequest(IPAllocatorName, a.cause))
	if apierrors.IsAlreadyExists(err) {
		if o, ok := a.r.store.Get(ipKey(name)); ok && a.ipHeldBy(o) {
			return nil
		}
		return fmt.Errorf("the provided IP is %w", errAllocated)
	}
	if err != nil {
		return err
	}
	a.tookIPs[name] = true
	return nil
}

func (a *allocation) ipHeldBy(o *projections.Object) bool {
	obj, err := o.Decode()
	ip, ok := obj.(*networkingv1.IPAddress)
	return err == nil && ok && ip.Spec.ParentRef != nil && *ip.Spec.ParentRef == a.parent
}

// Port takes node port p, or any free one when p is 0: the upper part of the range first (from
// a random offset), then the lower part kept for ports asked for by number, as Kubernetes'
// port allocator does (KEP-3668).
func (a *allocation) Port(p int32) (int32, error) {
	if p != 0 {
		if a.keptPorts[p] || a.tookPorts[p] {
			return p, nil
		}
		if p < NodePortMin || p > NodePortMax {
			return 0, fmt.Errorf("provided port is not in the valid range. The range of valid ports is %d-%d", NodePortMin, NodePortMax)
		}
		if err := a.takePort(p); err != nil {
			return 0, err
		}
		return p, nil
	}
	size := NodePortMax - NodePortMin + 1
	offset := portRangeOffset(size)
	for pass, seen := 0, a.r.store.Applied(); pass == 0 || (pass == 1 && a.catchUp(seen)); pass++ {
		for _, sub := range [][2]int{{offset, size - offset}, {0, offset}} {
			if sub[1] <= 0 {
				continue
			}
			start := rand.IntN(sub[1])
			for i := range sub[1] {
				c := int32(NodePortMin + sub[0] + (start+i)%sub[1])
				if a.keptPorts[c] {
					continue
				}
				if _, taken := a.r.store.Get(NodePortKey(c)); taken {
					continue
				}
				err := a.takePort(c)
				if err == nil {
					return c, nil
				}
				if !errors.Is(err, errAllocated) {
					return 0, err
				}
			}
		}
	}
	return 0, fmt.Errorf("registry: no node port left in %d-%d", NodePortMin, NodePortMax)
}

// takePort creates port p's object with compare-and-set (expected subject sequence 0).
func (a *allocation) takePort(p int32) error {
	key := NodePortKey(p)
	if a.dryRun {
		if o, taken := a.r.store.Get(key); taken && !a.portHeldBy(o) {
			return fmt.Errorf("provided port is %w", errAllocated)
		}
		return nil
	}
	err := a.r.CreateNodePort(a.ctx, p, a.parent, allocatorRequest(PortAllocatorName, a.cause))
	if apierrors.IsAlreadyExists(err) {
		if rec, gerr := a.r.log.Get(a.ctx, key); gerr == nil && rec.Event.GetLabels()[LabelParentNamespace] == a.parent.Namespace &&
			rec.Event.GetLabels()[LabelParentName] == a.parent.Name {
			return nil
		}
		return fmt.Errorf("provided port is %w", errAllocated)
	}
	if err != nil {
		return err
	}
	a.tookPorts[p] = true
	return nil
}

func (a *allocation) portHeldBy(o *projections.Object) bool {
	ns, name := NodePortParent(o)
	return ns == a.parent.Namespace && name == a.parent.Name
}

// release gives back what old held and obj (nil: deleted) does not, after a write succeeded,
// as Kubernetes' service storage releases on update and delete. An object that names another
// holder (the value was taken again meanwhile) is left alone; what fails to be released is left
// for the repair loop (reconcilers/allocations), which deletes objects no Service holds.
func (r *Registry) release(ctx context.Context, k *kinds.Kind, obj, old runtime.Object, cause uint64) {
	if k.Strategy.Holds == nil || old == nil {
		return
	}
	m, err := meta.Accessor(old)
	if err != nil {
		return
	}
	parent := networkingv1.ParentReference{Resource: k.Resource, Namespace: m.GetNamespace(), Name: m.GetName()}
	oldIPs, oldPorts := k.Strategy.Holds(old)
	var ips []string
	var ports []int32
	if obj != nil {
		ips, ports = k.Strategy.Holds(obj)
	}
	for _, ip := range oldIPs {
		if !slices.Contains(ips, ip) {
			r.releaseIP(ctx, ip, parent, cause)
		}
	}
	for _, p := range oldPorts {
		if !slices.Contains(ports, p) {
			r.releasePort(ctx, p, parent, cause)
		}
	}
}

func (r *Registry) releaseIP(ctx context.Context, ip string, parent networkingv1.ParentReference, cause uint64) {
	ipk, ok := r.catalog.ByGroupResource(IPAddresses)
	if !ok || ip == "" {
		return
	}
	o, ok := r.store.Get(ipKey(ip))
	if !ok {
		return
	}
	obj, err := o.Decode()
	if a, isIP := obj.(*networkingv1.IPAddress); err != nil || !isIP || a.Spec.ParentRef == nil || *a.Spec.ParentRef != parent {
		return
	}
	uid, rv := o.Event.GetRef().GetUid(), strconv.FormatUint(o.Seq, 10)
	_, _, err = r.Delete(ctx, ipk, "", ip, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: new(types.UID(uid)), ResourceVersion: &rv}}, allocatorRequest(IPAllocatorName, cause))
	if err != nil && !apierrors.IsNotFound(err) {
		r.logger.Warn("registry: releasing a cluster IP; the repair loop will", "ip", ip, "err", err)
	}
}

func (r *Registry) releasePort(ctx context.Context, p int32, parent networkingv1.ParentReference, cause uint64) {
	key := NodePortKey(p)
	rec, err := r.log.Get(ctx, key)
	if err != nil || rec.Event.GetType() == eventv1.ChangeType_CHANGE_TYPE_DELETED {
		return
	}
	if l := rec.Event.GetLabels(); l[LabelParentNamespace] != parent.Namespace || l[LabelParentName] != parent.Name {
		return
	}
	if err := r.DeleteNodePort(ctx, rec, allocatorRequest(PortAllocatorName, cause)); err != nil {
		r.logger.Warn("registry: releasing a node port; the repair loop will", "port", p, "err", err)
	}
}

// CreateNodePort creates node port p's object naming parent as its holder, with
// compare-and-set: 409 AlreadyExists if the port has one. It returns once the projection has
// applied it.
func (r *Registry) CreateNodePort(ctx context.Context, p int32, parent networkingv1.ParentReference, req Request) error {
	key := NodePortKey(p)
	np := &ServiceNodePort{
		TypeMeta:   metav1.TypeMeta{APIVersion: "logplane.io/v1alpha1", Kind: "ServiceNodePort"},
		ObjectMeta: metav1.ObjectMeta{Name: key.Name, UID: uuid.NewUUID(), CreationTimestamp: metav1.NewTime(r.now().Truncate(1e9))},
	}
	np.Spec.ParentRef = parent
	data, err := json.Marshal(np)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("registry: encoding node port %d: %w", p, err))
	}
	ev := &eventv1.ObjectChanged{
		Type: eventv1.ChangeType_CHANGE_TYPE_ADDED, Reason: ReasonCreate,
		Actor: req.Actor.proto(), Cause: req.Cause, Time: timestamppb.New(r.now()),
		Ref: &eventv1.ObjectRef{Group: key.Group, Version: "v1alpha1", Kind: "ServiceNodePort", Resource: key.Resource,
			Name: key.Name, Uid: string(np.UID)},
		Encoding: eventv1.Encoding_ENCODING_JSON, Object: data,
		Labels: map[string]string{LabelParentNamespace: parent.Namespace, LabelParentName: parent.Name},
	}
	seq, err := r.log.Create(ctx, ev)
	if errors.Is(err, eventlog.ErrExists) {
		return apierrors.NewAlreadyExists(ServiceNodePorts, key.Name)
	}
	if err != nil {
		return statusError(nil, key.Name, err)
	}
	return statusError(nil, key.Name, r.store.WaitFor(ctx, seq))
}

// DeleteNodePort deletes the node port object rec is the latest revision of, with
// compare-and-set on that revision (409 Conflict if it changed).
func (r *Registry) DeleteNodePort(ctx context.Context, rec eventlog.Record, req Request) error {
	ev := &eventv1.ObjectChanged{
		Type: eventv1.ChangeType_CHANGE_TYPE_DELETED, Reason: ReasonDelete,
		Actor: req.Actor.proto(), Cause: req.Cause, Time: timestamppb.New(r.now()),
		Ref: rec.Event.GetRef(), Encoding: rec.Event.GetEncoding(), Object: rec.Event.GetObject(), Labels: rec.Event.GetLabels(),
	}
	seq, err := r.log.Append(ctx, ev, rec.Seq)
	if err != nil {
		return statusError(nil, rec.Event.GetRef().GetName(), err)
	}
	return statusError(nil, rec.Event.GetRef().GetName(), r.store.WaitFor(ctx, seq))
}

// serviceRanges returns the IPv4 ranges of the ServiceCIDRs that are ready and not being
// deleted, in name order ("kubernetes" included), or the default range while there is none.
func (r *Registry) serviceRanges() []netip.Prefix {
	objs, _ := r.store.List(projections.Query{Resource: ServiceCIDRs})
	slices.SortFunc(objs, func(a, b *projections.Object) int { return cmp.Compare(a.Key.Name, b.Key.Name) })
	var out []netip.Prefix
	for _, o := range objs {
		obj, err := o.Decode()
		c, ok := obj.(*networkingv1.ServiceCIDR)
		if err != nil || !ok || c.DeletionTimestamp != nil || !serviceCIDRReady(c) {
			continue
		}
		for _, s := range c.Spec.CIDRs {
			// A /31 or /32 has no address to hand out (no network and broadcast address left).
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() && p.Bits() <= 30 && !slices.Contains(out, p.Masked()) {
				out = append(out, p.Masked())
			}
		}
	}
	if len(out) == 0 {
		out = []netip.Prefix{ServiceCIDR}
	}
	return out
}

// serviceCIDRReady is Kubernetes' isReady: the Ready condition, or ready when there is none
// (no controller may be running to set it).
func serviceCIDRReady(c *networkingv1.ServiceCIDR) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == networkingv1.ServiceCIDRConditionReady {
			return cond.Status == metav1.ConditionTrue
		}
	}
	return true
}

// ServiceCIDRContains reports whether ip is in one of the ranges cluster IPs are allocated
// from.
func (r *Registry) ServiceCIDRContains(ip netip.Addr) bool {
	return slices.ContainsFunc(r.serviceRanges(), func(p netip.Prefix) bool { return inRange(p, ip) })
}

func ipKey(ip string) eventlog.Key {
	return eventlog.Key{Group: IPAddresses.Group, Resource: IPAddresses.Resource, Name: ip}
}

// rangeBounds are the first and last addresses Kubernetes hands out of p: not the network's
// address, nor the broadcast address.
func rangeBounds(p netip.Prefix) (first, last netip.Addr) {
	first = p.Masked().Addr().Next()
	size := uint32(1) << (32 - p.Bits())
	last = addrAt(p.Masked().Addr(), int(size-2))
	return first, last
}

func inRange(p netip.Prefix, ip netip.Addr) bool {
	first, last := rangeBounds(p)
	return ip.Is4() && first.Compare(ip) <= 0 && ip.Compare(last) <= 0
}

// ipRangeOffset is Kubernetes' calculateRangeOffset of the ipallocator: min(max(16, size/16),
// 256) addresses at the start of a range kept for addresses asked for by number.
func ipRangeOffset(p netip.Prefix) int {
	size := 1 << (32 - p.Bits())
	if size <= 16 {
		return 0
	}
	return min(max(16, size/16), 256)
}

// portRangeOffset is the port allocator's: min(max(16, size/32), 128).
func portRangeOffset(size int) int {
	if size <= 16 {
		return 0
	}
	return min(max(16, size/32), 128)
}

func rangesString(ranges []netip.Prefix) string {
	s := ""
	for i, p := range ranges {
		if i > 0 {
			s += ","
		}
		s += p.String()
	}
	return s
}

func addrIndex(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrAt(base netip.Addr, off int) netip.Addr {
	v := addrIndex(base) + uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func sortObjects(objs []*projections.Object) {
	slices.SortFunc(objs, func(a, b *projections.Object) int {
		return cmp.Or(cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
}
