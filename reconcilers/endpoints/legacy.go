package endpoints

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/endpointslice"
	endpointsliceutil "k8s.io/endpointslice/util"
	utilnet "k8s.io/utils/net"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/registry"
)

const (
	// maxCapacity is the most addresses an Endpoints object holds.
	maxCapacity = 1000
	truncated   = "truncated"
	// LabelEndpointsManagedBy marks the Endpoints the Endpoints reconciler manages.
	LabelEndpointsManagedBy = "endpoints.kubernetes.io/managed-by"
)

// EndpointsReconciler keeps the Endpoints of every Service with a selector (Kubernetes'
// endpoint controller).
type EndpointsReconciler struct {
	base
	events   eventer
	stale    *staleTracker
	triggers *endpointsliceutil.TriggerTimeTracker
}

// Reconcile writes the Endpoints of the Service with req's key.
func (r *EndpointsReconciler) Reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	wreq := registry.Request{Actor: registry.Reconciler(EndpointsName), Cause: req.Cause}
	key := req.Key
	svc, ok := r.service(key)
	if !ok {
		// The Service is gone: so are its Endpoints.
		_, _, err := r.w.Delete(ctx, r.epKind, key.Namespace, key.Name, metav1.DeleteOptions{}, wreq)
		r.stale.forget(key)
		r.triggers.DeleteService(key.Namespace, key.Name)
		return engine.Result{}, wrap("deleting endpoints", key, ignoreGone(err))
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.Selector == nil {
		return engine.Result{}, nil
	}
	pods := r.selectedPods(svc)
	subsets := []corev1.EndpointSubset{}
	for _, pod := range pods {
		if !endpointsliceutil.ShouldPodBeInEndpoints(pod, svc.Spec.PublishNotReadyAddresses) {
			continue
		}
		ep, err := podToEndpointAddressForService(svc, pod)
		if err != nil {
			continue // no address of the Service's family yet
		}
		epa := *ep
		if endpointsliceutil.ShouldSetHostname(pod, svc) {
			epa.Hostname = pod.Spec.Hostname
		}
		if len(svc.Spec.Ports) == 0 {
			if svc.Spec.ClusterIP == corev1.ClusterIPNone {
				subsets = addEndpointSubset(subsets, pod, epa, nil, svc.Spec.PublishNotReadyAddresses)
			}
			continue
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			portNum, err := endpointslice.FindPort(pod, sp)
			if err != nil {
				continue // a named port this pod does not have
			}
			epp := &corev1.EndpointPort{Name: sp.Name, Port: int32(portNum), Protocol: sp.Protocol, AppProtocol: sp.AppProtocol}
			subsets = addEndpointSubset(subsets, pod, epa, epp, svc.Spec.PublishNotReadyAddresses)
		}
	}
	subsets = RepackSubsets(subsets)
	triggerTime := r.triggers.ComputeEndpointLastChangeTriggerTime(key.Namespace, svc, pods)

	epKey := eventlog.Key{Resource: endpoints.Resource, Namespace: key.Namespace, Name: key.Name}
	var current *corev1.Endpoints
	if obj, ok := r.ix.Object(epKey); ok {
		current = obj.(*corev1.Endpoints)
		if r.stale.isStale(epKey, current) {
			return engine.Result{}, fmt.Errorf("endpoints %s/%s: the index is behind resource version %s already processed", key.Namespace, key.Name, current.ResourceVersion)
		}
	} else {
		current = &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, Labels: svc.Labels}}
	}
	create := current.ResourceVersion == ""
	if !create && semanticIgnoreResourceVersion.DeepEqual(current.Subsets, subsets) &&
		labelsCorrectForEndpoints(current.Labels, svc.Labels) &&
		capacityAnnotationSetCorrectly(current.Annotations, current.Subsets) {
		return engine.Result{}, nil
	}
	next := current.DeepCopy()
	next.Subsets = subsets
	next.Labels = map[string]string{}
	for k, v := range svc.Labels {
		next.Labels[k] = v
	}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	if !triggerTime.IsZero() {
		next.Annotations[corev1.EndpointsLastChangeTriggerTime] = triggerTime.UTC().Format(time.RFC3339Nano)
	} else {
		delete(next.Annotations, corev1.EndpointsLastChangeTriggerTime)
	}
	if truncateEndpoints(next) {
		next.Annotations[corev1.EndpointsOverCapacity] = truncated
	} else {
		delete(next.Annotations, corev1.EndpointsOverCapacity)
	}
	if !isServiceIPSet(svc) {
		next.Labels[corev1.IsHeadlessService] = ""
	}
	next.Labels[LabelEndpointsManagedBy] = EndpointsManagedBy

	var err error
	if create {
		_, err = r.w.Create(ctx, r.epKind, next, wreq)
	} else {
		var updated any
		updated, err = r.w.Update(ctx, r.epKind, next, wreq)
		if err == nil {
			if u, ok := updated.(*corev1.Endpoints); ok && u.ResourceVersion != current.ResourceVersion {
				r.stale.mark(epKey, current.ResourceVersion)
			}
		}
	}
	if err != nil {
		if ignoreGone(err) == nil {
			return engine.Result{}, nil
		}
		if create {
			r.events.Event(next, req.Cause, corev1.EventTypeWarning, "FailedToCreateEndpoint",
				fmt.Sprintf("Failed to create endpoint for service %v/%v: %v", svc.Namespace, svc.Name, err))
		} else {
			r.events.Event(next, req.Cause, corev1.EventTypeWarning, "FailedToUpdateEndpoint",
				fmt.Sprintf("Failed to update endpoint %v/%v: %v", svc.Namespace, svc.Name, err))
		}
		return engine.Result{}, wrap("writing endpoints", key, err)
	}
	return engine.Result{}, nil
}

// isServiceIPSet says whether the Service has a cluster IP (not headless).
func isServiceIPSet(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP != corev1.ClusterIPNone && svc.Spec.ClusterIP != ""
}

func podToEndpointAddressForService(svc *corev1.Service, pod *corev1.Pod) (*corev1.EndpointAddress, error) {
	wantIPv6 := len(svc.Spec.IPFamilies) > 0 && svc.Spec.IPFamilies[0] == corev1.IPv6Protocol
	var ip string
	for _, podIP := range pod.Status.PodIPs {
		parsed := utilnet.ParseIPSloppy(podIP.IP)
		if parsed != nil && wantIPv6 == utilnet.IsIPv6(parsed) {
			ip = parsed.String()
			break
		}
	}
	if ip == "" {
		return nil, fmt.Errorf("failed to find a matching endpoint for service %v", svc.Name)
	}
	nodeName := pod.Spec.NodeName
	return &corev1.EndpointAddress{
		IP:        ip,
		NodeName:  &nodeName,
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}, nil
}

func addEndpointSubset(subsets []corev1.EndpointSubset, pod *corev1.Pod, epa corev1.EndpointAddress, epp *corev1.EndpointPort, tolerateUnready bool) []corev1.EndpointSubset {
	ports := []corev1.EndpointPort{}
	if epp != nil {
		ports = append(ports, *epp)
	}
	if tolerateUnready || endpointsliceutil.IsPodReady(pod) {
		return append(subsets, corev1.EndpointSubset{Addresses: []corev1.EndpointAddress{epa}, Ports: ports})
	}
	return append(subsets, corev1.EndpointSubset{NotReadyAddresses: []corev1.EndpointAddress{epa}, Ports: ports})
}

// truncateEndpoints keeps at most maxCapacity addresses, ready ones first, in proportion to
// each subset's share.
func truncateEndpoints(ep *corev1.Endpoints) bool {
	totalReady, totalNotReady := 0, 0
	for _, s := range ep.Subsets {
		totalReady += len(s.Addresses)
		totalNotReady += len(s.NotReadyAddresses)
	}
	if totalReady+totalNotReady <= maxCapacity {
		return false
	}
	truncateReady := false
	maxN := maxCapacity - totalReady
	numTotal := totalNotReady
	if totalReady > maxCapacity {
		truncateReady = true
		maxN = maxCapacity
		numTotal = totalReady
	}
	canBeAdded := maxN
	for i := range ep.Subsets {
		s := ep.Subsets[i]
		inSubset := len(s.Addresses)
		if !truncateReady {
			inSubset = len(s.NotReadyAddresses)
		}
		toBeAdded := int(math.Ceil(float64(inSubset) / float64(numTotal) * float64(maxN)))
		if toBeAdded > canBeAdded {
			toBeAdded = canBeAdded
		}
		if truncateReady {
			s.Addresses = s.Addresses[:min(len(s.Addresses), toBeAdded)]
			s.NotReadyAddresses = []corev1.EndpointAddress{}
			canBeAdded -= len(s.Addresses)
		} else {
			s.NotReadyAddresses = s.NotReadyAddresses[:min(len(s.NotReadyAddresses), toBeAdded)]
			canBeAdded -= len(s.NotReadyAddresses)
		}
		ep.Subsets[i] = s
	}
	return true
}

func labelsCorrectForEndpoints(epLabels, svcLabels map[string]string) bool {
	if epLabels[LabelEndpointsManagedBy] != EndpointsManagedBy {
		return false
	}
	skipped := 0
	for k, v := range epLabels {
		if k == corev1.IsHeadlessService || k == LabelEndpointsManagedBy {
			skipped++
		} else if sv, ok := svcLabels[k]; !ok || sv != v {
			return false
		}
	}
	return len(svcLabels) == len(epLabels)-skipped
}

func capacityAnnotationSetCorrectly(annotations map[string]string, subsets []corev1.EndpointSubset) bool {
	n := 0
	for _, s := range subsets {
		n += len(s.Addresses) + len(s.NotReadyAddresses)
	}
	if n > maxCapacity {
		return false
	}
	_, ok := annotations[corev1.EndpointsOverCapacity]
	return !ok
}

// semanticIgnoreResourceVersion compares subsets ignoring the target references'
// resourceVersions.
var semanticIgnoreResourceVersion = conversion.EqualitiesOrDie(
	func(a, b corev1.ObjectReference) bool {
		a.ResourceVersion = ""
		b.ResourceVersion = ""
		return a == b
	},
)

// staleTracker remembers, per Endpoints, the resource version a write replaced: an index still
// showing it is behind this reconciler's own write (Kubernetes' staleEndpointsTracker).
type staleTracker struct {
	mu   sync.Mutex
	last map[eventlog.Key]int64
}

func newStaleTracker() *staleTracker { return &staleTracker{last: map[eventlog.Key]int64{}} }

func (t *staleTracker) mark(k eventlog.Key, rv string) {
	n, _ := strconv.ParseInt(rv, 10, 64)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last[k] = n
}

func (t *staleTracker) isStale(k eventlog.Key, ep *corev1.Endpoints) bool {
	n, _ := strconv.ParseInt(ep.ResourceVersion, 10, 64)
	t.mu.Lock()
	defer t.mu.Unlock()
	return n <= t.last[k]
}

func (t *staleTracker) forget(k eventlog.Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.last, k)
}
