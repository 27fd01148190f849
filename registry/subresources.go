package registry

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/logplane/logplane/kinds"
)

// The subresources that are writes of their own, with the rules Kubernetes' pod and namespace
// storages give them, shared by every writer: the API server serves them, the scheduler binds
// and the namespace lifecycle finalizes through them.

// ReasonEvict is the reason of a deletion through the eviction subresource.
const ReasonEvict = "evict"

var (
	podsResource       = schema.GroupResource{Resource: "pods"}
	bindingsResource   = schema.GroupResource{Resource: "pods/binding"}
	namespacesResource = schema.GroupResource{Resource: "namespaces"}
)

// kindOf returns the catalog's kind of a built-in resource the registry has rules for.
func (r *Registry) kindOf(gr schema.GroupResource) (*kinds.Kind, error) {
	k, ok := r.catalog.ByGroupResource(gr)
	if !ok {
		return nil, apierrors.NewNotFound(gr, "")
	}
	return k, nil
}

// Bind assigns the pod ns/name to the node b names, as POST pods/<name>/binding does
// (Kubernetes' BindingREST): the binding must name a Node (ValidatePodBinding, 422); the pod
// must not be deleted, bound already or held by scheduling gates (409); it gets spec.nodeName,
// the PodScheduled condition and the binding's annotations, without a generation bump, a
// validation of the pod update or managed fields (kube-scheduler never shows up as a manager of
// a pod). b.UID and b.ResourceVersion, when set, are preconditions (409); with no
// resourceVersion, the binding applies to the pod as it is, retried after a concurrent write.
func (r *Registry) Bind(ctx context.Context, ns, name string, b *corev1.Binding, req Request) (*corev1.Pod, error) {
	pods, err := r.kindOf(podsResource)
	if err != nil {
		return nil, err
	}
	if b.Name != "" && b.Name != name {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the binding (%s) does not match the pod (%s)", b.Name, name))
	}
	var errs field.ErrorList
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		errs = append(errs, field.NotSupported(field.NewPath("target", "kind"), b.Target.Kind, []string{"Node", "<empty>"}))
	}
	if b.Target.Name == "" {
		errs = append(errs, field.Required(field.NewPath("target", "name"), ""))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Binding").GroupKind(), b.Name, errs)
	}
	out, err := r.Modify(ctx, pods, ns, name, req, UpdateOptions{Subresource: "binding"}, func(cur runtime.Object) (runtime.Object, error) {
		pod, ok := cur.(*corev1.Pod)
		if !ok {
			return nil, apierrors.NewInternalError(fmt.Errorf("pods decode to %T", cur))
		}
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(pods.GroupResource(), name,
				fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", b.UID, pod.UID))
		}
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(bindingsResource, name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", pod.Name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(bindingsResource, name, fmt.Errorf("pod %v is already assigned to node %q", pod.Name, pod.Spec.NodeName))
		}
		if len(pod.Spec.SchedulingGates) != 0 {
			return nil, apierrors.NewConflict(bindingsResource, name, fmt.Errorf("pod %v has non-empty .spec.schedulingGates", pod.Name))
		}
		pod.Spec.NodeName = b.Target.Name
		setPodCondition(&pod.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(r.now())})
		pod.ResourceVersion = b.ResourceVersion
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		return pod, nil
	})
	if err != nil {
		return nil, err
	}
	return out.(*corev1.Pod), nil
}

// setPodCondition sets c in st, keeping the transition time of a condition whose status stays.
func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status != c.Status {
				st.Conditions[i] = c
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// Evict deletes the pod ns/name through the eviction subresource, as POST pods/<name>/eviction
// does: a delete with the eviction's delete options, recorded with reason "evict". Pod
// disruption budgets are not checked yet. It returns the pod as the delete left it.
func (r *Registry) Evict(ctx context.Context, ns, name string, ev *policyv1.Eviction, req Request) (runtime.Object, error) {
	pods, err := r.kindOf(podsResource)
	if err != nil {
		return nil, err
	}
	if ev.Name != "" && ev.Name != name {
		return nil, apierrors.NewBadRequest("name in URL does not match name in Eviction object")
	}
	opts := metav1.DeleteOptions{}
	if ev.DeleteOptions != nil {
		opts = *ev.DeleteOptions
	}
	if req.Reason == "" {
		req.Reason = ReasonEvict
	}
	if len(opts.DryRun) == 0 {
		if err := r.markDisrupted(ctx, pods, ns, name, req); err != nil {
			return nil, err
		}
	}
	obj, _, err := r.Delete(ctx, pods, ns, name, opts, req)
	return obj, err
}

// markDisrupted gives a pod that has not finished the DisruptionTarget condition an eviction
// gives it, before it is deleted (Kubernetes' addConditionAndDeletePod): a Job's podFailurePolicy
// can tell the failure apart.
func (r *Registry) markDisrupted(ctx context.Context, pods *kinds.Kind, ns, name string, req Request) error {
	_, err := r.Modify(ctx, pods, ns, name, req, UpdateOptions{Subresource: "status"}, func(cur runtime.Object) (runtime.Object, error) {
		p, ok := cur.(*corev1.Pod)
		if !ok {
			return nil, apierrors.NewInternalError(fmt.Errorf("pods decode to %T", cur))
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil {
			return nil, errNothingToMark
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
				return nil, errNothingToMark
			}
		}
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
			Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting",
			LastTransitionTime: metav1.NewTime(r.now())})
		return p, nil
	})
	if err == nil || errors.Is(err, errNothingToMark) {
		return nil
	}
	return err
}

var errNothingToMark = errors.New("registry: the pod needs no DisruptionTarget condition")

// Finalize changes the spec.finalizers of the namespace name, as PUT namespaces/<name>/finalize
// does: the only write that may change them. finalize is given the namespace as it is and sets
// its spec.finalizers (and, as preconditions, its uid and resourceVersion); nothing else it
// changes is kept. Without a resourceVersion, finalize is called again on the newer revision
// after a concurrent write. A namespace being deleted whose finalizers are all gone is removed.
func (r *Registry) Finalize(ctx context.Context, name string, req Request, finalize func(ns *corev1.Namespace) error) (*corev1.Namespace, error) {
	namespaces, err := r.kindOf(namespacesResource)
	if err != nil {
		return nil, err
	}
	out, err := r.Modify(ctx, namespaces, "", name, req, UpdateOptions{Subresource: "finalize"}, func(cur runtime.Object) (runtime.Object, error) {
		ns, ok := cur.(*corev1.Namespace)
		if !ok {
			return nil, apierrors.NewInternalError(fmt.Errorf("namespaces decode to %T", cur))
		}
		want := ns.DeepCopy()
		want.ResourceVersion = ""
		if err := finalize(want); err != nil {
			return nil, err
		}
		ns.Spec.Finalizers = want.Spec.Finalizers
		ns.ResourceVersion = want.ResourceVersion
		if want.UID != "" {
			ns.UID = want.UID
		}
		return ns, nil
	})
	if err != nil {
		return nil, err
	}
	return out.(*corev1.Namespace), nil
}
