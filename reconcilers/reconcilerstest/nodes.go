package reconcilerstest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// NodeOptions shape the simulated nodes.
type NodeOptions struct {
	// RenewInterval is how often a node renews its lease. Default 1s.
	RenewInterval time.Duration
	// StartDelay is how long a pod bound to a node takes to run. Default 0.
	StartDelay time.Duration
	// Workers writing pod statuses. Default 32.
	Workers int
}

// Nodes are simulated nodes: each registers its Node (Ready), renews its Lease in
// kube-node-lease, runs the pods bound to it (status Running and Ready; an image whose name
// contains "doesnotexist" fails to pull, as on a real node) and removes the pods being deleted,
// as a node agent with a runtime that only pretends would. A stopped node does none of it.
type Nodes struct {
	store  *projections.Store
	reg    *registry.Registry
	log    *slog.Logger
	opts   NodeOptions
	kNode  *kinds.Kind
	kLease *kinds.Kind
	kPod   *kinds.Kind
	queue  workqueue.TypedRateLimitingInterface[eventlog.Key]

	mu      sync.Mutex
	nodes   map[string]*simNode
	causes  map[eventlog.Key]uint64
	podIPs  int
	started bool
}

type simNode struct {
	name    string
	index   int
	stopped bool
	lease   time.Time // last renewal
}

func newNodes(store *projections.Store, reg *registry.Registry, log *slog.Logger, opts NodeOptions) *Nodes {
	if opts.RenewInterval <= 0 {
		opts.RenewInterval = time.Second
	}
	if opts.Workers <= 0 {
		opts.Workers = 32
	}
	cat := reg.Catalog()
	kNode, _ := cat.ByGroupResource(schema.GroupResource{Resource: "nodes"})
	kLease, _ := cat.ByGroupResource(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"})
	kPod, _ := cat.ByGroupResource(schema.GroupResource{Resource: "pods"})
	return &Nodes{store: store, reg: reg, log: log, opts: opts, kNode: kNode, kLease: kLease, kPod: kPod,
		queue:  workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[eventlog.Key](50*time.Millisecond, 2*time.Second)),
		nodes:  map[string]*simNode{},
		causes: map[eventlog.Key]uint64{}}
}

// Add registers count more nodes.
func (n *Nodes) Add(ctx context.Context, count int) error {
	for range count {
		n.mu.Lock()
		i := len(n.nodes) + 1
		sn := &simNode{name: fmt.Sprintf("node-%d", i), index: i}
		n.nodes[sn.name] = sn
		n.mu.Unlock()
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: sn.name, Labels: map[string]string{
				"kubernetes.io/hostname": sn.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
			Status: corev1.NodeStatus{
				Capacity:    simCapacity(),
				Allocatable: simCapacity(),
				Conditions:  readyConditions(time.Now()),
				Addresses: []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)},
					{Type: corev1.NodeHostName, Address: sn.name}},
				NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.32.0-logplane-sim", OperatingSystem: "linux", Architecture: "amd64",
					ContainerRuntimeVersion: "sim://0"},
			},
		}
		out, err := n.reg.Create(ctx, n.kNode, node, registry.Request{Actor: registry.Node(sn.name)})
		if err != nil {
			return fmt.Errorf("registering node %s: %w", sn.name, err)
		}
		t := true
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: sn.name, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: sn.name, UID: out.(*corev1.Node).UID, Controller: &t}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &sn.name, LeaseDurationSeconds: ptr(int32(40)), RenewTime: &metav1.MicroTime{Time: time.Now()}},
		}
		if _, err := n.reg.Create(ctx, n.kLease, lease, registry.Request{Actor: registry.Node(sn.name)}); err != nil {
			return fmt.Errorf("creating the lease of node %s: %w", sn.name, err)
		}
		n.mu.Lock()
		sn.lease = time.Now()
		n.mu.Unlock()
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func simCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods: resource.MustParse("250"),
	}
}

func readyConditions(now time.Time) []corev1.NodeCondition {
	t := metav1.NewTime(now)
	c := func(typ corev1.NodeConditionType, st corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: st, Reason: reason, Message: msg, LastHeartbeatTime: t, LastTransitionTime: t}
	}
	return []corev1.NodeCondition{
		c(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		c(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		c(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
		c(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
	}
}

// Stop stops a node as if its agent died: no more lease renewals, pods left as they are.
func (n *Nodes) Stop(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if sn := n.nodes[name]; sn != nil {
		sn.stopped = true
	}
}

// LastRenewal returns when a node last renewed its lease.
func (n *Nodes) LastRenewal(name string) time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	if sn := n.nodes[name]; sn != nil {
		return sn.lease
	}
	return time.Time{}
}

// Restart brings a stopped node back: it renews its lease, reports itself Ready and looks at
// every pod bound to it again.
func (n *Nodes) Restart(ctx context.Context, name string) error {
	n.mu.Lock()
	sn := n.nodes[name]
	if sn != nil {
		sn.stopped = false
	}
	n.mu.Unlock()
	if sn == nil {
		return fmt.Errorf("no node %s", name)
	}
	if err := n.renew(ctx, sn); err != nil {
		return err
	}
	if err := n.reportReady(ctx, name); err != nil {
		return err
	}
	objs, _ := n.store.List(projections.Query{Resource: schema.GroupResource{Resource: "pods"}, Fields: fields.OneTermEqualSelector("spec.nodeName", name)})
	for _, o := range objs {
		n.queue.Add(o.Key)
	}
	return nil
}

// Names returns the nodes' names.
func (n *Nodes) Names() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.nodes))
	for i := 1; i <= len(n.nodes); i++ {
		out = append(out, fmt.Sprintf("node-%d", i))
	}
	return out
}

func (n *Nodes) running(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	sn := n.nodes[name]
	return sn != nil && !sn.stopped
}

func (n *Nodes) run(ctx context.Context) {
	cancel := n.store.Subscribe(func(c projections.Change) {
		o := c.New
		if o == nil || o.Key.Resource != "pods" || o.Key.Group != "" {
			return
		}
		node := o.Fields["spec.nodeName"]
		if node == "" || !n.running(node) {
			return
		}
		n.mu.Lock()
		n.causes[o.Key] = c.Seq
		n.mu.Unlock()
		n.queue.Add(o.Key)
	})
	defer cancel()
	var wg sync.WaitGroup
	for range n.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				key, shutdown := n.queue.Get()
				if shutdown {
					return
				}
				if err := n.syncPod(ctx, key); err != nil && ctx.Err() == nil {
					n.queue.AddRateLimited(key)
				} else {
					n.queue.Forget(key)
				}
				n.queue.Done(key)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(n.opts.RenewInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n.mu.Lock()
			var live []*simNode
			for _, sn := range n.nodes {
				if !sn.stopped {
					live = append(live, sn)
				}
			}
			n.mu.Unlock()
			for _, sn := range live {
				if err := n.renew(ctx, sn); err != nil && ctx.Err() == nil {
					n.log.Warn("reconcilerstest: renewing a node lease", "node", sn.name, "err", err)
				}
			}
		}
	}()
	<-ctx.Done()
	n.queue.ShutDown()
	wg.Wait()
}

func (n *Nodes) renew(ctx context.Context, sn *simNode) error {
	now := time.Now()
	_, err := n.reg.Modify(ctx, n.kLease, corev1.NamespaceNodeLease, sn.name, registry.Request{Actor: registry.Node(sn.name)}, registry.UpdateOptions{},
		func(cur runtime.Object) (runtime.Object, error) {
			l := cur.(*coordinationv1.Lease)
			l.Spec.RenewTime = &metav1.MicroTime{Time: now}
			return l, nil
		})
	if err != nil {
		return err
	}
	n.mu.Lock()
	sn.lease = now
	n.mu.Unlock()
	// A node agent reports Ready again if someone marked it otherwise while it was away.
	if o, ok := n.store.Get(eventlog.Key{Resource: "nodes", Name: sn.name}); ok {
		if obj, err := o.Decode(); err == nil && !nodeReady(obj.(*corev1.Node)) {
			return n.reportReady(ctx, sn.name)
		}
	}
	return nil
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (n *Nodes) reportReady(ctx context.Context, name string) error {
	_, err := n.reg.Modify(ctx, n.kNode, "", name, registry.Request{Actor: registry.Node(name)}, registry.UpdateOptions{Subresource: "status"},
		func(cur runtime.Object) (runtime.Object, error) {
			node := cur.(*corev1.Node)
			node.Status.Conditions = readyConditions(time.Now())
			return node, nil
		})
	return err
}

// syncPod does what a node agent does for one pod bound to it.
func (n *Nodes) syncPod(ctx context.Context, key eventlog.Key) error {
	o, ok := n.store.Get(key)
	if !ok {
		return nil
	}
	node := o.Fields["spec.nodeName"]
	if node == "" || !n.running(node) {
		return nil
	}
	obj, err := o.Decode()
	if err != nil {
		return err
	}
	pod := obj.(*corev1.Pod)
	n.mu.Lock()
	cause := n.causes[key]
	delete(n.causes, key)
	n.mu.Unlock()
	if cause == 0 {
		cause = o.Seq
	}
	req := registry.Request{Actor: registry.Node(node), Cause: cause}
	if pod.DeletionTimestamp != nil {
		zero := int64(0)
		uid := pod.UID
		_, _, err := n.reg.Delete(ctx, n.kPod, pod.Namespace, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}}, req)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	if pod.Status.Phase != corev1.PodPending || pod.Status.StartTime != nil && !badImage(pod) {
		return nil
	}
	if n.opts.StartDelay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(n.opts.StartDelay):
		}
	}
	n.mu.Lock()
	n.podIPs++
	ip := fmt.Sprintf("10.244.%d.%d", (n.podIPs/250)%250, n.podIPs%250+1)
	idx := n.nodes[node].index
	n.mu.Unlock()
	_, err = n.reg.Modify(ctx, n.kPod, pod.Namespace, pod.Name, req, registry.UpdateOptions{Subresource: "status"},
		func(cur runtime.Object) (runtime.Object, error) {
			p := cur.(*corev1.Pod)
			if p.UID != pod.UID || p.DeletionTimestamp != nil {
				return nil, errSkip
			}
			now := metav1.Now()
			p.Status.HostIP = fmt.Sprintf("10.1.%d.%d", idx/250, idx%250+1)
			p.Status.HostIPs = []corev1.HostIP{{IP: p.Status.HostIP}}
			if p.Status.StartTime == nil {
				p.Status.StartTime = &now
			}
			if badImage(p) {
				p.Status.Phase = corev1.PodPending
				setPodCondition(&p.Status, corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now})
				setPodCondition(&p.Status, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: now, Reason: "ContainersNotReady"})
				p.Status.ContainerStatuses = nil
				for _, c := range p.Spec.Containers {
					p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
						Name: c.Name, Image: c.Image,
						State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
							Message: fmt.Sprintf("Back-off pulling image %q", c.Image)}}})
				}
				return p, nil
			}
			p.Status.Phase = corev1.PodRunning
			p.Status.PodIP = ip
			p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
			for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
				setPodCondition(&p.Status, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
			}
			p.Status.ContainerStatuses = nil
			for _, c := range p.Spec.Containers {
				p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
					Name: c.Name, Image: c.Image, ImageID: "sim://" + c.Image, ContainerID: "sim://" + string(p.UID) + "/" + c.Name,
					Ready: true, Started: ptr(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
			}
			return p, nil
		})
	if errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func badImage(p *corev1.Pod) bool {
	for _, c := range p.Spec.Containers {
		if strings.Contains(c.Image, "doesnotexist") {
			return true
		}
	}
	return false
}

var errSkip = errors.New("reconcilerstest: nothing to do")

func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status == c.Status {
				return
			}
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}
