package nodeagent

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
)

// ServiceProxy is the machine side of Services that the agent feeds from the log: the kube-proxy
// role (dataplane/serviceproxy's Proxier). Run keeps the machine in step until ctx ends; the
// agent hands it every Service and EndpointSlice known before it calls Run, so that its first
// (full) sync drops nothing still wanted.
type ServiceProxy interface {
	UpdateService(svc *corev1.Service)
	DeleteService(namespace, name string)
	UpdateEndpointSlice(slice *discoveryv1.EndpointSlice) error
	DeleteEndpointSlice(namespace, name string)
	Run(ctx context.Context) error
}

// ClusterDNS is the cluster DNS server the agent feeds from the log (dataplane/clusterdns's
// Server); whoever made it serves it.
type ClusterDNS interface {
	UpsertService(svc *corev1.Service)
	DeleteService(namespace, name string)
	UpsertEndpointSlice(slice *discoveryv1.EndpointSlice)
	DeleteEndpointSlice(namespace, name string)
	UpsertNamespace(name string)
	DeleteNamespace(name string)
	UpsertPod(pod *corev1.Pod)
	DeletePod(namespace, name string)
}

// serviceFeed follows Services and EndpointSlices (and, for cluster DNS, Namespaces and Pods)
// in the projection and hands them to the agent's consumers of them: the service proxy, the
// cluster DNS server.
type serviceFeed struct {
	a     *Agent
	proxy ServiceProxy // nil: none
	dns   ClusterDNS   // nil: none
	feed  *storeFeed
}

func (f *serviceFeed) follows(k eventlog.Key) bool {
	switch {
	case k.Group == "" && k.Resource == "services", k.Group == "discovery.k8s.io" && k.Resource == "endpointslices":
		return true
	case k.Group == "" && (k.Resource == "namespaces" || k.Resource == "pods"):
		return f.dns != nil
	}
	return false
}

// startServices subscribes to what the feed follows, hands over every object the projection
// holds, then runs the proxy (if any), until ctx ends. done is closed when everything it
// started has stopped.
func (a *Agent) startServices(ctx context.Context) (done <-chan struct{}) {
	f := &serviceFeed{a: a, proxy: a.cfg.Services, dns: a.cfg.DNS}
	f.feed = newStoreFeed(a, "service proxy", f)
	grs := []schema.GroupResource{{Resource: "services"}, {Group: "discovery.k8s.io", Resource: "endpointslices"}}
	if f.dns != nil {
		grs = append(grs, schema.GroupResource{Resource: "namespaces"}, schema.GroupResource{Resource: "pods"})
	}
	stop := f.feed.start(grs)
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		if f.proxy == nil {
			<-ctx.Done()
		} else if err := f.proxy.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("nodeagent: the service proxy stopped", "err", err)
		}
		stop()
	}()
	return ch
}

// update hands the current state of the object at key to the consumers.
func (f *serviceFeed) update(key eventlog.Key, obj runtime.Object) {
	switch x := obj.(type) {
	case *corev1.Service:
		if f.proxy != nil {
			f.proxy.UpdateService(x)
		}
		if f.dns != nil {
			f.dns.UpsertService(x)
		}
	case *discoveryv1.EndpointSlice:
		if f.proxy != nil {
			if err := f.proxy.UpdateEndpointSlice(x); err != nil {
				// A slice the proxy refuses (no service-name label): it has nothing to program.
				f.a.log.Debug("nodeagent: endpointslice not programmed", "key", key, "err", err)
			}
		}
		if f.dns != nil {
			f.dns.UpsertEndpointSlice(x)
		}
	case *corev1.Namespace:
		f.dns.UpsertNamespace(x.Name)
	case *corev1.Pod:
		f.dns.UpsertPod(x)
	}
}

func (f *serviceFeed) deleted(key eventlog.Key) {
	switch key.Resource {
	case "services":
		if f.proxy != nil {
			f.proxy.DeleteService(key.Namespace, key.Name)
		}
		if f.dns != nil {
			f.dns.DeleteService(key.Namespace, key.Name)
		}
	case "endpointslices":
		if f.proxy != nil {
			f.proxy.DeleteEndpointSlice(key.Namespace, key.Name)
		}
		if f.dns != nil {
			f.dns.DeleteEndpointSlice(key.Namespace, key.Name)
		}
	case "namespaces":
		f.dns.DeleteNamespace(key.Name)
	case "pods":
		f.dns.DeletePod(key.Namespace, key.Name)
	}
}
