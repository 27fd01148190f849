package registry

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// NodeLeaseNamespace holds the nodes' heartbeat Leases.
const nodeLeaseNamespace = "kube-node-lease"

// CheckNodeWrite is Kubernetes' NodeRestriction for the writes a node's credential makes (they
// reach the log as the node's commands, eventlog.ServeNodeCommands): a node may write its own
// Node and its own Lease, Events, the status of the pods bound to it, and delete those pods,
// and the EndpointSlice of the cluster DNS server it runs (kube-system/kube-dns-<node>);
// the PersistentVolumes of its local provisioner (nodeVolumeWrite); nothing else, and never a
// pod's spec. It checks against the revision the write
// replaces, so a pod bound elsewhere meanwhile makes the append conflict.
func (r *Registry) CheckNodeWrite(ctx context.Context, node string, ev *eventv1.ObjectChanged, expect uint64) error {
	key := eventlog.KeyOf(ev)
	forbid := func(format string, args ...any) error {
		return fmt.Errorf("%w: node %q may not %s", eventlog.ErrForbidden, node, fmt.Sprintf(format, args...))
	}
	switch {
	case key.Group == "" && key.Resource == "nodes":
		if key.Name != node {
			return forbid("write node %q", key.Name)
		}
		return nil
	case key.Group == "coordination.k8s.io" && key.Resource == "leases":
		if key.Namespace != nodeLeaseNamespace || key.Name != node {
			return forbid("write lease %s/%s", key.Namespace, key.Name)
		}
		return nil
	case key.Resource == "events" && (key.Group == "" || key.Group == "events.k8s.io"):
		return nil
	case key.Group == "" && key.Resource == "pods":
		return r.checkNodePodWrite(ctx, node, key, ev, expect, forbid)
	case key.Group == "" && key.Resource == "persistentvolumes":
		return r.checkNodeVolumeWrite(ctx, node, key, ev, expect, forbid)
	case key.Group == "discovery.k8s.io" && key.Resource == "endpointslices":
		// Its own endpoint of the cluster DNS it serves (kube-system/kube-dns-<node>).
		if key.Namespace != "kube-system" || key.Name != "kube-dns-"+node {
			return forbid("write endpointslice %s/%s", key.Namespace, key.Name)
		}
		return nil
	}
	return forbid("write %s", key)
}

func (r *Registry) checkNodePodWrite(ctx context.Context, node string, key eventlog.Key, ev *eventv1.ObjectChanged, expect uint64,
	forbid func(string, ...any) error) error {
	cur, err := r.log.Get(ctx, key)
	if errors.Is(err, eventlog.ErrNotFound) {
		return forbid("create pod %s/%s", key.Namespace, key.Name)
	}
	if err != nil {
		return err
	}
	if cur.Seq != expect {
		return fmt.Errorf("%w: %s is not at revision %d", eventlog.ErrConflict, key, expect)
	}
	k, ok := r.catalog.ByGroupResource(schema.GroupResource{Resource: "pods"})
	if !ok {
		return errors.New("registry: no pods in the catalog")
	}
	decode := func(e *eventv1.ObjectChanged) (*corev1.Pod, error) {
		obj, err := k.Decode(e.GetEncoding(), e.GetObject())
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", eventlog.ErrInvalid, key, err)
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, fmt.Errorf("%w: %s holds a %T", eventlog.ErrInvalid, key, obj)
		}
		return pod, nil
	}
	old, err := decode(cur.Event)
	if err != nil {
		return err
	}
	if old.Spec.NodeName != node {
		return forbid("write pod %s/%s, which is not bound to it", key.Namespace, key.Name)
	}
	if ev.GetType() == eventv1.ChangeType_CHANGE_TYPE_DELETED {
		return nil // the kubelet deletes its pods once they have terminated
	}
	next, err := decode(ev)
	if err != nil {
		return err
	}
	if !apiequality.Semantic.DeepEqual(old.Spec, next.Spec) {
		return forbid("change the spec of pod %s/%s, only its status", key.Namespace, key.Name)
	}
	if !apiequality.Semantic.DeepEqual(old.Labels, next.Labels) || !apiequality.Semantic.DeepEqual(old.OwnerReferences, next.OwnerReferences) {
		return forbid("change the labels or owners of pod %s/%s", key.Namespace, key.Name)
	}
	return nil
}
