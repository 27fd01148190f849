package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	goruntime "runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/registry"
)

// NodeLeaseNamespace holds the nodes' heartbeat Leases.
const NodeLeaseNamespace = "kube-node-lease"

// nodeState is what the heartbeat loop remembers between rounds; only the
// Run goroutine touches it.
type nodeState struct {
	conditions    []corev1.NodeCondition // last written
	lastHeartbeat time.Time
}

func (a *Agent) req() registry.Request {
	return registry.Request{Actor: registry.Node(a.cfg.NodeName)}
}

// register creates the Node, or brings an existing one up to date (labels,
// podCIDR if it has none), then writes its status and Lease.
func (a *Agent) register(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: a.nodeLabels()},
		Spec:       corev1.NodeSpec{PodCIDR: a.cfg.PodCIDR},
		Status:     a.nodeStatus(ctx, true),
	}
	if a.cfg.PodCIDR != "" {
		node.Spec.PodCIDRs = []string{a.cfg.PodCIDR}
	}
	_, err := a.reg.Create(ctx, a.kinds.node, node, a.req())
	switch {
	case err == nil:
		a.node.conditions = node.Status.Conditions
		a.node.lastHeartbeat = a.cfg.Clock.Now()
		a.conditionEvents(nil, node.Status.Conditions)
	case apierrors.IsAlreadyExists(err):
		_, err = a.reg.Modify(ctx, a.kinds.node, "", a.cfg.NodeName, a.req(), registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
			n, ok := cur.(*corev1.Node)
			if !ok {
				return nil, fmt.Errorf("nodeagent: node decodes to %T", cur)
			}
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			maps.Copy(n.Labels, a.nodeLabels())
			if n.Spec.PodCIDR == "" && a.cfg.PodCIDR != "" {
				n.Spec.PodCIDR, n.Spec.PodCIDRs = a.cfg.PodCIDR, []string{a.cfg.PodCIDR}
			}
			return n, nil
		})
		if err != nil {
			return fmt.Errorf("nodeagent: update node: %w", err)
		}
		if err := a.writeNodeStatus(ctx, true); err != nil {
			return err
		}
	default:
		return fmt.Errorf("nodeagent: register node: %w", err)
	}
	return a.renewLease(ctx)
}

func (a *Agent) nodeLabels() map[string]string {
	l := map[string]string{
		corev1.LabelHostname:      a.cfg.NodeName,
		corev1.LabelOSStable:      goruntime.GOOS,
		corev1.LabelArchStable:    goruntime.GOARCH,
		"beta.kubernetes.io/os":   goruntime.GOOS,
		"beta.kubernetes.io/arch": goruntime.GOARCH,
	}
	maps.Copy(l, a.cfg.Labels)
	return l
}

// heartbeat renews the Lease and keeps the Node's status current until ctx ends.
func (a *Agent) heartbeat(ctx context.Context) {
	t := a.cfg.Clock.NewTicker(a.cfg.RenewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("nodeagent: renewing the node lease", "err", err)
		}
		if err := a.writeNodeStatus(ctx, false); err != nil && ctx.Err() == nil {
			a.log.Warn("nodeagent: writing the node status", "err", err)
		}
	}
}

// renewLease creates or renews the node's Lease.
func (a *Agent) renewLease(ctx context.Context) error {
	now := metav1.NewMicroTime(a.cfg.Clock.Now())
	secs := int32(a.cfg.LeaseDuration / time.Second)
	holder := a.cfg.NodeName
	_, err := a.reg.Modify(ctx, a.kinds.lease, NodeLeaseNamespace, a.cfg.NodeName, a.req(), registry.UpdateOptions{
		CreateIfMissing: func(ctx context.Context) (runtime.Object, error) {
			return a.reg.Create(ctx, a.kinds.lease, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: NodeLeaseNamespace},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now,
				},
			}, a.req())
		},
	}, func(cur runtime.Object) (runtime.Object, error) {
		l, ok := cur.(*coordinationv1.Lease)
		if !ok {
			return nil, fmt.Errorf("nodeagent: lease decodes to %T", cur)
		}
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &holder, &secs, &now
		return l, nil
	})
	if err != nil {
		return fmt.Errorf("nodeagent: lease: %w", err)
	}
	return nil
}

// writeNodeStatus writes the Node's status if its conditions changed, or
// their heartbeat is due, or force is set.
func (a *Agent) writeNodeStatus(ctx context.Context, force bool) error {
	now := a.cfg.Clock.Now()
	st := a.nodeStatus(ctx, false)
	if !force && now.Sub(a.node.lastHeartbeat) < a.cfg.StatusInterval && sameConditions(st.Conditions, a.node.conditions) &&
		sameConditions(st.Conditions, a.storedConditions()) {
		return nil // nothing changed, here or in the log (the node lifecycle reconciler may have marked it Unknown)
	}
	var old []corev1.NodeCondition
	_, err := a.reg.Modify(ctx, a.kinds.node, "", a.cfg.NodeName, a.req(), registry.UpdateOptions{Subresource: "status"}, func(cur runtime.Object) (runtime.Object, error) {
		n, ok := cur.(*corev1.Node)
		if !ok {
			return nil, fmt.Errorf("nodeagent: node decodes to %T", cur)
		}
		old = n.Status.Conditions
		// Keep transition times of conditions whose status did not change.
		for i := range st.Conditions {
			for _, old := range n.Status.Conditions {
				if old.Type == st.Conditions[i].Type && old.Status == st.Conditions[i].Status {
					st.Conditions[i].LastTransitionTime = old.LastTransitionTime
				}
			}
		}
		n.Status = st
		return n, nil
	})
	if apierrors.IsNotFound(err) {
		// Someone deleted the Node: register it again, as the kubelet does.
		return a.register(ctx)
	}
	if err != nil {
		return fmt.Errorf("nodeagent: node status: %w", err)
	}
	a.node.conditions, a.node.lastHeartbeat = st.Conditions, now
	a.conditionEvents(old, st.Conditions)
	return nil
}

// nodeEventReasons are the kubelet's Event reasons for a node condition's status.
var nodeEventReasons = map[corev1.NodeConditionType]map[corev1.ConditionStatus]string{
	corev1.NodeMemoryPressure: {corev1.ConditionFalse: "NodeHasSufficientMemory", corev1.ConditionTrue: "NodeHasInsufficientMemory"},
	corev1.NodeDiskPressure:   {corev1.ConditionFalse: "NodeHasNoDiskPressure", corev1.ConditionTrue: "NodeHasDiskPressure"},
	corev1.NodePIDPressure:    {corev1.ConditionFalse: "NodeHasSufficientPID", corev1.ConditionTrue: "NodeHasInsufficientPID"},
	corev1.NodeReady:          {corev1.ConditionTrue: "NodeReady", corev1.ConditionFalse: "NodeNotReady"},
}

// conditionEvents records the kubelet's Events for conditions whose status changed.
func (a *Agent) conditionEvents(old, cur []corev1.NodeCondition) {
	was := map[corev1.NodeConditionType]corev1.ConditionStatus{}
	for _, c := range old {
		was[c.Type] = c.Status
	}
	for _, c := range cur {
		if was[c.Type] == c.Status {
			continue
		}
		if reason := nodeEventReasons[c.Type][c.Status]; reason != "" {
			// The kubelet records every one of these as Normal, NodeNotReady included.
			a.nodeEvent(corev1.EventTypeNormal, reason, fmt.Sprintf("Node %s status is now: %s", a.cfg.NodeName, reason))
		}
	}
}

// nodeEvent records an Event about the node, as the kubelet does: its UID is the node's name,
// which is how kubectl describe node finds the kubelet's Events.
func (a *Agent) nodeEvent(typ, reason, message string) {
	a.rec.RefEvent(corev1.ObjectReference{Kind: "Node", Name: a.cfg.NodeName, UID: types.UID(a.cfg.NodeName)}, 0, typ, reason, message)
}

// storedConditions are the Node's conditions in the projection (nil if it has none).
func (a *Agent) storedConditions() []corev1.NodeCondition {
	n, err := get[*corev1.Node](a, a.kinds.node, "", a.cfg.NodeName)
	if err != nil {
		return nil
	}
	return n.Status.Conditions
}

// sameConditions compares conditions without their times.
func sameConditions(a, b []corev1.NodeCondition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.LastHeartbeatTime, y.LastHeartbeatTime = metav1.Time{}, metav1.Time{}
		x.LastTransitionTime, y.LastTransitionTime = metav1.Time{}, metav1.Time{}
		if !apiequality.Semantic.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// nodeStatus computes the Node's status now.
func (a *Agent) nodeStatus(ctx context.Context, registering bool) corev1.NodeStatus {
	now := metav1.NewTime(a.cfg.Clock.Now().Truncate(time.Second))
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	var p pressure
	if a.cfg.MachinePressure {
		p = measurePressure(a.cfg.VolumeDir)
	}
	conds := []corev1.NodeCondition{
		boolCond(cond, corev1.NodeMemoryPressure, p.memory, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available",
			"KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		boolCond(cond, corev1.NodeDiskPressure, p.disk, "KubeletHasDiskPressure", "kubelet has disk pressure",
			"KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		boolCond(cond, corev1.NodePIDPressure, p.pid, "KubeletHasInsufficientPID", "kubelet has insufficient PID available",
			"KubeletHasSufficientPID", "kubelet has sufficient PID available"),
	}
	if err := a.runtimeHealthy(ctx); err != nil {
		conds = append(conds, cond(corev1.NodeReady, corev1.ConditionFalse, "KubeletNotReady",
			"container runtime is down: "+err.Error()))
	} else {
		conds = append(conds, cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"))
	}
	st := corev1.NodeStatus{
		Capacity:    a.cfg.Capacity.DeepCopy(),
		Allocatable: a.cfg.Capacity.DeepCopy(),
		Phase:       "",
		Conditions:  conds,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.cfg.NodeIP},
			{Type: corev1.NodeHostName, Address: a.cfg.Hostname},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: a.cfg.StreamPort}},
		NodeInfo:        a.info,
	}
	return st
}

func boolCond(cond func(corev1.NodeConditionType, corev1.ConditionStatus, string, string) corev1.NodeCondition,
	t corev1.NodeConditionType, on bool, onReason, onMsg, offReason, offMsg string) corev1.NodeCondition {
	if on {
		return cond(t, corev1.ConditionTrue, onReason, onMsg)
	}
	return cond(t, corev1.ConditionFalse, offReason, offMsg)
}

// runtimeHealthy asks the runtime something cheap.
func (a *Agent) runtimeHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.cfg.Runtime.ListSandboxes(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil // shutting down, not unhealthy
		}
		return err
	}
	return nil
}
