package apiserver

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
)

// InitialNamespaces exist from the start, as on Kubernetes.
var InitialNamespaces = []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease}

var systemActor = registry.Request{Actor: registry.System("apiserver"), FieldManager: "logplane-apiserver"}

func (s *Server) kinds(resource string) (*kinds.Kind, bool) {
	k, ok := s.catalog.ByGroupResource(schema.GroupResource{Resource: resource})
	return k, ok
}

// bootstrap creates the initial namespaces and the kubernetes Service if they do not exist.
func (s *Server) bootstrap(ctx context.Context) error {
	nsKind, ok := s.kinds("namespaces")
	if !ok {
		return nil
	}
	for _, name := range InitialNamespaces {
		if _, err := s.reg.GetObject(ctx, nsKind, "", name, registry.ReadOptions{ResourceVersion: "0"}); err == nil {
			continue
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if _, err := s.reg.Create(ctx, nsKind, ns, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("apiserver: creating namespace %s: %w", name, err)
		}
	}
	svcKind, ok := s.kinds("services")
	if !ok {
		return nil
	}
	if _, err := s.reg.GetObject(ctx, svcKind, metav1.NamespaceDefault, "kubernetes", registry.ReadOptions{ResourceVersion: "0"}); err == nil {
		return nil
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: registry.ServiceCIDR.Addr().Next().String(),
			Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(6443)}},
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
	if _, err := s.reg.Create(ctx, svcKind, svc, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("apiserver: creating the kubernetes service: %w", err)
	}
	return nil
}

func (s *Server) kickNamespaces() {
	select {
	case s.nsKick <- struct{}{}:
	default:
	}
}

// namespaceLifecycle finishes the deletion of terminating namespaces: it deletes everything in
// them, and once nothing is left, removes the namespace's "kubernetes" finalizer, which removes
// the namespace when it has no other finalizers. It looks when kicked, and every few seconds
// while a namespace is terminating.
func (s *Server) namespaceLifecycle(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		s.finalizeNamespaces(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.nsKick:
		case <-t.C:
		}
	}
}

func (s *Server) finalizeNamespaces(ctx context.Context) {
	nsKind, ok := s.kinds("namespaces")
	if !ok {
		return
	}
	objs, _, err := s.reg.List(ctx, nsKind, registry.Query{}, registry.ReadOptions{ResourceVersion: "0"})
	if err != nil {
		return
	}
	for _, o := range objs {
		if o.Fields["status.phase"] != string(corev1.NamespaceTerminating) {
			continue
		}
		if err := s.finalizeNamespace(ctx, o.Key.Name); err != nil && ctx.Err() == nil {
			s.logger.Warn("apiserver: finalizing namespace", "namespace", o.Key.Name, "err", err)
		}
	}
}

func (s *Server) finalizeNamespace(ctx context.Context, ns string) error {
	left := 0
	background := metav1.DeletePropagationBackground
	for _, k := range s.catalog.All() {
		if !k.Namespaced {
			continue
		}
		objs, _, err := s.reg.List(ctx, k, registry.Query{Namespace: ns}, registry.ReadOptions{ResourceVersion: "0"})
		if err != nil {
			return err
		}
		for _, o := range objs {
			left++
			obj, err := o.Decode()
			if err != nil {
				return err
			}
			if m, ok := obj.(metav1.Object); ok && m.GetDeletionTimestamp() != nil {
				continue // being deleted already
			}
			_, _, err = s.reg.Delete(ctx, k, ns, o.Key.Name, metav1.DeleteOptions{PropagationPolicy: &background}, systemActor)
			if err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	if left > 0 {
		return nil // look again later: what is left may go meanwhile
	}
	nsKind, _ := s.kinds("namespaces")
	_, err := s.reg.Modify(ctx, nsKind, "", ns, registry.Request{Actor: systemActor.Actor, FieldManager: systemActor.FieldManager, Reason: registry.ReasonFinalize},
		registry.UpdateOptions{Subresource: "finalize"}, func(cur runtime.Object) (runtime.Object, error) {
			n := cur.(*corev1.Namespace)
			n.Spec.Finalizers = slices.DeleteFunc(n.Spec.Finalizers, func(f corev1.FinalizerName) bool { return f == corev1.FinalizerKubernetes })
			n.ResourceVersion = ""
			return n, nil
		})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
