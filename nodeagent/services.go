package nodeagent

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
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
	queue workqueue.TypedInterface[eventlog.Key]
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
	f := &serviceFeed{a: a, proxy: a.cfg.Services, dns: a.cfg.DNS, queue: workqueue.NewTyped[eventlog.Key]()}
	unsubscribe := a.store.Subscribe(func(ch projections.Change) {
		o := ch.New
		if o == nil {
			o = ch.Old
		}
		if f.follows(o.Key) {
			f.queue.Add(o.Key)
		}
	})
	grs := []schema.GroupResource{{Resource: "services"}, {Group: "discovery.k8s.io", Resource: "endpointslices"}}
	if f.dns != nil {
		grs = append(grs, schema.GroupResource{Resource: "namespaces"}, schema.GroupResource{Resource: "pods"})
	}
	for _, gr := range grs {
		objs, _ := a.store.List(projections.Query{Resource: gr})
		for _, o := range objs {
			f.sync(o.Key)
		}
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer unsubscribe()
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for f.next() {
			}
		}()
		if f.proxy == nil {
			<-ctx.Done()
		} else if err := f.proxy.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("nodeagent: the service proxy stopped", "err", err)
		}
		f.queue.ShutDown()
		<-stopped
	}()
	return ch
}

func (f *serviceFeed) next() bool {
	key, shutdown := f.queue.Get()
	if shutdown {
		return false
	}
	defer f.queue.Done(key)
	f.sync(key)
	return true
}

// sync hands the current state of the object at key to the consumers.
func (f *serviceFeed) sync(key eventlog.Key) {
	o, ok := f.a.store.Get(key)
	if !ok {
		f.deleted(key)
		return
	}
	obj, err := o.Decode()
	if err != nil {
		f.a.log.Warn("nodeagent: undecodable object for the service proxy", "key", key, "err", err)
		return
	}
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
