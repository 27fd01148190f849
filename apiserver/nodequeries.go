package apiserver

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

// podAddresses answers a node's PodAddressesQuery from the projection: the pods bound to q.Node
// with an address in q.Range, as "namespace/name address" — what a starting agent, which reads
// only its own pods, needs before it takes over the pod range of a NotReady node (nodeagent's
// pod-range check). It tells names and addresses, nothing of the pods' specs.
func podAddresses(store *projections.Store, q eventlog.PodAddressesQuery) ([]string, error) {
	r, err := netip.ParsePrefix(q.Range)
	if err != nil {
		return nil, fmt.Errorf("%w: range %q: %v", eventlog.ErrInvalid, q.Range, err)
	}
	objs, _ := store.List(projections.Query{Resource: schema.GroupResource{Resource: "pods"}, Fields: fields.OneTermEqualSelector("spec.nodeName", q.Node)})
	out := []string{}
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			return nil, err
		}
		p, ok := obj.(*corev1.Pod)
		if !ok {
			continue
		}
		ips := []string{p.Status.PodIP}
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		for _, s := range ips {
			if ip, err := netip.ParseAddr(s); err == nil && r.Contains(ip) {
				out = append(out, p.Namespace+"/"+p.Name+" "+s)
				break
			}
		}
	}
	return out, nil
}

// serveNodeQueries answers the nodes' queries until ctx ends.
func (s *Server) serveNodeQueries(ctx context.Context) {
	err := s.log.ServeNodeQueries(ctx, func(ctx context.Context, _ string, q eventlog.PodAddressesQuery) ([]string, error) {
		if _, err := s.reg.ConsistentRead(ctx); err != nil {
			return nil, err
		}
		return podAddresses(s.store, q)
	})
	if err != nil {
		s.logger.Error("apiserver: serving the nodes' queries", "err", err)
	}
}
