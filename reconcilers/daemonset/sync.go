package daemonset

// Ported from k8s.io/kubernetes pkg/controller/daemon/daemon_controller.go (syncDaemonSet,
// manage, podsShouldBeOnNode, syncNodes, updateDaemonSetStatus), v1.34.4; Copyright The
// Kubernetes Authors, Apache License 2.0.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/reconcilers/ownerref"
	"github.com/logplane/logplane/reconcilers/slowstart"
	"github.com/logplane/logplane/registry"
)

func (c *Controller) request(cause uint64) registry.Request {
	return registry.Request{Actor: registry.Reconciler(Name), Cause: cause}
}

func (c *Controller) controllerRef(ds *appsv1.DaemonSet) metav1.OwnerReference {
	return ownerref.Controller(c.sets.GroupVersion().String(), c.sets.Kind, ds.Name, ds.UID)
}

func revisionKey(ns, name string) eventlog.Key {
	return eventlog.Key{Group: revisionsResource.Group, Resource: revisionsResource.Resource, Namespace: ns, Name: name}
}

// errSkip ends a mutation that has nothing to do.
var errSkip = errors.New("daemonset: nothing to do")

// outcome is what one reconcile decided beyond its writes: the delay after which to look again.
type outcome struct {
	requeue time.Duration
}

func (s *outcome) after(d time.Duration) {
	if d > 0 && (s.requeue == 0 || d < s.requeue) {
		s.requeue = d
	}
}

func (c *Controller) reconcile(ctx context.Context, req engine.Request) (engine.Result, error) {
	key := req.Key
	obj, ok := c.ix.Object(key)
	if !ok {
		c.exp.Delete(key)
		return engine.Result{}, nil
	}
	ds, ok := obj.(*appsv1.DaemonSet)
	if !ok {
		return engine.Result{}, fmt.Errorf("%w: daemonsets decode to %T", engine.ErrTerminal, obj)
	}
	if ds.Spec.Selector == nil || (len(ds.Spec.Selector.MatchLabels) == 0 && len(ds.Spec.Selector.MatchExpressions) == 0) {
		c.events.Eventf(ds, req.Cause, corev1.EventTypeWarning, reasonSelectingAll, "This daemon set is selecting all pods. A non-empty selector is required.")
		return engine.Result{}, nil
	}
	selector, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return engine.Result{}, fmt.Errorf("%w: DaemonSet %s/%s has an invalid selector: %v", engine.ErrTerminal, ds.Namespace, ds.Name, err)
	}
	// The revisions of a daemon set being deleted may be gone or orphaned already: its status
	// cannot be worked out reliably, and nothing more is created for it.
	if ds.DeletionTimestamp != nil {
		return engine.Result{}, nil
	}
	nodes := c.nodeList()
	cur, old, err := c.constructHistory(ctx, ds, selector, req.Cause)
	if err != nil {
		return engine.Result{}, fmt.Errorf("daemonset: constructing the revisions of %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	hash := cur.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]
	var s outcome
	if !c.exp.Satisfied(key) {
		// Only the status: the generation was not acted on.
		err := c.updateStatus(ctx, ds, selector, nodes, hash, false, req.Cause, &s)
		return engine.Result{RequeueAfter: s.requeue}, err
	}
	err = c.updateDaemonSet(ctx, key, ds, selector, nodes, hash, old, req.Cause, &s)
	statusErr := c.updateStatus(ctx, ds, selector, nodes, hash, true, req.Cause, &s)
	if err != nil {
		return engine.Result{RequeueAfter: s.requeue}, err
	}
	return engine.Result{RequeueAfter: s.requeue}, statusErr
}

// nodeList returns the nodes, by name.
func (c *Controller) nodeList() []*corev1.Node {
	objs := c.ix.Objects(nodesResource, "", nil)
	nodes := make([]*corev1.Node, 0, len(objs))
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			nodes = append(nodes, n)
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes
}

func (c *Controller) updateDaemonSet(ctx context.Context, key eventlog.Key, ds *appsv1.DaemonSet, selector labels.Selector, nodes []*corev1.Node, hash string, old []*appsv1.ControllerRevision, cause uint64, s *outcome) error {
	if err := c.manage(ctx, key, ds, selector, nodes, hash, cause, s); err != nil {
		return err
	}
	if c.exp.Satisfied(key) && ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if err := c.rollingUpdate(ctx, key, ds, selector, nodes, hash, cause); err != nil {
			return err
		}
	}
	nodeToPods, err := c.nodesToDaemonPods(ctx, ds, selector, true, cause)
	if err != nil {
		return err
	}
	if err := c.cleanupHistory(ctx, ds, nodeToPods, old, cause); err != nil {
		return fmt.Errorf("daemonset: cleaning up the revisions of %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	return nil
}

// claimPods returns the pods the daemon set controls once it has adopted the orphans its
// selector matches and released those it controls that its selector no longer matches.
func (c *Controller) claimPods(ctx context.Context, ds *appsv1.DaemonSet, selector labels.Selector, cause uint64) ([]*corev1.Pod, error) {
	var claimed []*corev1.Pod
	var errs []error
	for _, p := range informer.Controlled[*corev1.Pod](c.ix, podsResource, ds.UID) {
		if selector.Matches(labels.Set(p.Labels)) {
			claimed = append(claimed, p)
			continue
		}
		if err := ownerref.Release(ctx, c.w, c.pods, p.Namespace, p.Name, p.UID, []types.UID{ds.UID}, c.request(cause)); err != nil {
			errs = append(errs, err)
		}
	}
	adopted, err := ownerref.AdoptOrphans[*corev1.Pod](ctx, c.w, c.ix, c.pods, ds.Namespace, selector, nil, c.controllerRef(ds), c.request(cause))
	return append(claimed, adopted...), errors.Join(append(errs, err)...)
}

func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

// nodesToDaemonPods groups the daemon set's pods by the node they are for (the terminal ones
// being deleted left out, unless includeDeletedTerminal).
func (c *Controller) nodesToDaemonPods(ctx context.Context, ds *appsv1.DaemonSet, selector labels.Selector, includeDeletedTerminal bool, cause uint64) (map[string][]*corev1.Pod, error) {
	pods, err := c.claimPods(ctx, ds, selector, cause)
	if err != nil {
		return nil, err
	}
	out := map[string][]*corev1.Pod{}
	for _, p := range pods {
		if !includeDeletedTerminal && isTerminal(p) && p.DeletionTimestamp != nil {
			continue
		}
		node, err := targetNode(p)
		if err != nil {
			continue // not a pod the daemon set made for a node
		}
		out[node] = append(out[node], p)
	}
	return out, nil
}

// manage creates the pods of the nodes that should run one and have none, and deletes those of
// nodes that should not (and failed, succeeded and excess ones).
func (c *Controller) manage(ctx context.Context, key eventlog.Key, ds *appsv1.DaemonSet, selector labels.Selector, nodes []*corev1.Node, hash string, cause uint64, s *outcome) error {
	nodeToPods, err := c.nodesToDaemonPods(ctx, ds, selector, false, cause)
	if err != nil {
		return fmt.Errorf("daemonset: the pods of %s/%s by node: %w", ds.Namespace, ds.Name, err)
	}
	var create []string
	var remove []*corev1.Pod
	for _, n := range nodes {
		cr, rm := c.podsShouldBeOnNode(n, nodeToPods, ds, hash, cause, s)
		create = append(create, cr...)
		remove = append(remove, rm...)
	}
	// The pods of nodes that no longer exist: never scheduled (as Kubernetes), or bound to a
	// node that is gone (Kubernetes' pod garbage collector's work, which logplane has not).
	var gone []*corev1.Pod
	exists := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		exists[n.Name] = true
	}
	for name, pods := range nodeToPods {
		if exists[name] {
			continue
		}
		for _, p := range pods {
			if p.Spec.NodeName == "" {
				remove = append(remove, p)
			} else {
				gone = append(gone, p)
			}
		}
	}
	err = c.syncNodes(ctx, key, ds, remove, create, hash, cause)
	return errors.Join(err, c.forceDelete(ctx, gone, cause))
}

// podsShouldBeOnNode returns the nodes (this one or none) that need a daemon pod created and
// the pods of the node to delete.
func (c *Controller) podsShouldBeOnNode(node *corev1.Node, nodeToPods map[string][]*corev1.Pod, ds *appsv1.DaemonSet, hash string, cause uint64, s *outcome) (create []string, remove []*corev1.Pod) {
	shouldRun, shouldContinueRunning := NodeShouldRunDaemonPod(node, ds)
	pods, exists := nodeToPods[node.Name]
	switch {
	case shouldRun && !exists:
		create = append(create, node.Name)
	case shouldContinueRunning:
		var running []*corev1.Pod
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				continue
			}
			switch p.Status.Phase {
			case corev1.PodFailed:
				// The daemon set often fights a node that rejects its pods: back off.
				bk := failedPodsBackoffKey(ds, node.Name)
				now := c.clock.Now()
				if c.backoff.IsInBackOffSinceUpdate(bk, now) {
					s.after(c.backoff.Get(bk))
					continue
				}
				c.backoff.Next(bk, now)
				c.events.Eventf(ds, cause, corev1.EventTypeWarning, reasonFailedPod, "Found failed daemon pod %s/%s on node %s, will try to kill it", p.Namespace, p.Name, node.Name)
				remove = append(remove, p)
			case corev1.PodSucceeded:
				c.events.Eventf(ds, cause, corev1.EventTypeNormal, reasonSucceededPod, "Found succeeded daemon pod %s/%s on node %s, will try to delete it", p.Namespace, p.Name, node.Name)
				remove = append(remove, p)
			default:
				running = append(running, p)
			}
		}
		if !allowsSurge(ds) {
			// Without surge, more than one running pod on a node: all but the oldest go.
			if len(running) > 1 {
				sort.Sort(byCreation(running))
				remove = append(remove, running[1:]...)
			}
			break
		}
		if len(running) <= 1 {
			if len(running) == 0 && shouldRun {
				create = append(create, node.Name) // surging: the node needs one pod not being deleted
			}
			break
		}
		// Surging, two pods may run on a node only while the oldest of the current template is
		// not ready and the oldest of an old one is; the others go. If neither is ready, only the
		// current one stays.
		var oldestNew, oldestOld *corev1.Pod
		sort.Sort(byCreation(running))
		for _, p := range running {
			if p.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] == hash {
				if oldestNew == nil {
					oldestNew = p
					continue
				}
			} else if oldestOld == nil {
				oldestOld = p
				continue
			}
			remove = append(remove, p)
		}
		if oldestNew != nil && oldestOld != nil {
			switch {
			case !isPodReady(oldestOld):
				remove = append(remove, oldestOld)
			case isPodAvailable(oldestNew, ds.Spec.MinReadySeconds, metav1.NewTime(c.clock.Now())):
				remove = append(remove, oldestOld)
			}
		}
	case !shouldContinueRunning && exists:
		for _, p := range pods {
			if p.DeletionTimestamp == nil {
				remove = append(remove, p)
			}
		}
	}
	return create, remove
}

func failedPodsBackoffKey(ds *appsv1.DaemonSet, node string) string {
	return fmt.Sprintf("%s/%d/%s", ds.UID, ds.Status.ObservedGeneration, node)
}

// syncNodes deletes the given pods and creates a daemon pod for each given node, at most
// BurstReplicas of each, creations in slow-start batches; expectations are set first.
func (c *Controller) syncNodes(ctx context.Context, key eventlog.Key, ds *appsv1.DaemonSet, remove []*corev1.Pod, create []string, hash string, cause uint64) error {
	createDiff := min(len(create), c.cfg.BurstReplicas)
	deleteDiff := min(len(remove), c.cfg.BurstReplicas)
	c.exp.Set(key, createDiff, deleteDiff)
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	template := podTemplate(ds.Spec.Template, templateGeneration(ds), hash)
	called, _, _ := slowstart.Batch(createDiff, 1, func(i int) error {
		err := c.createPod(ctx, ds, template, create[i], cause)
		if err == nil {
			return nil
		}
		c.exp.CreationObserved(key) // it will not come
		if namespaceTerminating(err) {
			return nil // not a failure: the namespace is going away
		}
		fail(err)
		return err
	})
	c.exp.Lower(key, createDiff-called, 0) // the creations skipped are retried by a later reconcile
	var wg sync.WaitGroup
	for _, p := range remove[:deleteDiff] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.deletePod(ctx, ds, p, nil, cause); err != nil {
				c.exp.DeletionObserved(key, eventlog.Key{Resource: podsResource.Resource, Namespace: p.Namespace, Name: p.Name})
				if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// forceDelete deletes at once (grace period 0) the pods of nodes that no longer exist: no node
// agent will ever confirm their end.
func (c *Controller) forceDelete(ctx context.Context, pods []*corev1.Pod, cause uint64) error {
	var errs []error
	zero := int64(0)
	for _, p := range pods {
		if err := c.deletePod(ctx, nil, p, &zero, cause); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) createPod(ctx context.Context, ds *appsv1.DaemonSet, template corev1.PodTemplateSpec, node string, cause uint64) error {
	t := template.DeepCopy()
	t.Spec.Affinity = nodeAffinityFor(t.Spec.Affinity, node)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ds.Namespace, GenerateName: ds.Name + "-",
			Labels: t.Labels, Annotations: t.Annotations, Finalizers: t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{c.controllerRef(ds)},
		},
		Spec: t.Spec,
	}
	out, err := c.w.Create(ctx, c.pods, pod, c.request(cause))
	if err != nil {
		if !namespaceTerminating(err) {
			c.events.Eventf(ds, cause, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		}
		return fmt.Errorf("daemonset: creating a pod of %s/%s for node %s: %w", ds.Namespace, ds.Name, node, err)
	}
	if p, ok := out.(*corev1.Pod); ok {
		c.events.Eventf(ds, cause, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", p.Name)
	}
	return nil
}

// deletePod deletes a pod of the daemon set (ds nil: no Event), if it is still the one read.
func (c *Controller) deletePod(ctx context.Context, ds *appsv1.DaemonSet, p *corev1.Pod, grace *int64, cause uint64) error {
	uid := p.UID
	_, _, err := c.w.Delete(ctx, c.pods, p.Namespace, p.Name, metav1.DeleteOptions{GracePeriodSeconds: grace, Preconditions: &metav1.Preconditions{UID: &uid}}, c.request(cause))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return err
	}
	if err != nil {
		if ds != nil {
			c.events.Eventf(ds, cause, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
		}
		return fmt.Errorf("daemonset: deleting pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if ds != nil {
		c.events.Eventf(ds, cause, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
	}
	return nil
}

func namespaceTerminating(err error) bool {
	return apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)
}

// updateStatus counts the daemon set's pods into its status and writes it if it changed
// (observedGeneration only if the reconcile acted on the generation).
func (c *Controller) updateStatus(ctx context.Context, ds *appsv1.DaemonSet, selector labels.Selector, nodes []*corev1.Node, hash string, observed bool, cause uint64, s *outcome) error {
	nodeToPods, err := c.nodesToDaemonPods(ctx, ds, selector, false, cause)
	if err != nil {
		return fmt.Errorf("daemonset: the pods of %s/%s by node: %w", ds.Namespace, ds.Name, err)
	}
	now := metav1.NewTime(c.clock.Now())
	generation := templateGeneration(ds)
	var st appsv1.DaemonSetStatus
	for _, n := range nodes {
		shouldRun, _ := NodeShouldRunDaemonPod(n, ds)
		pods := nodeToPods[n.Name]
		scheduled := len(pods) > 0
		if !shouldRun {
			if scheduled {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if !scheduled {
			continue
		}
		st.CurrentNumberScheduled++
		pods = append([]*corev1.Pod{}, pods...)
		sort.Sort(byCreation(pods))
		p := pods[0]
		if isPodReady(p) {
			st.NumberReady++
			if isPodAvailable(p, ds.Spec.MinReadySeconds, now) {
				st.NumberAvailable++
			}
		}
		if isPodUpdated(p, hash, generation) {
			st.UpdatedNumberScheduled++
		}
		// A surge pod beside the oldest, ready but not yet available, ends the old one's time
		// once it is: look again then (Kubernetes queues the set minReadySeconds after a pod
		// turns ready); nothing else would, since no pod changes at that moment.
		for _, q := range pods[1:] {
			if isPodReady(q) && !isPodAvailable(q, ds.Spec.MinReadySeconds, now) {
				s.after(time.Duration(ds.Spec.MinReadySeconds) * time.Second)
			}
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	if ds.Spec.MinReadySeconds > 0 && st.NumberReady != st.NumberAvailable {
		s.after(time.Duration(ds.Spec.MinReadySeconds) * time.Second)
	}
	cur := ds.Status
	if cur.DesiredNumberScheduled == st.DesiredNumberScheduled && cur.CurrentNumberScheduled == st.CurrentNumberScheduled &&
		cur.NumberMisscheduled == st.NumberMisscheduled && cur.NumberReady == st.NumberReady &&
		cur.UpdatedNumberScheduled == st.UpdatedNumberScheduled && cur.NumberAvailable == st.NumberAvailable &&
		cur.NumberUnavailable == st.NumberUnavailable && (cur.ObservedGeneration >= ds.Generation || !observed) {
		return nil
	}
	uid, gen := ds.UID, ds.Generation
	_, err = c.w.Modify(ctx, c.sets, ds.Namespace, ds.Name, c.request(cause), registry.UpdateOptions{Subresource: "status"}, func(obj runtime.Object) (runtime.Object, error) {
		d, ok := obj.(*appsv1.DaemonSet)
		if !ok || d.UID != uid {
			return nil, errSkip
		}
		if observed {
			d.Status.ObservedGeneration = gen
		}
		d.Status.DesiredNumberScheduled = st.DesiredNumberScheduled
		d.Status.CurrentNumberScheduled = st.CurrentNumberScheduled
		d.Status.NumberMisscheduled = st.NumberMisscheduled
		d.Status.NumberReady = st.NumberReady
		d.Status.UpdatedNumberScheduled = st.UpdatedNumberScheduled
		d.Status.NumberAvailable = st.NumberAvailable
		d.Status.NumberUnavailable = st.NumberUnavailable
		return d, nil
	})
	if err == nil || errors.Is(err, errSkip) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("daemonset: updating the status of %s/%s: %w", ds.Namespace, ds.Name, err)
}
