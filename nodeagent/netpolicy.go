package nodeagent

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

// PolicyEnforcer is what FollowNetworkPolicies feeds:
// dataplane/netpolicy's Enforcer.
type PolicyEnforcer interface {
	UpdatePolicy(*networkingv1.NetworkPolicy) error
	DeletePolicy(namespace, name string)
	UpdatePod(*corev1.Pod)
	DeletePod(namespace, name string)
	UpdateNamespace(*corev1.Namespace)
	DeleteNamespace(name string)
	Run(ctx context.Context) error
}

var (
	networkPolicyGR = schema.GroupResource{Group: "networking.k8s.io", Resource: "networkpolicies"}
	podGR           = schema.GroupResource{Resource: "pods"}
	namespaceGR     = schema.GroupResource{Resource: "namespaces"}
)

// FollowNetworkPolicies keeps enf in step with the NetworkPolicies, pods
// and namespaces of store (the whole cluster's: a policy's peers may be
// anywhere), and runs it, until ctx ends. It hands enf everything store
// holds before enf's first sync, so that the first sync takes away nothing
// still wanted.
func FollowNetworkPolicies(ctx context.Context, store *projections.Store, enf PolicyEnforcer, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	queue := workqueue.NewTyped[eventlog.Key]()
	defer queue.ShutDown()
	followed := func(k eventlog.Key) bool {
		gr := schema.GroupResource{Group: k.Group, Resource: k.Resource}
		return gr == networkPolicyGR || gr == podGR || gr == namespaceGR
	}
	// Subscribe first, then list, so that nothing falls between the two.
	unsubscribe := store.Subscribe(func(ch projections.Change) {
		o := ch.New
		if o == nil {
			o = ch.Old
		}
		if followed(o.Key) {
			queue.Add(o.Key)
		}
	})
	defer unsubscribe()
	feed := func(key eventlog.Key) {
		if err := feedPolicy(store, enf, key); err != nil {
			log.Warn("nodeagent: network policy", "key", key, "err", err)
		}
	}
	for _, gr := range []schema.GroupResource{namespaceGR, podGR, networkPolicyGR} {
		objs, _ := store.List(projections.Query{Resource: gr})
		for _, o := range objs {
			feed(o.Key)
		}
	}
	done := make(chan error, 1)
	go func() { done <- enf.Run(ctx) }()
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		key, shutdown := queue.Get()
		if shutdown {
			break
		}
		feed(key)
		queue.Done(key)
	}
	return <-done
}

// feedPolicy hands enf the object at key as store has it now (a delete
// when it is gone).
func feedPolicy(store *projections.Store, enf PolicyEnforcer, key eventlog.Key) error {
	o, ok := store.Get(key)
	if !ok {
		switch key.Resource {
		case "networkpolicies":
			enf.DeletePolicy(key.Namespace, key.Name)
		case "pods":
			enf.DeletePod(key.Namespace, key.Name)
		case "namespaces":
			enf.DeleteNamespace(key.Name)
		}
		return nil
	}
	obj, err := o.Decode()
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	switch x := obj.(type) {
	case *networkingv1.NetworkPolicy:
		return enf.UpdatePolicy(x)
	case *corev1.Pod:
		enf.UpdatePod(x)
	case *corev1.Namespace:
		enf.UpdateNamespace(x)
	}
	return nil
}
