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

// serviceFeed follows Services and EndpointSlices in the projection and hands them to the
// agent's consumers of them (the service proxy).
type serviceFeed struct {
	a     *Agent
	proxy ServiceProxy
	queue workqueue.TypedInterface[eventlog.Key]
}

func isServiceOrSlice(k eventlog.Key) bool {
	return (k.Group == "" && k.Resource == "services") || (k.Group == "discovery.k8s.io" && k.Resource == "endpointslices")
}

// startServices subscribes to Services and EndpointSlices, hands over every one the projection
// holds, then runs the proxy, until ctx ends. It returns once the proxy runs; done is closed
// when everything it started has stopped.
func (a *Agent) startServices(ctx context.Context) (done <-chan struct{}) {
	f := &serviceFeed{a: a, proxy: a.cfg.Services, queue: workqueue.NewTyped[eventlog.Key]()}
	unsubscribe := a.store.Subscribe(func(ch projections.Change) {
		o := ch.New
		if o == nil {
			o = ch.Old
		}
		if isServiceOrSlice(o.Key) {
			f.queue.Add(o.Key)
		}
	})
	for _, gr := range []schema.GroupResource{{Resource: "services"}, {Group: "discovery.k8s.io", Resource: "endpointslices"}} {
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
		if err := f.proxy.Run(ctx); err != nil && ctx.Err() == nil {
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

// sync hands the current state of the object at key to the proxy.
func (f *serviceFeed) sync(key eventlog.Key) {
	o, ok := f.a.store.Get(key)
	if !ok {
		if key.Resource == "services" {
			f.proxy.DeleteService(key.Namespace, key.Name)
		} else {
			f.proxy.DeleteEndpointSlice(key.Namespace, key.Name)
		}
		return
	}
	obj, err := o.Decode()
	if err != nil {
		f.a.log.Warn("nodeagent: undecodable object for the service proxy", "key", key, "err", err)
		return
	}
	switch x := obj.(type) {
	case *corev1.Service:
		f.proxy.UpdateService(x)
	case *discoveryv1.EndpointSlice:
		if err := f.proxy.UpdateEndpointSlice(x); err != nil {
			// A slice the proxy refuses (no service-name label): it has nothing to program.
			f.a.log.Debug("nodeagent: endpointslice not programmed", "key", key, "err", err)
		}
	}
}
